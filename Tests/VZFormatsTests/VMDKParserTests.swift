import Foundation
import XCTest
import VZCore
@testable import VZFormats
import VZPlatform
import VZTestSupport

/// The VMDK files of a folder, in memory. Inflate is the real zlib wrapper.
final class MemoryVMDKFolder: VMDKFileAccess {
    var files: [String: [UInt8]]
    private(set) var opened: Set<String> = []
    init(_ files: [String: [UInt8]]) { self.files = files }

    func bytes(_ name: String) throws -> [UInt8] {
        opened.insert(name)
        guard let f = files[name] else { throw VZError(.sourceIO, "\(name): no such file") }
        return f
    }
    func size(of name: String) throws -> UInt64 { UInt64(try bytes(name).count) }
    func read(_ name: String, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let f = try bytes(name)
        guard offset <= UInt64(f.count), UInt64(buffer.count) <= UInt64(f.count) - offset else {
            throw VZError(.sourceIO, "\(name): end of file at offset \(offset)")
        }
        f.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + buffer.count])) }
    }
    func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, context: String) throws -> Int {
        try Inflate.decompress(input, into: output, context: context)
    }
}

func assertSourceError(_ parts: [String], _ label: String = "", file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Any) {
    XCTAssertThrowsError(try body(), label, file: file, line: line) { e in
        guard let v = e as? VZError else { return XCTFail("not a VZError: \(e)", file: file, line: line) }
        XCTAssertTrue([.sourceIO, .sourceUnsupported].contains(v.kind), "\(v)", file: file, line: line)
        for p in parts { XCTAssertTrue(v.message.contains(p), "'\(v.message)' does not mention '\(p)'", file: file, line: line) }
    }
}

final class VMDKDescriptorParserTests: XCTestCase {
    let qemu = """
    # Disk DescriptorFile
    version=1
    CID=4da9c5a
    parentCID=ffffffff
    createType="twoGbMaxExtentSparse"

    # Extent description
    RW 4194304 SPARSE "d-s001.vmdk"
    RW 2048 SPARSE "d-s002.vmdk"
    RDONLY 16 ZERO
    RW 64 FLAT "raw.img" 8

    # The Disk Data Base
    #DDB

    ddb.virtualHWVersion = "4"
    ddb.longContentID = "0123456789abcdef0123456704da9c5a"

    """

    func testVMDK_ParsesQemuDescriptorWithUnpaddedCID() throws {
        let d = try VMDKDescriptor.parse(Array(qemu.utf8), fileName: "d.vmdk")
        XCTAssertEqual(d.cid, 0x4da9c5a)
        XCTAssertEqual(d.parentCID, VMDKDescriptor.noParent)
        XCTAssertFalse(d.hasParent)
        XCTAssertEqual(d.createType, "twoGbMaxExtentSparse")
        XCTAssertEqual(d.extents.map(\.type), [.sparse, .sparse, .zero, .flat])
        XCTAssertEqual(d.extents[3].offsetSectors, 8)
        XCTAssertEqual(d.extents[2].access, .rdonly)
        XCTAssertEqual(d.capacitySectors, 4194304 + 2048 + 16 + 64)
        XCTAssertEqual(d.ddb["ddb.virtualhwversion"], "4")
    }

    func testVMDK_CRLFAndNULPaddingReadAsLF() throws {
        let lf = try VMDKDescriptor.parse(Array(qemu.utf8), fileName: "d.vmdk")
        let crlf = Array(qemu.replacingOccurrences(of: "\n", with: "\r\n").utf8) + [UInt8](repeating: 0, count: 700)
        XCTAssertEqual(try VMDKDescriptor.parse(crlf, fileName: "d.vmdk"), lf)
    }

    /// qemu rewrites the CID in place with "%x" and writes its whole descriptor buffer back: a CID
    /// with a leading zero digit makes the text one byte shorter and leaves the old text's last
    /// byte after the NUL (seen on a qemu-io write to a chain link). That is still the descriptor.
    func testVMDK_StaleBytesAfterTheNULAreNotRead() throws {
        let old = Array(qemu.utf8)
        guard let cidLine = qemu.split(separator: "\n").first(where: { $0.hasPrefix("CID=") }) else { return XCTFail("no CID line") }
        let rewritten = Array(qemu.replacingOccurrences(of: String(cidLine), with: "CID=abc123").utf8)
        XCTAssertEqual(rewritten.count, old.count - (cidLine.count - 10))
        XCTAssertLessThan(rewritten.count, old.count)
        let onDisk = rewritten + [0] + old[(rewritten.count + 1)...] + [UInt8](repeating: 0, count: 512)
        let d = try VMDKDescriptor.parse(onDisk, fileName: "mid.vmdk")
        XCTAssertEqual(d.cid, 0x00ab_c123)
        XCTAssertEqual(d.extents, try VMDKDescriptor.parse(old, fileName: "mid.vmdk").extents)
    }

