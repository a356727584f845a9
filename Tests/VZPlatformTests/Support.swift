import Foundation
import XCTest
import VZCore
import VZTestSupport

typealias SplitMix = SplitMix64

func randomBytes(_ n: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix(seed: seed)
    var out = [UInt8](repeating: 0, count: n)
    var i = 0
    while i < n {
        var w = rng.next()
        for _ in 0..<8 where i < n { out[i] = UInt8(truncatingIfNeeded: w); w >>= 8; i += 1 }
    }
    return out
}

extension XCTestCase {
    /// A fresh directory under /tmp, removed after the test.
    func makeTempDir(_ label: String = "vzplat") throws -> String {
        let path = NSTemporaryDirectory() + "\(label)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// Runs a program, returning its standard output; fails the test on a non-zero exit.
    func run(_ program: String, _ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "\(program) \(args)", file: file, line: line)
        return String(decoding: data, as: UTF8.self)
    }
}

func assertVZError<T>(_ kind: VZError.Kind, _ parts: [String] = [], _ what: String = "",
                      file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T) {
    do {
        let v = try body()
        XCTFail("expected a \(kind) error, got \(v) \(what)", file: file, line: line)
    } catch let e as VZError {
        XCTAssertEqual(e.kind, kind, "\(e) \(what)", file: file, line: line)
        for p in parts { XCTAssertTrue(e.message.contains(p), "'\(e.message)' does not mention '\(p)' \(what)", file: file, line: line) }
    } catch {
        XCTFail("expected VZError, got \(error) \(what)", file: file, line: line)
    }
}
