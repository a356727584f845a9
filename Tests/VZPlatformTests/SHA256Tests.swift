import Foundation
import XCTest
import VZCore
@testable import VZPlatform

final class SHA256Tests: XCTestCase {
    func testKnownVectors() {
        XCTAssertEqual(SHA256.digest(Array("abc".utf8)).description,
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.digest([UInt8]()).description,
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    /// openssl's command-line tool as the independent oracle, on sizes around the 64-byte block
    /// and padding boundaries and a whole 1 MiB block plus a bit.
    func testMatchesOpensslDgst() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "openssl not installed")
        let dir = try makeTempDir()
        for (i, size) in [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 65536, (1 << 20) + 3].enumerated() {
            let data = randomBytes(size, seed: UInt64(i + 1))
            let path = "\(dir)/d\(i)"
            try Data(data).write(to: URL(fileURLWithPath: path))
            let out = try run("/usr/bin/openssl", ["dgst", "-sha256", "-r", path])
            let expected = String(out.split(separator: " ").first ?? "")
            XCTAssertEqual(expected.count, 64, out)
            XCTAssertEqual(SHA256.digest(data).description, expected, "size \(size)")
            XCTAssertEqual(SHA256.digest(data).bytes.map { String(format: "%02x", $0) }.joined(), expected)
        }
    }

    func testDigestOfSliceUsesOnlyTheSlice() {
        let data = randomBytes(1000, seed: 9)
        let slice = Array(data[100..<600])
        XCTAssertEqual(data[100..<600].withUnsafeBytes { SHA256.digest($0) }, SHA256.digest(slice))
        XCTAssertNotEqual(SHA256.digest(data), SHA256.digest(slice))
    }
}