    /// Split at every offset: every prefix either parses or is a VZError naming the file; never a crash.
    func testVMDK_EveryPrefixParsesOrFailsCleanly() {
        let bytes = Array(qemu.utf8)
        for n in 0...bytes.count {
            do {
                let d = try VMDKDescriptor.parse(bytes[0..<n], fileName: "cut.vmdk")
                XCTAssertFalse(d.extents.isEmpty)
            } catch let e as VZError {
                XCTAssertTrue(e.message.hasPrefix("cut.vmdk: "), "prefix \(n): \(e)")
            } catch { XCTFail("prefix \(n): \(error)") }
        }
    }

    func testVMDK_BadDescriptorsNameTheFileAndField() {
        func parse(_ s: String) throws -> Any { try VMDKDescriptor.parse(Array(s.utf8), fileName: "bad.vmdk") }
        let head = "CID=1\ncreateType=\"vmfs\"\n"
        assertSourceError(["bad.vmdk", "not UTF-8"]) { try VMDKDescriptor.parse(Array(head.utf8) + [0xC3, 0x28] + Array("\nRW 1 ZERO\n".utf8), fileName: "bad.vmdk") }
        assertSourceError(["bad.vmdk", "field 'CID'", "missing"]) { try parse("createType=\"vmfs\"\nRW 1 ZERO\n") }
        assertSourceError(["field 'CID'", "hex"]) { try parse("CID=xyz\ncreateType=\"vmfs\"\nRW 1 ZERO\n") }
        assertSourceError(["field 'CID'"]) { try parse("CID=123456789\ncreateType=\"vmfs\"\nRW 1 ZERO\n") }
        assertSourceError(["field 'encoding'", "windows-1252"]) { try parse("encoding=\"windows-1252\"\n" + head + "RW 1 FLAT \"café.raw\" 0\n") }
        // The same charset over ASCII text reads as it is; so does a UTF-8 byte order mark.
        XCTAssertNoThrow(try parse("encoding=\"windows-1252\"\n" + head + "RW 1 ZERO\n"))
        XCTAssertNoThrow(try VMDKDescriptor.parse([0xEF, 0xBB, 0xBF] + Array((head + "RW 1 ZERO\n").utf8), fileName: "bad.vmdk"))
        assertSourceError(["field 'sectors'"]) { try parse(head + "RW 99999999999999999 FLAT \"x\" 0\n") }
        assertSourceError(["field 'sectors'", "1 PiB"]) { try parse(head + "RW 2199023255553 FLAT \"x\" 0\n") }
        assertSourceError(["field 'type'", "VMFSRDM"]) { try parse(head + "RW 8 VMFSRDM \"x-rdm.vmdk\"\n") }
        assertSourceError(["field 'fileName' is not quoted"]) { try parse(head + "RW 8 FLAT x 0\n") }
        assertSourceError(["no closing quote"]) { try parse(head + "RW 8 FLAT \"x 0\n") }
        assertSourceError(["field 'extents'", "no extent line"]) { try parse(head) }
        // The text ends at the first NUL: an extent line after it is not read.
        assertSourceError(["field 'extents'", "no extent line"]) { try VMDKDescriptor.parse(Array(head.utf8) + [0] + Array("RW 1 ZERO\n".utf8), fileName: "bad.vmdk") }
        assertSourceError(["larger than"]) { try VMDKDescriptor.parse([UInt8](repeating: 0x23, count: VMDKDescriptor.maxBytes + 1), fileName: "bad.vmdk") }
        // Absurd extent counts stop at the limit, before the whole text is held as extents.
        let many = head + String(repeating: "RW 1 ZERO\n", count: VMDKDescriptor.maxExtents + 1)
        assertSourceError(["more than \(VMDKDescriptor.maxExtents) extent lines"]) { try parse(many) }
        // 65536 extents of 2^41 sectors are more than 1 PiB together.
        let huge = head + String(repeating: "RW 2199023255552 ZERO\n", count: 2)
        assertSourceError(["field 'extents'", "1 PiB"]) { try parse(huge) }
    }

