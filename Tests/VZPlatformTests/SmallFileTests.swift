import Foundation
import Glibc
import XCTest
import VZCore
@testable import VZPlatform

/// A small configuration file is read with its size and type checked first.
final class SmallFileTests: XCTestCase {
    func read(_ path: String, max: Int = 100) throws -> [UInt8] {
        try SmallFile.read(path, maxSize: max, what: "test file", errorKind: .badJobFile)
    }

    func testReadsARegularFileUpToItsLimit() throws {
        let dir = try makeTempDir()
        for n in [0, 1, 99, 100] {
            let bytes = randomBytes(n, seed: UInt64(n))
            FileManager.default.createFile(atPath: dir + "/f\(n)", contents: Data(bytes))
            XCTAssertEqual(try read(dir + "/f\(n)"), bytes)
        }
        FileManager.default.createFile(atPath: dir + "/f101", contents: Data(count: 101))
        assertVZError(.badJobFile, ["f101", "101 bytes, larger than the 100 bytes a test file may have"]) { try read(dir + "/f101") }
    }

    func testAHugeSparseFileIsRefusedBeforeReading() throws {
        let path = try makeTempDir() + "/huge"
        FileManager.default.createFile(atPath: path, contents: nil)
        XCTAssertEqual(truncate(path, 1 << 40), 0)
        assertVZError(.badJobFile, ["1099511627776 bytes, larger than"]) { try read(path) }
    }

    func testOnlyRegularFilesAreRead() throws {
        let dir = try makeTempDir()
        XCTAssertEqual(mkfifo(dir + "/fifo", 0o600), 0)
        // A FIFO without a writer: opened without blocking, refused before any read.
        assertVZError(.badJobFile, ["fifo", "a FIFO (named pipe), not a test file"]) { try read(dir + "/fifo") }
        assertVZError(.badJobFile, ["a directory, not a test file"]) { try read(dir) }
        assertVZError(.badJobFile, ["/dev/zero", "a character device"]) { try read("/dev/zero") }
        assertVZError(.badJobFile, ["missing", "No such file"]) { try read(dir + "/missing") }
    }
}
