import Foundation
import XCTest
import VZCore
@testable import VZFormats

final class FlatDescriptorTests: XCTestCase {
    private func parse(_ text: String, file: String = "scsi0.vmdk") throws -> FlatDescriptor {
        try FlatDescriptor.parse(Array(text.utf8), fileName: file)
    }

    func testTextParsesBack() throws {
        for (cid, cap, name) in [(UInt32(0x1f), UInt64(10) << 30, "scsi0-flat.vmdk"),
                                 (UInt32(0xFFFF_FFFD), UInt64(512), "a-flat.vmdk"),
                                 (UInt32(1), UInt64(2) << 40, "vm_101.disk-0-flat.vmdk")] {
            let d = FlatDescriptor(cid: cid, capacity: cap, flatFileName: name)
            XCTAssertEqual(try parse(d.text()), d)
        }
    }

    func testCIDIsEightLowercaseHexDigits() {
        let d = FlatDescriptor(cid: 0xAB, capacity: 512, flatFileName: "f")
        XCTAssertEqual(d.cidHex, "000000ab")
        XCTAssertTrue(d.text().contains("\nCID=000000ab\n"))
        XCTAssertTrue(d.text().contains("ddb.longContentID = \"000000000000000000000000000000ab\""))
    }

    func testCapacityIsRoundedUpToSectors() throws {
        let d = FlatDescriptor(cid: 5, capacity: 1000, flatFileName: "f")
        XCTAssertEqual(d.sectors, 2)
        XCTAssertTrue(d.text().contains("RW 2 VMFS \"f\""))
        XCTAssertEqual(try parse(d.text()).capacity, 1024)
    }

    func testNULPaddingTolerated() throws {
        let d = FlatDescriptor(cid: 0xDEAD_BEEF, capacity: 1 << 30, flatFileName: "x-flat.vmdk")
        XCTAssertEqual(try FlatDescriptor.parse(Array(d.text().utf8) + [UInt8](repeating: 0, count: 10_000), fileName: "p"), d)
        XCTAssertEqual(try parse(d.text().replacingOccurrences(of: "CID=", with: "  cid=")), d)
    }

    /// `parse` splits lines on "\n" or "\r", so it means to read CRLF descriptors (edited on
    /// Windows, copied off a datastore browser).
    func testRegression_CRLFLineEndings() throws {
        let d = FlatDescriptor(cid: 0xDEAD_BEEF, capacity: 1 << 30, flatFileName: "x-flat.vmdk")
        XCTAssertEqual(try parse(d.text().replacingOccurrences(of: "\n", with: "\r\n")), d)
    }

    /// A descriptor as qemu-img writes one (monolithicFlat: FLAT extent with a start offset).
    func testQemuStyleExtentLine() throws {
        let text = """
        # Disk DescriptorFile
        version=1
        CID=52a0b3c1
        parentCID=ffffffff
        createType="monolithicFlat"

        # Extent description
        RW 2097152 FLAT "disk-flat.vmdk" 0
        """
        XCTAssertEqual(try parse(text), FlatDescriptor(cid: 0x52A0_B3C1, capacity: 1 << 30, flatFileName: "disk-flat.vmdk"))
    }