    func testVMDK_NamesStayInsideTheDisksFolder() throws {
        XCTAssertEqual(try VMDKNames.resolve("a.vmdk", folder: "/ds/vm", field: "f", in: "x.vmdk"), "a.vmdk")
        XCTAssertEqual(try VMDKNames.resolve("./a.vmdk", folder: "/ds/vm", field: "f", in: "x.vmdk"), "a.vmdk")
        XCTAssertEqual(try VMDKNames.resolve("../vm/a.vmdk", folder: "/ds/vm", field: "f", in: "x.vmdk"), "a.vmdk")
        XCTAssertEqual(try VMDKNames.resolve("/ds/vm/a.vmdk", folder: "/ds/vm/", field: "f", in: "x.vmdk"), "a.vmdk")
        for bad in ["../a.vmdk", "/etc/passwd", "sub/a.vmdk", "..", ".", "", "C:\\VMs\\a.vmdk", "/ds/vm/../other/a.vmdk"] {
            assertSourceError(["x.vmdk: field 'parentFileNameHint'"]) {
                try VMDKNames.resolve(bad, folder: "/ds/vm", field: "parentFileNameHint", in: "x.vmdk")
            }
        }
    }
}

final class VMDKSparseParserTests: XCTestCase {
    let sectors: UInt64 = 16384   // 8 MiB: one grain table

    func descriptor(_ file: String = "d.vmdk", cid: UInt32 = 0xabc, parentCID: UInt32 = 0xFFFF_FFFF, hint: String? = nil) -> String {
        VMDKCraft.descriptor(createType: "monolithicSparse", cid: cid, parentCID: parentCID, parentHint: hint,
                             extents: ["RW \(sectors) SPARSE \"\(file)\""])
    }

    func chain(_ files: [String: [UInt8]], leaf: String = "d.vmdk") throws -> VMDKChain {
        try VMDKChain(leaf: leaf, folder: "/vm", access: MemoryVMDKFolder(files))
    }

    func read(_ c: VMDKChain, _ offset: UInt64, _ n: Int) throws -> [UInt8] {
        var b = [UInt8](repeating: 0xEE, count: n)
        try b.withUnsafeMutableBytes { try c.read(at: offset, into: $0) }
        return b
    }

    func testVMDK_MonolithicSparseReadsGrainsAndKnowsItsZeros() throws {
        let g3 = [UInt8](repeating: 0x33, count: 65536)
        let file = VMDKCraft.monolithicSparse(capacitySectors: sectors, descriptor: descriptor(), grains: [3: g3], zeroed: [5])
        let c = try chain(["d.vmdk": file])
        XCTAssertEqual(c.capacity, sectors * 512)
        XCTAssertEqual(try read(c, 3 * 65536 - 10, 20), [UInt8](repeating: 0, count: 10) + [UInt8](repeating: 0x33, count: 10))
        XCTAssertEqual(try c.knownZeroExtents(), ExtentSet([Extent(offset: 0, length: 3 * 65536),
                                                            Extent(offset: 4 * 65536, length: sectors * 512 - 4 * 65536)]))
    }

