import Foundation
import XCTest
@testable import VZSource
import VZCore
import VZFormats
import VZTestSupport

/// The formats qemu-img cannot write, crafted byte by byte (VMDKCraft, from VMDK-FORMATS.md):
/// VMware's GD-at-end stream, an ESXi chain vmfs flat <- COWD <- SEsparse. Each is read equal to
/// the expected image and to qemu-img's reading of the same files; damaged ones are refused
/// naming the file and the field.
final class VMDKCraftedTests: XCTestCase {
    var dir: String!
    let capacity: UInt64 = 8 << 20

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "vzrepl-vmdkc-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func save(_ bytes: [UInt8], _ name: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + name)) }
    func save(_ text: String, _ name: String) throws { try save(Array(text.utf8), name) }

    func open(_ name: String) throws -> BlockReader {
        try SourceReaderFactory.open(JobConfig.DiskConfig(name: "disk0", source: dir + "/" + name)).reader
    }

    func readAll(_ r: BlockReader) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: Int(r.capacity))
        try out.withUnsafeMutableBytes { buf in
            var at = 0
            while at < buf.count {
                let n = min(40000, buf.count - at)
                try r.read(at: UInt64(at), into: UnsafeMutableRawBufferPointer(rebasing: buf[at..<at + n]))
                at += n
            }
        }
        return out
    }

    func assertReads(_ name: String, as expected: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try open(name)
        XCTAssertTrue(try readAll(r) == expected, "\(name) differs from the expected image", file: file, line: line)
        try QemuFixtures.oracle(dir + "/" + name, into: dir + "/oracle.raw")
        let oracle = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/oracle.raw")))
        XCTAssertTrue(oracle == expected, "qemu-img reads \(name) differently: the crafted file is wrong", file: file, line: line)
        for e in try r.knownZeroExtents() {
            XCTAssertTrue(expected[Int(e.offset)..<Int(e.end)].allSatisfy { $0 == 0 }, "known zero \(e) is not zero", file: file, line: line)
        }
    }

    func pattern(_ n: Int, _ seed: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) } }

    // MARK: VMware stream

    func vmwareStream() -> ([UInt8], expected: [UInt8]) {
        var expected = [UInt8](repeating: 0, count: Int(capacity))
        var grains: [Int: [UInt8]] = [:]
        for (i, g) in [0, 1, 17, 127].enumerated() {
            let data = pattern(65536, UInt8(i * 40 + 1))
            grains[g] = data
            expected.replaceSubrange(g * 65536..<(g + 1) * 65536, with: data)
        }
        let d = VMDKCraft.descriptor(createType: "streamOptimized", cid: 0x1234abcd,
                                     extents: ["RW \(capacity / 512) SPARSE \"so-vmware.vmdk\""])
        return (VMDKCraft.vmwareStream(capacitySectors: capacity / 512, descriptor: d, grains: grains), expected)
    }

    func testVMDK_VMwareStreamWithGrainDirectoryAtTheEnd() throws {
        let (file, expected) = vmwareStream()
        try save(file, "so-vmware.vmdk")
        try assertReads("so-vmware.vmdk", as: expected)
    }

    func testVMDK_TruncatedVMwareStreamIsRefused() throws {
        let (file, _) = vmwareStream()
        try save(Array(file.dropLast(1024)), "so-vmware.vmdk")
        XCTAssertThrowsError(try open("so-vmware.vmdk")) { e in
            XCTAssertTrue("\(e)".contains("so-vmware.vmdk: footer marker at offset"), "\(e)")
        }
    }

    // MARK: ESXi chain

    struct ESXiChain { var expected: [UInt8] }

    /// vm.vmdk (vmfs, vm-flat.vmdk) <- vm-000001.vmdk (COWD) <- vm-000002.vmdk (SEsparse).
    @discardableResult
    func makeESXiChain(seParentCID: UInt32 = 0x2222, replayJournal: UInt64 = 0, gdeTag: UInt64 = 0x1000_0000_0000_0000) throws -> ESXiChain {
        let sectors = capacity / 512
        var image = pattern(Int(capacity), 7)
        try save(image, "vm-flat.vmdk")
        try save(VMDKCraft.descriptor(createType: "vmfs", cid: 0x1111, extents: ["RW \(sectors) VMFS \"vm-flat.vmdk\""]), "vm.vmdk")
        // COWD: sectors 16, 17 (under an unmapped SEsparse grain), 100, 5000 (second table), last.
        var cowdSectors: [UInt64: [UInt8]] = [:]
        for s in [16, 17, 100, 5000, sectors - 1] as [UInt64] {
            let data = pattern(512, UInt8(truncatingIfNeeded: s))
            cowdSectors[s] = data
            image.replaceSubrange(Int(s) * 512..<Int(s + 1) * 512, with: data)
        }
        try save(VMDKCraft.cowd(capacitySectors: sectors, sectors: cowdSectors), "vm-000001-delta.vmdk")
        try save(VMDKCraft.descriptor(createType: "vmfsSparse", cid: 0x2222, parentCID: 0x1111, parentHint: "vm.vmdk",
                                      extents: ["RW \(sectors) VMFSSPARSE \"vm-000001-delta.vmdk\""]), "vm-000001.vmdk")
        // SEsparse: data in grains 0 and 300, zero grain 1 (over base data), unmapped grain 2 (over COWD data).
        let g0 = pattern(4096, 99), g300 = pattern(4096, 123)
        image.replaceSubrange(0..<4096, with: g0)
        image.replaceSubrange(300 * 4096..<301 * 4096, with: g300)
        image.replaceSubrange(4096..<3 * 4096, with: [UInt8](repeating: 0, count: 8192))
        try save(VMDKCraft.seSparse(capacitySectors: sectors, grains: [0: .data(g0), 1: .zero, 2: .unmapped, 300: .data(g300)],
                                    replayJournal: replayJournal, gdeTag: gdeTag), "vm-000002-sesparse.vmdk")
        try save(VMDKCraft.descriptor(createType: "seSparse", cid: 0x3333, parentCID: seParentCID, parentHint: "vm-000001.vmdk",
                                      extents: ["RW \(sectors) SESPARSE \"vm-000002-sesparse.vmdk\""]), "vm-000002.vmdk")
        return ESXiChain(expected: image)
    }

    func testVMDK_ESXiChainOfVmfsFlatCOWDAndSEsparse() throws {
        let c = try makeESXiChain()
        try assertReads("vm-000002.vmdk", as: c.expected)
        try assertReads("vm-000001.vmdk", as: { () -> [UInt8] in
            // The COWD link alone: base plus its sectors.
            var image = pattern(Int(capacity), 7)
            for s in [16, 17, 100, 5000, capacity / 512 - 1] as [UInt64] {
                image.replaceSubrange(Int(s) * 512..<Int(s + 1) * 512, with: pattern(512, UInt8(truncatingIfNeeded: s)))
            }
            return image
        }())
        let chain = try XCTUnwrap(try open("vm-000002.vmdk") as? VMDKChain)
        XCTAssertEqual(chain.links.map(\.fileName), ["vm-000002.vmdk", "vm-000001.vmdk", "vm.vmdk"])
        XCTAssertTrue(try chain.knownZeroExtents().covers(Extent(offset: 4096, length: 8192)), "zero and unmapped grains are known zeros")
    }

    func testVMDK_DamagedESXiDeltasAreRefusedNamingFileAndField() throws {
        try makeESXiChain(seParentCID: 0x2223)
        XCTAssertThrowsError(try open("vm-000002.vmdk")) { e in
            XCTAssertTrue("\(e)".contains("vm-000002.vmdk: field 'parentCID' is 00002223, but its parent vm-000001.vmdk has CID 00002222"), "\(e)")
        }
        try makeESXiChain(replayJournal: 1)
        XCTAssertThrowsError(try open("vm-000002.vmdk")) { e in
            XCTAssertTrue("\(e)".contains("vm-000002-sesparse.vmdk: SEsparse volatile header field 'replay_journal' is set"), "\(e)")
        }
        try makeESXiChain(gdeTag: 0x2000_0000_0000_0000)
        XCTAssertThrowsError(try open("vm-000002.vmdk")) { e in
            XCTAssertTrue("\(e)".contains("vm-000002-sesparse.vmdk: SEsparse grain directory entry 0"), "\(e)")
        }
        // A bare delta is not a disk: its descriptor is.
        for bare in ["vm-000001-delta.vmdk", "vm-000002-sesparse.vmdk"] {
            XCTAssertThrowsError(try open(bare), bare) { e in
                XCTAssertTrue("\(e)".contains("give its descriptor"), "\(e)")
            }
        }
    }
}
