import Foundation
import XCTest
@testable import VZSource
import VZCore
import VZFormats
import VZTestSupport

/// Every VMDK format qemu-img writes, read through the reader factory, equals
/// `qemu-img convert -O raw` of the same image or chain byte for byte, and its known zeros are
/// zeros in the oracle.
final class VMDKReaderTests: XCTestCase {
    var dir: String!
    let mib: UInt64 = 1 << 20

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "vzrepl-vmdk-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func open(_ path: String, format: JobConfig.DiskFormat? = nil) throws -> BlockReader {
        try SourceReaderFactory.open(JobConfig.DiskConfig(name: "disk0", source: path, format: format)).reader
    }

    /// Reads the whole disk in `chunk`-byte pieces (odd sizes cross grains and extents).
    func readAll(_ r: BlockReader, chunk: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: Int(r.capacity))
        var at = 0
        try out.withUnsafeMutableBytes { buf in
            while at < buf.count {
                let n = min(chunk, buf.count - at)
                try r.read(at: UInt64(at), into: UnsafeMutableRawBufferPointer(rebasing: buf[at..<at + n]))
                at += n
            }
        }
        return out
    }

    /// The reader equals the oracle, at two chunk sizes; known zeros are zeros; written
    /// ranges are not claimed as known zeros.
    func assertMatchesOracle(_ image: String, written: [QemuFixtures.Write] = [], file: StaticString = #filePath, line: UInt = #line) throws {
        let oraclePath = dir + "/oracle-\(UInt32.random(in: 0...UInt32.max)).raw"
        try QemuFixtures.oracle(image, into: oraclePath)
        let expected = [UInt8](try Data(contentsOf: URL(fileURLWithPath: oraclePath)))
        let r = try open(image)
        XCTAssertEqual(r.capacity, UInt64(expected.count), "capacity of \(image)", file: file, line: line)
        for chunk in [65536, 12345 * 4] {
            let got = try readAll(r, chunk: chunk)
            if got != expected {
                let first = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1
                XCTFail("\(image): differs from qemu-img convert -O raw at byte \(first) (chunk \(chunk))", file: file, line: line)
                return
            }
        }
        let zeros = try r.knownZeroExtents()
        for e in zeros {
            XCTAssertTrue(expected[Int(e.offset)..<Int(e.end)].allSatisfy { $0 == 0 }, "known zero \(e) is not zero in \(image)", file: file, line: line)
        }
        for w in written where !w.zero && w.pattern != 0 {
            XCTAssertTrue(zeros.intersection(ExtentSet([Extent(offset: w.offset, length: w.length)])).isEmpty,
                          "written \(w.offset)+\(w.length) reported as known zero", file: file, line: line)
        }
    }

    func testVMDK_MonolithicSparse() throws {
        let size = 40 * mib
        let w = QemuFixtures.scatteredWrites(size, pattern: 0x41)
        try QemuFixtures.create(dir + "/ms.vmdk", subformat: "monolithicSparse", size: size, writes: w)
        try assertMatchesOracle(dir + "/ms.vmdk", written: w)
        let zeros = try open(dir + "/ms.vmdk").knownZeroExtents()
        XCTAssertGreaterThan(zeros.totalLength, size - 4 * mib, "unallocated grains are known zeros")
    }

    func testVMDK_MonolithicSparseWithZeroedGrains() throws {
        let size = 8 * mib
        let w = [QemuFixtures.Write(0x51, at: 0, 2 * mib)]
        try QemuFixtures.create(dir + "/zg.vmdk", subformat: "monolithicSparse", size: size, options: ["zeroed_grain=on"], writes: w)
        try QemuFixtures.write(dir + "/zg.vmdk", [QemuFixtures.Write(0, at: 65536, 65536 * 3, zero: true)])
        try assertMatchesOracle(dir + "/zg.vmdk")
        let zeros = try open(dir + "/zg.vmdk").knownZeroExtents()
        XCTAssertTrue(zeros.covers(Extent(offset: 65536, length: 65536 * 3)), "\(zeros)")
    }

    func testVMDK_MonolithicFlat() throws {
        let size = 6 * mib
        let w = QemuFixtures.scatteredWrites(size, pattern: 0x61)
        try QemuFixtures.create(dir + "/mf.vmdk", subformat: "monolithicFlat", size: size, writes: w)
        try assertMatchesOracle(dir + "/mf.vmdk", written: w)
        // qemu's -flat.vmdk is a sparse file: its holes are known zeros, as a raw image's are.
        XCTAssertGreaterThan(try open(dir + "/mf.vmdk").knownZeroExtents().totalLength, size / 2)
    }

    func testVMDK_TwoGbMaxExtentSparseAndFlat() throws {
        // 4 GiB + 3 MiB: three extents, the last one short, all sparse files on disk.
        let size = 4 * 1024 * mib + 3 * mib
        let w = [QemuFixtures.Write(0x71, at: 2048 * mib - 4096, 8192), QemuFixtures.Write(0x72, at: size - 65536, 65536),
                 QemuFixtures.Write(0x73, at: 0, 512)]
        for sub in ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat"] {
            try QemuFixtures.create(dir + "/\(sub).vmdk", subformat: sub, size: size, writes: w)
            let r = try open(dir + "/\(sub).vmdk")
            XCTAssertEqual(r.capacity, size)
            // Compare the written regions and a few untouched ones with the oracle without
            // materialising 4 GiB: read them both ways.
            let oraclePath = dir + "/\(sub).raw"
            try QemuFixtures.oracle(dir + "/\(sub).vmdk", into: oraclePath)
            let oracle = try FileHandle(forReadingFrom: URL(fileURLWithPath: oraclePath))
            for (off, len) in [(UInt64(0), 65536), (2048 * mib - 65536, 3 * 65536), (size - 3 * 65536, 3 * 65536), (3000 * mib, 4096)] {
                try oracle.seek(toOffset: off)
                let want = [UInt8](oracle.readData(ofLength: len))
                var got = [UInt8](repeating: 0xEE, count: len)
                try got.withUnsafeMutableBytes { try r.read(at: off, into: $0) }
                XCTAssertEqual(got, want, "\(sub) at \(off)")
            }
            try oracle.close()
            if sub.hasSuffix("Sparse") {
                XCTAssertGreaterThan(try r.knownZeroExtents().totalLength, size - 4 * mib)
            }
        }
    }

    func testVMDK_StreamOptimizedQemuLayout() throws {
        let size = 40 * mib
        let w = QemuFixtures.scatteredWrites(size, pattern: 0x81) + [QemuFixtures.Write(0x8F, at: 10 * mib, 5 * mib)]
        try QemuFixtures.makeRaw(dir + "/so.raw", size: size, writes: w)
        try QemuFixtures.convert(raw: dir + "/so.raw", to: dir + "/so.vmdk", subformat: "streamOptimized")
        try assertMatchesOracle(dir + "/so.vmdk", written: w)
    }

    func testVMDK_ChainOfThreeLinks() throws {
        let leaf = try QemuFixtures.chain(in: dir, size: 16 * mib)
        try assertMatchesOracle(leaf)
        let chain = try XCTUnwrap(try open(leaf) as? VMDKChain)
        XCTAssertEqual(chain.links.map(\.fileName), ["leaf.vmdk", "mid.vmdk", "base.vmdk"])
    }

    func testVMDK_ChainOverAFlatBase() throws {
        let leaf = try QemuFixtures.chain(in: dir, size: 8 * mib, baseSubformat: "monolithicFlat")
        try assertMatchesOracle(leaf)
    }

    func testVMDK_BrokenChainNamesTheLinkAndField() throws {
        let leaf = try QemuFixtures.chain(in: dir, size: 8 * mib)
        // Writing the middle link gives it a new CID: the leaf's parentCID no longer matches.
        try QemuFixtures.write(dir + "/mid.vmdk", [QemuFixtures.Write(0x99, at: 0, 512)])
        XCTAssertThrowsError(try open(leaf)) { e in
            let v = e as? VZError
            XCTAssertEqual(v?.kind, .sourceIO)
            XCTAssertTrue(v?.message.contains("leaf.vmdk: field 'parentCID'") ?? false, "\(e)")
            XCTAssertTrue(v?.message.hasPrefix("disk 'disk0': ") ?? false, "\(e)")
        }
        try FileManager.default.removeItem(atPath: dir + "/mid.vmdk")
        XCTAssertThrowsError(try open(leaf)) { e in
            XCTAssertTrue("\(e)".contains("leaf.vmdk: field 'parentFileNameHint': parent 'mid.vmdk' cannot be opened"), "\(e)")
        }
    }

    func testVMDK_ContainersItDoesNotReadAreRefused() throws {
        let qcow = dir + "/d.qcow2"
        try QemuFixtures.run([QemuFixtures.qemuImg, "create", "-q", "-f", "qcow2", qcow, "1M"])
        let vhd = dir + "/d.vhd"
        try QemuFixtures.run([QemuFixtures.qemuImg, "create", "-q", "-f", "vpc", vhd, "1M"])
        let vhdFixed = dir + "/f.vhd"
        try QemuFixtures.run([QemuFixtures.qemuImg, "create", "-q", "-f", "vpc", "-o", "subformat=fixed", vhdFixed, "1M"])
        let vhdx = dir + "/d.vhdx"
        try QemuFixtures.run([QemuFixtures.qemuImg, "create", "-q", "-f", "vhdx", vhdx, "1M"])
        let vdi = dir + "/d.vdi"
        try QemuFixtures.run([QemuFixtures.qemuImg, "create", "-q", "-f", "vdi", vdi, "1M"])
        for (path, what) in [(qcow, "qcow2"), (vhd, "VHD"), (vhdFixed, "VHD"), (vhdx, "VHDX"), (vdi, "VDI")] {
            XCTAssertThrowsError(try open(path), path) { e in
                XCTAssertEqual((e as? VZError)?.kind, .sourceUnsupported, "\(e)")
                XCTAssertTrue("\(e)".contains(what) && "\(e)".contains("qemu-img convert -O raw"), "\(e)")
            }
        }
        // "format": "raw" reads the container's bytes as they are, on purpose.
        let raw = try open(vhdFixed, format: .raw)
        XCTAssertTrue(raw is RawBlockReader)
        XCTAssertEqual(raw.capacity, try FileManager.default.attributesOfItem(atPath: vhdFixed)[.size] as? UInt64)
    }
}