    func testVMDK_TwoLinksReadTopDownAndCheckParentCID() throws {
        let base = VMDKCraft.monolithicSparse(capacitySectors: sectors, descriptor: descriptor("base.vmdk", cid: 7),
                                              grains: [0: [UInt8](repeating: 1, count: 65536), 1: [UInt8](repeating: 2, count: 65536),
                                                       2: [UInt8](repeating: 3, count: 65536)])
        let leaf = VMDKCraft.monolithicSparse(capacitySectors: sectors, descriptor: descriptor(cid: 8, parentCID: 7, hint: "base.vmdk"),
                                              grains: [1: [UInt8](repeating: 9, count: 65536)], zeroed: [2])
        let c = try chain(["d.vmdk": leaf, "base.vmdk": base])
        XCTAssertEqual(try read(c, 65536 - 1, 65538), [1] + [UInt8](repeating: 9, count: 65536) + [0])
        XCTAssertEqual(try c.knownZeroExtents(), ExtentSet([Extent(offset: 2 * 65536, length: sectors * 512 - 2 * 65536)]))
        let wrongCID = VMDKCraft.monolithicSparse(capacitySectors: sectors, descriptor: descriptor(cid: 8, parentCID: 6, hint: "base.vmdk"), grains: [:])
        assertSourceError(["d.vmdk: field 'parentCID' is 00000006, but its parent base.vmdk has CID 00000007"]) {
            try self.chain(["d.vmdk": wrongCID, "base.vmdk": base])
        }
        let loop = VMDKCraft.monolithicSparse(capacitySectors: sectors, descriptor: descriptor(cid: 8, parentCID: 8, hint: "d.vmdk"), grains: [:])
        assertSourceError(["d.vmdk: field 'parentFileNameHint'", "a loop"]) { try self.chain(["d.vmdk": loop]) }
        let escape = VMDKCraft.monolithicSparse(capacitySectors: sectors, descriptor: descriptor(cid: 8, parentCID: 7, hint: "../etc/base.vmdk"), grains: [:])
        let folder = MemoryVMDKFolder(["d.vmdk": escape, "base.vmdk": base])
        assertSourceError(["d.vmdk: field 'parentFileNameHint'", "outside the disk's folder"]) {
            try VMDKChain(leaf: "d.vmdk", folder: "/vm", access: folder)
        }
        XCTAssertEqual(folder.opened, ["d.vmdk"])
        let small = VMDKCraft.monolithicSparse(capacitySectors: sectors / 2, descriptor: VMDKCraft.descriptor(
            createType: "monolithicSparse", cid: 7, extents: ["RW \(sectors / 2) SPARSE \"base.vmdk\""]), grains: [:])
        assertSourceError(["d.vmdk: field 'capacity'"]) { try self.chain(["d.vmdk": leaf, "base.vmdk": small]) }
    }

    func testVMDK_DamagedSparseFilesNameTheFileAndField() throws {
        let good = VMDKCraft.monolithicSparse(capacitySectors: sectors, descriptor: descriptor(), grains: [0: [UInt8](repeating: 1, count: 65536)])
        XCTAssertNoThrow(try chain(["d.vmdk": good]))
        let gtStart = 21 + 1   // header, 20 descriptor sectors, 1 GD sector
        func patched(_ offset: Int, _ bytes: [UInt8]) -> [UInt8] {
            var f = good
            f.replaceSubrange(offset..<offset + bytes.count, with: bytes)
            return f
        }
        func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        let cases: [([UInt8], [String])] = [
            (patched(8, le32(0x1 | 0x40000)), ["d.vmdk: sparse header field 'flags'", "unknown incompatible flag bits 0x40000"]),
            (patched(4, le32(4)), ["field 'version'"]),
            (patched(20, le64(100)), ["field 'grainSize'"]),
            (patched(12, le64(1 << 50)), ["field 'capacity'"]),
            (patched(44, le32(4096)), ["field 'numGTEsPerGT'"]),
            (patched(73, [0x0A, 0x20, 0x0A, 0x0A]), ["field 'newline check'", "text-mode"]),
            (patched(56, le64(1 << 40)), ["field 'gdOffset'", "outside the file"]),
            (patched(36, le64(1 << 40)), ["field 'descriptorSize'"]),
            (patched(gtStart * 512, le32(1 << 30)), ["grain table entry for grain 0", "outside the file"]),
            (patched(21 * 512, le32(1 << 28)), ["grain directory entry 0", "outside the file"]),
            (patched(gtStart * 512, le32(1)), ["grain table entry for grain 0"]),
        ]
        for (file, parts) in cases { assertSourceError(parts + [], "case \(parts[0])") { try self.chain(["d.vmdk": file]) } }
        // A header claiming 2^41 sectors in 512-byte grains of 1 entry per table: the directory
        // would be 2^41 entries; it is checked against the file before any allocation.
        var absurd = patched(12, le64(1 << 41))
        absurd.replaceSubrange(20..<28, with: le64(1))
        absurd.replaceSubrange(44..<48, with: le32(1))
        assertSourceError(["field 'gdOffset'", "outside the file"]) { try self.chain(["d.vmdk": absurd]) }
        // Two directory entries sharing one table.
        let two = VMDKCraft.monolithicSparse(capacitySectors: sectors * 8, descriptor: VMDKCraft.descriptor(
            createType: "monolithicSparse", cid: 1, extents: ["RW \(sectors * 8) SPARSE \"d.vmdk\""]), grains: [:])
        var shared = two
        shared.replaceSubrange(21 * 512 + 4..<21 * 512 + 8, with: shared[21 * 512..<21 * 512 + 4])
        assertSourceError(["grain directory entries 0 and 1", "overlap"]) { try self.chain(["d.vmdk": shared]) }
        // A FLAT extent larger than its file.
        let flat = VMDKCraft.descriptor(createType: "monolithicFlat", cid: 1, extents: ["RW 100 FLAT \"f.raw\" 0"])
        assertSourceError(["d.vmdk: extent 'f.raw' field 'sectors'", "the file has 25600"]) {
            try self.chain(["d.vmdk": Array(flat.utf8), "f.raw": [UInt8](repeating: 0, count: 25600)])
        }
        // A sparse extent without its descriptor, and a file that is no VMDK.
        let bare = VMDKCraft.monolithicSparse(capacitySectors: sectors, descriptor: nil, grains: [:])
        assertSourceError(["without an embedded descriptor"]) { try self.chain(["d.vmdk": bare]) }
        assertSourceError(["neither a VMDK descriptor nor a sparse VMDK"]) { try self.chain(["d.vmdk": [UInt8](repeating: 7, count: 512)]) }
    }