    func testErrorsNameTheFileAndField() {
        let good = FlatDescriptor(cid: 1, capacity: 512, flatFileName: "f").text()
        assertVZError(.replicaIO, ["scsi0.vmdk", "field 'CID'", "missing"]) {
            try parse(good.replacingOccurrences(of: "CID=00000001\n", with: ""))
        }
        assertVZError(.replicaIO, ["scsi0.vmdk", "field 'CID'", "not hex"]) {
            try parse(good.replacingOccurrences(of: "CID=00000001", with: "CID=xyz"))
        }
        assertVZError(.replicaIO, ["scsi0.vmdk", "field 'CID'"]) {
            try parse(good.replacingOccurrences(of: "CID=00000001", with: "CID=123456789"))  // 9 hex digits
        }
        assertVZError(.replicaIO, ["scsi0.vmdk", "extent"]) {
            try parse(good.replacingOccurrences(of: "RW 1 VMFS", with: "RW 1 SPARSE"))
        }
        assertVZError(.replicaIO, ["scsi0.vmdk", "extent"]) {
            try parse(good.replacingOccurrences(of: "RW 1 VMFS", with: "RW -1 VMFS"))
        }
        assertVZError(.replicaIO, ["scsi0.vmdk", "no extent"]) {
            try parse(good.replacingOccurrences(of: "RW 1 VMFS \"f\"", with: ""))
        }
        assertVZError(.replicaIO, ["scsi0.vmdk", "UTF-8"]) {
            try FlatDescriptor.parse([0x43, 0x49, 0x44, 0x3D, 0xFF], fileName: "scsi0.vmdk")
        }
        assertVZError(.replicaIO, ["scsi0.vmdk", "64 KiB"]) {
            try FlatDescriptor.parse([UInt8](repeating: 0x20, count: 64 * 1024 + 1), fileName: "scsi0.vmdk")
        }
    }

    func testRandomCIDAvoidsReservedValues() {
        for _ in 0..<20_000 {
            let c = FlatDescriptor.randomCID()
            XCTAssertTrue(c != 0xFFFF_FFFF && c != 0xFFFF_FFFE && c != 0)
        }
    }

    // MARK: qemu-img as the independent reader

    private func qemuInfo(_ path: String) throws -> [String: Any] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/qemu-img")
        p.arguments = ["info", "--output=json", path]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, errText)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    private func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vzfmt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func testQemuImgReadsOurDescriptor() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-img"), "qemu-img not installed")
        let dir = try tempDir()
        for capacity in [UInt64(10) << 30 | 1 << 20, UInt64(2) << 40, UInt64(64) << 10] {
            let d = FlatDescriptor(cid: 0x00C0_FFEE, capacity: capacity, flatFileName: "scsi0-flat.vmdk")
            let descPath = dir.appendingPathComponent("scsi0.vmdk").path
            try Data(d.text().utf8).write(to: URL(fileURLWithPath: descPath))
            let flat = dir.appendingPathComponent("scsi0-flat.vmdk").path
            FileManager.default.createFile(atPath: flat, contents: nil)
            XCTAssertEqual(truncate(flat, off_t(capacity)), 0)  // sparse
            let info = try qemuInfo(descPath)
            XCTAssertEqual(info["format"] as? String, "vmdk")
            XCTAssertEqual((info["virtual-size"] as? NSNumber)?.uint64Value, capacity)
            let specific = (info["format-specific"] as? [String: Any])?["data"] as? [String: Any]
            XCTAssertEqual((specific?["cid"] as? NSNumber)?.uint32Value, 0x00C0_FFEE)
            XCTAssertEqual(specific?["create-type"] as? String, "vmfs")
        }
    }

    /// The other direction: a descriptor written by qemu-img parses with the capacity and flat
    /// file name qemu-img reports.
    func testWeReadQemuImgDescriptor() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-img"), "qemu-img not installed")
        let dir = try tempDir()
        let path = dir.appendingPathComponent("made.vmdk").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/qemu-img")
        p.arguments = ["create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", path, "3G"]
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let bytes = try XCTUnwrap(FileManager.default.contents(atPath: path))
        let d = try FlatDescriptor.parse(Array(bytes), fileName: path)
        XCTAssertEqual(d.capacity, 3 << 30)
        XCTAssertEqual(d.flatFileName, "made-flat.vmdk")
        let specific = (try qemuInfo(path)["format-specific"] as? [String: Any])?["data"] as? [String: Any]
        XCTAssertEqual((specific?["cid"] as? NSNumber)?.uint32Value, d.cid)
    }

    private func assertVZError<T>(_ kind: VZError.Kind, _ parts: [String], file: StaticString = #filePath, line: UInt = #line,
                                  _ body: () throws -> T) {
        do {
            let v = try body()
            XCTFail("expected an error, got \(v)", file: file, line: line)
        } catch let e as VZError {
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            for p in parts { XCTAssertTrue(e.message.contains(p), "'\(e.message)' does not mention '\(p)'", file: file, line: line) }
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
    }
}
