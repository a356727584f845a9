// Writes the seed corpus of the fuzz targets (Fuzz/corpus/<target>/). Run from the repository root:
//   swiftc -module-name VZCore -parse-as-library Sources/VZCore/*.swift Sources/VZFormats/*.swift \
//       Fuzz/corpus/generate-corpus.swift -o /tmp/gen-corpus && /tmp/gen-corpus Fuzz/corpus
// The files are checked in; regenerate only when a format changes.
import Foundation

@main
struct GenerateCorpus {
    static func main() throws {
        let root = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "Fuzz/corpus"
        func write(_ target: String, _ name: String, _ bytes: [UInt8]) throws {
            let dir = "\(root)/\(target)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/\(name)"))
        }
        let h = SHA256Digest((0..<32).map { UInt8($0 * 7 & 0xFF) })
        let messages: [Message] = [
            .hello(job: "vm-101", sourceVersion: "0.1.0"),
            .helloAck(targetVersion: "0.1.0"),
            .openDisk(.init(disk: "scsi0", capacity: 1 << 30, blockSize: 1 << 20, mode: .differential)),
            .diskState(.init(mapStatus: .rebuilt, generation: 3, entryCount: 2, note: "rebuilt")),
            .mapChunk(firstIndex: 0, entries: [.zero, .data(h), .unknown]),
            .blockData(.init(offset: 65536, rawLength: 16, encoding: .raw, sha256: h.bytes, payload: Array(0..<16))),
            .blockData(.init(offset: 0, rawLength: 65536, encoding: .lz4, sha256: h.bytes, payload: [0x1F, 0, 1, 0, 0xFF, 0xFF])),
            .zeroExtent(Extent(offset: 1 << 20, length: 1 << 20)),
            .commitDisk(scannedBytes: 1 << 30),
            .diskCommitted(.init(generation: 4, changedBytes: 1 << 20, zeroBytes: 0)),
            .bye,
            .error(kind: "noSpace", message: "no space left"),
        ]
        // Frame target: first byte = read size - 1.
        for (i, m) in messages.enumerated() {
            try write("frame", "msg-\(i)", [UInt8(i * 13 & 0xFF)] + m.encodedFrame())
        }
        try write("frame", "session", [7] + messages.flatMap { $0.encodedFrame() })

        var map = BlockMap(blockSize: 65536, capacity: 3 * 65536 + 100)
        map[0] = .data(h); map[1] = .zero
        try write("vzmap", "small", VzmapFile.encode(map, generation: 5, createdUnixSeconds: 1_700_000_000))
        try write("vzmap", "empty", VzmapFile.encode(BlockMap(blockSize: 1 << 20, capacity: 0), generation: 0, createdUnixSeconds: 0))

        try write("descriptor", "replica", Array(FlatDescriptor(cid: 0xC0FFEE, capacity: 10 << 30, flatFileName: "scsi0-flat.vmdk").text().utf8))
        try write("descriptor", "qemu", Array("""
            # Disk DescriptorFile
            version=1
            CID=52a0b3c1
            parentCID=ffffffff
            createType="monolithicFlat"
            RW 2097152 FLAT "disk-flat.vmdk" 0

            """.utf8) + [0, 0, 0, 0])

        // vmdk: one file, d.vmdk, whose embedded descriptor names itself; tiny grains keep it small.
        // (The cowd, sesparse, vmx and vmsd seeds of Fuzz/corpus/vmdk/ were written with
        // Tests/VZTestSupport/VMDKCraft.swift: VMDKCraft.cowd(capacitySectors: 8192, sectors: {3, 4097}),
        // VMDKCraft.seSparse(capacitySectors: 2048, grains: {0: data, 1: zero, 2: unmapped}, firstSlot: 1).)
        func sparse(flags: UInt32, compress: UInt16, version: UInt32, grains: [(UInt32, [UInt8])]) -> [UInt8] {
            let header = SparseExtentHeader(version: version, flags: flags, capacitySectors: 8, grainSectors: 1,
                                            descriptorOffset: 1, descriptorSectors: 1, numGTEsPerGT: 8, rgdOffset: 0,
                                            gdOffset: 2, overheadSectors: 4, uncleanShutdown: false, compressAlgorithm: compress)
            var f = header.bytes()
            let desc = Array("CID=1\ncreateType=\"monolithicSparse\"\nRW 8 SPARSE \"d.vmdk\"\n".utf8)
            f += desc + [UInt8](repeating: 0, count: 512 - desc.count)
            f += [3, 0, 0, 0] + [UInt8](repeating: 0, count: 508)          // GD: the GT at sector 3
            var gt = [UInt8](repeating: 0, count: 512)
            var sector: UInt32 = 4
            var data: [UInt8] = []
            for (g, bytes) in grains {
                withUnsafeBytes(of: sector.littleEndian) { gt.replaceSubrange(Int(g) * 4..<Int(g) * 4 + 4, with: $0) }
                data += bytes + [UInt8](repeating: 0, count: (512 - bytes.count % 512) % 512)
                sector += UInt32((bytes.count + 511) / 512)
            }
            return f + gt + data
        }
        try write("vmdk", "sparse", sparse(flags: 0x3, compress: 0, version: 1, grains: [(0, [UInt8](repeating: 0x41, count: 512)), (5, [UInt8](repeating: 0x42, count: 512))]))
        // A stream grain: marker lba 2, 14 bytes of zlib (512 x 0x43, as zlib's compress() writes it).
        try write("vmdk", "stream", sparse(flags: 0x30001, compress: 1, version: 3, grains: [(2, [2, 0, 0, 0, 0, 0, 0, 0, 14, 0, 0, 0,
            0x78, 0x9c, 0x73, 0x76, 0x1e, 0x05, 0x23, 0x19, 0x00, 0x00, 0x4c, 0xda, 0x86, 0x01])]))
        try write("vmdk", "descriptor", Array("""
            # Disk DescriptorFile
            version=1
            CID=2
            parentCID=ffffffff
            createType="vmfs"
            RW 8 VMFS "d.vmdk"
            RW 8 ZERO
            """.utf8))

        try write("jobconfig", "exec", Array(#"""
            {"job":"vm-101","mode":"differential","blockSize":1048576,"whitespace":true,
             "target":{"transport":"exec","command":["vzrepl-target","serve","--stdio","--root","/srv"]},
             "disks":[{"name":"scsi0","source":"/dev/sdb","capacityBytes":10737418240}]}
            """#.utf8))
        try write("jobconfig", "ssh", Array(#"""
            {"job":"web","mode":"full","blockSize":65536,
             "target":{"transport":"ssh","host":"dr.example.net","port":22,"user":"vzrepl","identity":"/k",
                       "hostKeySHA256":"SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s","knownHosts":"/kh",
                       "idleTimeoutSeconds":60,"connectTimeoutSeconds":5.5},
             "disks":[{"name":"a","source":"/x"},{"name":"b.1","source":"/y"}]}
            """#.utf8))
        try write("jobconfig", "datastores", Array(#"""
            {"job":"web","datastores":{"ds1":"/vmfs/volumes/ds1","5f3a-1b2c":"/mnt/ds2"},
             "target":{"transport":"exec","command":["t"]},"disks":[{"name":"a","source":"/vmfs/volumes/ds1/web/web.vmdk"}]}
            """#.utf8))

        // Protocol 3: diskSet and diskChain frames, and a whole version-3 session for the
        // session target (its inputs run against a protocol-2 and a protocol-3 machine).
        let set = Message.diskSet([.init(name: "disk0", capacity: 10 << 30), .init(name: "disk1", capacity: 1 << 20)])
        let chain = Message.diskChain([SourceChainLink(file: "web-000001.vmdk", cid: 0x0a0b0c0d, parentCID: 0x11223344),
                                       SourceChainLink(file: "/mnt/ds2/tpl/base.vmdk", cid: 0x11223344, parentCID: 0xffffffff)])
        try write("frame", "msg-12", [5] + set.encodedFrame())
        try write("frame", "msg-13", [9] + chain.encodedFrame())
        let open = Message.openDisk(.init(disk: "disk1", capacity: 1 << 20, blockSize: 1 << 16, mode: .differential))
        try write("session", "v3-pass", [Message.hello(job: "vm1", sourceVersion: "s"), set, open,
                                         .zeroExtent(Extent(offset: 0, length: 1 << 20)), chain, .commitDisk(scannedBytes: 1 << 20), .bye]
                                         .flatMap { $0.encodedFrame() })

        // records: the job's disk set and CID records (version 1 by hand, version 2 with a chain).
        try write("records", "vzdisks", try DiskSetFile(disks: ["disk0", "disk1", "scsi0_1"]).encode())
        var v1: [UInt8] = Array("VZCIDREC".utf8) + [1, 0, 0, 0, 0xcd, 0xab, 0x34, 0x12, 0x99, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0]
        v1 += withUnsafeBytes(of: CRC32C.checksum(v1).littleEndian, Array.init)
        try write("records", "vzcid-v1", v1)
        if case let .diskChain(links) = chain {
            try write("records", "vzcid-v2", CIDRecordFile(cid: 0x1234abcd, previousCID: 0x99, generation: 42, chain: links).encode())
        }
        try write("records", "vzcid-v2-unknown", CIDRecordFile(cid: 1, previousCID: 2, generation: 3).encode())
    }
}