    func testVMDK_CompressedGrainsMustInflateToTheGrain() throws {
        let d = VMDKCraft.descriptor(createType: "streamOptimized", cid: 1, extents: ["RW \(sectors) SPARSE \"d.vmdk\""])
        let good = VMDKCraft.vmwareStream(capacitySectors: sectors, descriptor: d, grains: [2: [UInt8](repeating: 5, count: 65536)])
        let c = try chain(["d.vmdk": good])
        XCTAssertEqual(try read(c, 2 * 65536, 4), [5, 5, 5, 5])
        // A grain that inflates to less than the grain: the marker at sector 128.
        let shortGrain = VMDKCraft.zlibStored([UInt8](repeating: 5, count: 1000))
        var bad = good
        bad.replaceSubrange(128 * 512 + 8..<128 * 512 + 12, with: (0..<4).map { UInt8(truncatingIfNeeded: shortGrain.count >> (8 * $0)) })
        bad.replaceSubrange(128 * 512 + 12..<128 * 512 + 12 + shortGrain.count, with: shortGrain)
        let cb = try chain(["d.vmdk": bad])
        assertSourceError(["d.vmdk: grain 2", "inflates to 1000 bytes"]) { try self.read(cb, 2 * 65536, 4) }
        // Garbage instead of zlib.
        var garbage = good
        garbage.replaceSubrange(128 * 512 + 12..<128 * 512 + 40, with: [UInt8](repeating: 0xFF, count: 28))
        let cg = try chain(["d.vmdk": garbage])
        assertSourceError(["d.vmdk: grain 2", "malformed"]) { try self.read(cg, 2 * 65536, 4) }
        // A marker whose lba is not the grain's.
        var lba = good
        lba.replaceSubrange(128 * 512..<128 * 512 + 8, with: [1, 0, 0, 0, 0, 0, 0, 0])
        let cl = try chain(["d.vmdk": lba])
        assertSourceError(["d.vmdk: grain 2", "field 'lba'"]) { try self.read(cl, 2 * 65536, 4) }
    }

    func testVMDK_InflateIsBoundedByTheGrain() throws {
        let big = VMDKCraft.zlibStored([UInt8](repeating: 1, count: 70000))
        var out = [UInt8](repeating: 0, count: 65536)
        XCTAssertThrowsError(try big.withUnsafeBytes { p in try out.withUnsafeMutableBytes { try Inflate.decompress(p, into: $0, context: "g") } }) { e in
            XCTAssertTrue("\(e)".contains("g: compressed grain inflates to more than 65536 bytes"), "\(e)")
        }
        let exact = VMDKCraft.zlibStored([UInt8](repeating: 1, count: 65536))
        XCTAssertEqual(try exact.withUnsafeBytes { p in try out.withUnsafeMutableBytes { try Inflate.decompress(p, into: $0, context: "g") } }, 65536)
    }
}

/// The vmdk fuzz target's seeds (Fuzz/corpus/vmdk) are real, readable files: a seed that fails
/// to parse would only fuzz the first check.
final class VMDKFuzzSeedTests: XCTestCase {
    func seed(_ name: String) throws -> [UInt8] {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        return [UInt8](try Data(contentsOf: here.appendingPathComponent("../../Fuzz/corpus/vmdk/\(name)").standardized))
    }

