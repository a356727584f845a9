import Foundation
import XCTest
import VZCore
@testable import VZFormats

/// Inputs the fuzzers (Fuzz/, Scripts/fuzz.sh) found, kept as tests. Each runs in a child copy of
/// the test process, so an input that still traps fails its own test instead of ending the run.
final class FuzzRegressionTests: XCTestCase {
    private static let childVariable = "VZREPL_TEST_CHILD"

    /// In the child (the variable names this test) runs `body`; in the parent re-runs this test
    /// alone in a child process and requires it to exit cleanly.
    private func isolated(_ method: String = #function, file: StaticString = #filePath, line: UInt = #line,
                          _ body: () throws -> Void) throws {
        let testName = "VZFormatsTests.FuzzRegressionTests/\(method.replacingOccurrences(of: "()", with: ""))"
        if ProcessInfo.processInfo.environment[Self.childVariable] == testName {
            try body()
            return
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        p.arguments = [testName]
        var env = ProcessInfo.processInfo.environment
        env[Self.childVariable] = testName
        env["SWIFT_BACKTRACE"] = "enable=no"
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let crashed = p.terminationReason == .uncaughtSignal
        XCTAssertTrue(p.terminationReason == .exit && p.terminationStatus == 0,
                      "\(testName) \(crashed ? "CRASHED (signal \(p.terminationStatus); 4 = SIGILL, a Swift trap: overflow, precondition, force-unwrap)" : "failed (exit \(p.terminationStatus))"):\n"
                      + text.split(separator: "\n").suffix(12).joined(separator: "\n"), file: file, line: line)
        if !crashed {
            XCTAssertTrue(text.contains("Executed 1 test"), "the child did not run the test:\n\(text.suffix(2000))", file: file, line: line)
        }
    }

    private static func bytes(hex: String) -> [UInt8] {
        let h = Array(hex.filter { !$0.isWhitespace })
        return stride(from: 0, to: h.count, by: 2).map { UInt8(String(h[$0...$0 + 1]), radix: 16)! }
    }

    /// vzmap-fuzz, first minute: a header whose capacity is near 2^64. `decodeHeader` computes
    /// `BlockMap.blockCount(capacity:blockSize:)` = capacity + blockSize - 1 (before the header
    /// checksum is checked), which overflows and traps (BlockMap.swift:50). An untrusted
    /// `.vzmap` on the target can crash the agent instead of giving `.corruptMap`.
    func testRegression_VzmapCapacityNearUInt64MaxIsRejected() throws {
        try isolated {
            let input = Self.bytes(hex: """
                565a5245504d41500100000000001000 faffffffffffffff0000000000000000
                00000000000000002100000000000000 00000000000000000000000000000000
                8d58ecf900000000565a4d45
                """)
            for decode in [{ _ = try VzmapFile.decodeHeader(input, fileName: "crash.vzmap") },
                           { _ = try VzmapFile.decode(input, fileName: "crash.vzmap") }] {
                XCTAssertThrowsError(try decode()) { e in
                    XCTAssertEqual((e as? VZError)?.kind, .corruptMap)
                }
            }
        }
    }

    /// The same overflow with a valid header checksum (so no order of checks can hide it).
    func testRegression_VzmapCapacityNearUInt64MaxWithValidCRCIsRejected() throws {
        try isolated {
            var w = ByteWriter()
            w.raw(VzmapFile.magic); w.u32(1); w.u32(1 << 20); w.u64(UInt64.max); w.u64(1)
            w.u64(1 << 44); w.u32(33); w.u32(0); w.u64(0); w.u32(0)
            w.u32(CRC32C.checksum(w.bytes))
            XCTAssertThrowsError(try VzmapFile.decode(w.bytes, fileName: "crash.vzmap")) { e in
                XCTAssertEqual((e as? VZError)?.kind, .corruptMap)
            }
        }
    }

    /// A descriptor whose extent line claims 2^55 sectors or more: `parse` returns
    /// `capacity: s * 512`, which overflows and traps (FlatDescriptor.swift, end of `parse`).
    /// Found by review and by descriptor-fuzz (the input below, FlatDescriptor.swift:81); a
    /// descriptor in the replica directory is on-disk input like the map.
    func testRegression_DescriptorSectorCountOverflowIsRejected() throws {
        try isolated {
            let fuzzerInput = Self.bytes(hex: """
                4349443d66666666666666660a637272000000767420464c415420226469220a52572030303030303
                030313135313538343532343632363530363534363320464c415420226469736b6d664c0a522d666c
                """)
            let minimal = Array("CID=1\nRW 36028797018963968 VMFS \"x-flat.vmdk\"\n".utf8)
            for input in [fuzzerInput, minimal] {
                XCTAssertThrowsError(try FlatDescriptor.parse(input, fileName: "crash.vmdk")) { e in
                    XCTAssertEqual((e as? VZError)?.kind, .replicaIO)
                    XCTAssertTrue("\(e)".contains("crash.vmdk"))
                }
            }
        }
    }

    /// The largest disk a descriptor may describe (1 PiB) is fine, one sector more is not (and
    /// the isolation itself works).
    func testLargestSectorCountParses() throws {
        try isolated {
            let text = "CID=1\nRW 2199023255552 VMFS \"x-flat.vmdk\"\n"
            XCTAssertEqual(try FlatDescriptor.parse(Array(text.utf8), fileName: "ok.vmdk").capacity, 1 << 50)
            let over = "CID=1\nRW 2199023255553 VMFS \"x-flat.vmdk\"\n"
            XCTAssertThrowsError(try FlatDescriptor.parse(Array(over.utf8), fileName: "big.vmdk"))
        }
    }
}