    func testVMDK_FuzzSeedsAreReadable() throws {
        for (name, grain, value) in [("sparse", 5, UInt8(0x42)), ("stream", 2, UInt8(0x43))] {
            let c = try VMDKChain(leaf: "d.vmdk", folder: "/vm", access: MemoryVMDKFolder(["d.vmdk": try seed(name)]))
            XCTAssertEqual(c.capacity, 8 * 512)
            var b = [UInt8](repeating: 0, count: 512)
            try b.withUnsafeMutableBytes { try c.read(at: UInt64(grain) * 512, into: $0) }
            XCTAssertEqual(b, [UInt8](repeating: value, count: 512), name)
        }
    }
}

extension VMDKFuzzSeedTests {
    /// Fuzz finding: an embedded descriptor naming a missing extent failed with the extent's
    /// own error only ("d.)mdk: no such file"), not naming the descriptor that points at it.
    func testVMDK_FuzzFinding_AnExtentErrorNamesTheDescriptor() throws {
        let bytes = try seed("finding-extent-name")
        assertSourceError(["d.vmdk: extent 1 'd.)mdk': "]) {
            try VMDKChain(leaf: "d.vmdk", folder: "/vm", access: MemoryVMDKFolder(["d.vmdk": bytes]))
        }
    }
}

final class VMDKCIDRecordFileTests: XCTestCase {
    /// Version 1 (32 bytes, no chain), written by hand from Docs/formats.md §4: still read.
    func testVMDK_CIDRecordVersion1IsStillRead() throws {
        var v1: [UInt8] = Array("VZCIDREC".utf8) + [1, 0, 0, 0] + [0xcd, 0xab, 0x34, 0x12] + [0x99, 0, 0, 0] + [42, 0, 0, 0, 0, 0, 0, 0]
        v1 += withUnsafeBytes(of: CRC32C.checksum(v1).littleEndian, Array.init)
        XCTAssertEqual(try CIDRecordFile.decode(v1, fileName: "d.vzcid"), CIDRecordFile(cid: 0x1234abcd, previousCID: 0x99, generation: 42))
        XCTAssertNil(try CIDRecordFile.decode(v1, fileName: "d.vzcid").chain)
        for i in 0..<v1.count {
            var bad = v1
            bad[i] ^= 0x40
            XCTAssertThrowsError(try CIDRecordFile.decode(bad, fileName: "d.vzcid"), "byte \(i)") { e in
                XCTAssertEqual((e as? VZError)?.kind, .corruptMap)
                XCTAssertTrue("\(e)".contains("d.vzcid"), "\(e)")
            }
        }
        XCTAssertThrowsError(try CIDRecordFile.decode(Array(v1.dropLast()), fileName: "d.vzcid"))
    }

    /// Version 2 with a chain, to the byte (Docs/formats.md §4), round trip, and every flipped
    /// byte and every truncation refused naming the file.
    func testVMDK_CIDRecordVersion2HoldsTheChain() throws {
        let chain = [SourceChainLink(file: "s1.vmdk", cid: 0x0a0b0c0d, parentCID: 0x11223344),
                     SourceChainLink(file: "/mnt/ds2/base.vmdk", cid: 0x11223344, parentCID: 0xffffffff)]
        let r = CIDRecordFile(cid: 0x1234abcd, previousCID: 0x99, generation: 42, chain: chain)
        let bytes = r.encode()
        var want: [UInt8] = Array("VZCIDREC".utf8) + [2, 0, 0, 0] + [0xcd, 0xab, 0x34, 0x12] + [0x99, 0, 0, 0] + [42, 0, 0, 0, 0, 0, 0, 0]
        want += [1, 0, 0, 0] + [2, 0]
        want += [7, 0] + Array("s1.vmdk".utf8) + [0x0d, 0x0c, 0x0b, 0x0a, 0x44, 0x33, 0x22, 0x11]
        want += [18, 0] + Array("/mnt/ds2/base.vmdk".utf8) + [0x44, 0x33, 0x22, 0x11, 0xff, 0xff, 0xff, 0xff]
        want += withUnsafeBytes(of: CRC32C.checksum(want).littleEndian, Array.init)
        XCTAssertEqual(bytes, want)
        XCTAssertEqual(bytes.count, 38 + (10 + 7) + (10 + 18))
        XCTAssertTrue(r.accepts(0x99) && r.accepts(0x1234abcd) && !r.accepts(0x1234abce))
        XCTAssertEqual(try CIDRecordFile.decode(bytes, fileName: "d.vzcid"), r)
        for i in 0..<bytes.count {
            var bad = bytes
            bad[i] ^= 0x40
            XCTAssertThrowsError(try CIDRecordFile.decode(bad, fileName: "d.vzcid"), "byte \(i)") { e in
                XCTAssertEqual((e as? VZError)?.kind, .corruptMap)
                XCTAssertTrue("\(e)".contains("d.vzcid"), "\(e)")
            }
        }
        for n in 0..<bytes.count {
            XCTAssertThrowsError(try CIDRecordFile.decode(Array(bytes[..<n]), fileName: "d.vzcid"), "cut to \(n)")
        }
        XCTAssertThrowsError(try CIDRecordFile.decode(bytes + [0], fileName: "d.vzcid"))
        // Not known (a version-2 source) and known but empty (a raw source) differ.
        for c in [nil, [SourceChainLink]()] {
            let e = CIDRecordFile(cid: 1, previousCID: 2, generation: 3, chain: c)
            XCTAssertEqual(e.encode().count, 38)
            XCTAssertEqual(try CIDRecordFile.decode(e.encode(), fileName: "d.vzcid").chain, c)
        }
        XCTAssertNotNil(CIDRecordFile.problem(with: [SourceChainLink(file: "", cid: 0, parentCID: 0)]))
        XCTAssertNotNil(CIDRecordFile.problem(with: [SourceChainLink(file: String(repeating: "a", count: 1025), cid: 0, parentCID: 0)]))
        XCTAssertNotNil(CIDRecordFile.problem(with: Array(repeating: chain[0], count: 256)))
        // The largest record decodes.
        let big = CIDRecordFile(cid: 1, previousCID: 2, generation: 3,
                                chain: Array(repeating: SourceChainLink(file: String(repeating: "é", count: 512), cid: 0, parentCID: 0), count: 255))
        XCTAssertEqual(big.encode().count, CIDRecordFile.maxSize)
        XCTAssertEqual(try CIDRecordFile.decode(big.encode(), fileName: "d.vzcid"), big)
    }

    func testVMDK_CIDRecordBadFieldsAreNamed() throws {
        func record(flags: UInt32, links: [UInt8], count: UInt16) -> [UInt8] {
            var b: [UInt8] = Array("VZCIDREC".utf8) + [2, 0, 0, 0] + [1, 0, 0, 0] + [2, 0, 0, 0] + [3, 0, 0, 0, 0, 0, 0, 0]
            b += withUnsafeBytes(of: flags.littleEndian, Array.init) + withUnsafeBytes(of: count.littleEndian, Array.init) + links
            return b + withUnsafeBytes(of: CRC32C.checksum(b).littleEndian, Array.init)
        }
        func refused(_ bytes: [UInt8], _ parts: [String], line: UInt = #line) {
            XCTAssertThrowsError(try CIDRecordFile.decode(bytes, fileName: "d.vzcid"), line: line) { e in
                XCTAssertEqual((e as? VZError)?.kind, .corruptMap, line: line)
                for p in parts { XCTAssertTrue("\(e)".contains(p), "\(e) lacks \(p)", line: line) }
            }
        }
        refused(record(flags: 2, links: [], count: 0), ["d.vzcid", "field 'flags'", "unknown flag bits"])
        refused(record(flags: 0, links: [1, 0, 0x61] + [UInt8](repeating: 0, count: 8), count: 1), ["field 'linkCount'", "not known"])
        refused(record(flags: 1, links: [], count: 256), ["field 'linkCount'", "256 links"])
        refused(record(flags: 1, links: [0, 0] + [UInt8](repeating: 0, count: 8), count: 1), ["field 'links[0].file'", "empty"])
        refused(record(flags: 1, links: [1, 0, 0xff] + [UInt8](repeating: 0, count: 8), count: 1), ["field 'links[0].file'", "UTF-8"])
        refused(record(flags: 1, links: [1, 0, 0x61, 0, 0], count: 1), ["field 'links[0].", "truncated"])
        refused([UInt8](repeating: 0, count: CIDRecordFile.maxSize + 1), ["d.vzcid", "bytes, a CID record has"])
    }
}
