import Foundation
import Logging
import VZCore
import VZTestSupport
import XCTest
@testable import VZPlatform

/// The log handler writes what the peer sent (versions, names, error messages) without letting it
/// forge a line or a field: every line is logfmt, read back here by an independent parser.
final class LineLogHandlerTests: XCTestCase {
    func logLines(maxBytes: UInt64 = LogSink.defaultMaxBytes, path: String? = nil, _ body: (inout Logger) -> Void) throws -> [String] {
        let path = try path ?? (makeTempDir("vzlog") + "/t.log")
        let sink = LogSink(filePath: path, maxBytes: maxBytes, toStderr: false)
        var logger = Logger(label: "vzrepl.test") { LineLogHandler(label: $0, sink: sink, level: .trace) }
        body(&logger)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(text.hasSuffix("\n"))
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    /// Regression: peer-controlled text was logged raw, so an embedded newline started a forged
    /// log line and ANSI escapes reached the reader's terminal. Now a value can neither end the
    /// line nor start a field: the parser reads back exactly what was logged.
    func testRegression_MessagesAndMetadataCannotForgeALineOrAField() throws {
        let hostile = "vzrepl-source 9\nts=2026-01-01T00:00:00.000Z level=error msg=forged\r\u{1B}[2J\tend\u{7F}\u{0}\u{85}\u{2028}x\u{2029} kind=\"x\" \\"
        let lines = try logLines { logger in
            logger[metadataKey: "job"] = "vm1\nlevel=error forged"
            logger.info("session started with \(hostile)", metadata: ["peer": "a b=c", "k\ney": "v", "level": "fake", "empty": ""])
        }
        XCTAssertEqual(lines.count, 1, "\(lines)")
        let f = try LogfmtParser.fields(lines[0])
        XCTAssertEqual(f["msg"], "session started with \(hostile)")
        XCTAssertEqual(f["job"], "vm1\nlevel=error forged")
        XCTAssertEqual(f["peer"], "a b=c")
        XCTAssertEqual(f["k_ey"], "v")
        XCTAssertEqual(f["level"], "info")
        XCTAssertEqual(f["meta.level"], "fake")
        XCTAssertEqual(f["empty"], "")
        XCTAssertNil(f["kind"])
        XCTAssertFalse(lines[0].unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, lines[0])
    }

    func testFieldsAndOrder() throws {
        let lines = try logLines { logger in
            logger[metadataKey: "pass"] = "p-1"
            logger[metadataKey: "disk"] = "d0"
            logger[metadataKey: "job"] = "vm1"
            logger.notice("ünïcødé ✓", metadata: ["zeta": "1", "alpha": "2"])
        }
        let fields = try LogfmtParser.parse(lines[0])
        XCTAssertEqual(fields.map(\.key), ["ts", "level", "subsystem", "msg", "job", "disk", "pass", "alpha", "zeta"])
        XCTAssertEqual(fields[3].value, "ünïcødé ✓")
        XCTAssertTrue(lines[0].contains("msg=\"ünïcødé ✓\""), lines[0])
        // UTC, RFC 3339 with milliseconds.
        XCTAssertNotNil(fields[0].value.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression), fields[0].value)
    }

    /// Every error line has kind and hint; the hint is the kind's entry of the one table.
    func testErrorLinesCarryKindAndHint() throws {
        let lines = try logLines { logger in
            logger.failure("pass failed", VZError(.noSpace, "disk full\nkind=forged"))
            logger.error("no kind given")
            logger.critical("unknown kind", metadata: ["kind": "nonsense"])
            logger.warning("a warning has neither")
        }
        let f = try lines.map(LogfmtParser.fields)
        XCTAssertEqual(f[0]["kind"], "noSpace")
        XCTAssertEqual(f[0]["hint"], VZError.Kind.noSpace.hint)
        XCTAssertEqual(f[0]["error"], "disk full\nkind=forged")
        XCTAssertEqual(f[1]["kind"], "internal")
        XCTAssertEqual(f[1]["hint"], VZError.Kind.internal.hint)
        XCTAssertEqual(f[2]["kind"], "internal")
        XCTAssertNil(f[3]["kind"])
        XCTAssertNil(f[3]["hint"])
        for kind in VZError.Kind.allCases {
            XCTAssertFalse(kind.hint.isEmpty || kind.hint.contains("\n"), "\(kind)")
            XCTAssertFalse(kind.meaning.isEmpty || kind.meaning.contains("\n"), "\(kind)")
        }
    }

    /// The size cap: past it the file is renamed to FILE.1 and a new one started; a second
    /// writer that still holds the renamed file moves to the new one instead of rotating again.
    func testSizeCapRotatesToDotOne() throws {
        let path = try makeTempDir("vzlog") + "/t.log"
        let a = LogSink(filePath: path, maxBytes: 1000, toStderr: false)
        let b = LogSink(filePath: path, maxBytes: 1000, toStderr: false)
        let line = String(repeating: "x", count: 99) + "\n"
        for i in 0..<25 { (i % 2 == 0 ? a : b).write(line) }
        let current = try String(contentsOfFile: path, encoding: .utf8)
        let rotated = try String(contentsOfFile: path + ".1", encoding: .utf8)
        XCTAssertLessThanOrEqual(current.utf8.count, 1000)
        XCTAssertLessThanOrEqual(rotated.utf8.count, 1000)
        XCTAssertEqual(rotated.utf8.count, 1000, "the rotated file is full, not cut short by a second rotation")
        XCTAssertEqual(current.utf8.count, 500)
    }

    /// logrotate's `create`: the file is renamed and a new one made; the next line goes to the new
    /// one (the sink checks the path before every line), none is lost in the renamed one.
    func testALogRenamedByLogrotateIsReopened() throws {
        let path = try makeTempDir("vzlog") + "/t.log"
        let sink = LogSink(filePath: path, toStderr: false)
        sink.write("one\n")
        XCTAssertEqual(rename(path, path + ".1"), 0)
        FileManager.default.createFile(atPath: path, contents: nil)
        sink.write("two\n")
        XCTAssertEqual(rename(path, path + ".2"), 0)  // and without a new file: the sink makes it
        sink.write("three\n")
        XCTAssertEqual(try String(contentsOfFile: path + ".1", encoding: .utf8), "one\n")
        XCTAssertEqual(try String(contentsOfFile: path + ".2", encoding: .utf8), "two\n")
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "three\n")
    }

    /// The appliance's logrotate file is valid for logrotate itself (a dry run over a copy that
    /// points at a temp dir), when logrotate is installed.
    func testApplianceLogrotateFileIsValid() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/logrotate") else { throw XCTSkip("logrotate is not installed") }
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = try makeTempDir("vzlogrotate")
        var conf = try String(contentsOf: repo.appendingPathComponent("Appliance/logrotate.d/vzrepl"), encoding: .utf8)
        let directives = conf.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }.joined(separator: "\n")
        XCTAssertTrue(directives.contains("/var/log/vzrepl/*.log") && directives.contains("create") && !directives.contains("copytruncate"), directives)
        conf = conf.replacingOccurrences(of: "/var/log/vzrepl", with: dir + "/logs")
            .split(separator: "\n").filter { !$0.contains(" su ") && !$0.contains("create ") }.joined(separator: "\n")
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir + "/logs/vzrepl-target.log", contents: Data("x\n".utf8))
        try conf.write(toFile: dir + "/conf", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/logrotate")
        p.arguments = ["-f", "-s", dir + "/state", dir + "/conf"]
        let err = Pipe()
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/logs/vzrepl-target.log.1"), text)
    }

    /// --debug: session frames get a line each, bulk frames are counted and summarised (before the
    /// next session frame, at most once a second, and at the end).
    func testFrameTraceSummarisesBulkFrames() throws {
        let lines = try logLines { logger in
            let t = FrameTrace(logger: logger)
            t.observe(sent: false, type: Message.MessageType.hello.rawValue, bytes: 60)
            for _ in 0..<1000 { t.observe(sent: true, type: Message.MessageType.blockData.rawValue, bytes: 1000) }
            t.observe(sent: true, type: Message.MessageType.keepalive.rawValue, bytes: 8)
            t.observe(sent: true, type: Message.MessageType.commitDisk.rawValue, bytes: 16)
            t.observe(sent: false, type: 200, bytes: 8)
            t.flush()
        }
        let f = try lines.map(LogfmtParser.fields)
        XCTAssertEqual(f.count, 4, "\(lines)")
        XCTAssertEqual(f[0]["type"], "hello")
        XCTAssertEqual(f[0]["direction"], "received")
        XCTAssertEqual(f[1]["msg"], "frames since the last summary")
        XCTAssertEqual(f[1]["sent.blockData"], "1000")
        XCTAssertEqual(f[1]["sent.blockData.bytes"], "1000000")
        XCTAssertEqual(f[1]["sent.keepalive"], "1")
        XCTAssertEqual(f[2]["type"], "commitDisk")
        XCTAssertEqual(f[3]["type"], "type200", "an unknown type is named by its number")
        XCTAssertTrue(f.allSatisfy { $0["level"] == "trace" })
    }

    func testUnwritableLogFileFallsBackToStderr() throws {
        let sink = LogSink(filePath: "/proc/nonexistent-dir/x.log", toStderr: false)
        XCTAssertNotNil(sink.openProblem)
        sink.write("ignored\n")  // no crash, nothing written
    }

    func testLogfmtValueRules() {
        XCTAssertEqual(Logfmt.value("plain"), "plain")
        XCTAssertEqual(Logfmt.value(""), "\"\"")
        XCTAssertEqual(Logfmt.value("a b"), "\"a b\"")
        XCTAssertEqual(Logfmt.value("a=b"), "\"a=b\"")
        XCTAssertEqual(Logfmt.value("q\"\\"), #""q\"\\""#)
        XCTAssertEqual(Logfmt.value("\u{1B}\u{2028}\u{85}"), #""\x1b\u2028\u0085""#)
        XCTAssertEqual(Logfmt.key("a b=c\n"), "a_b_c_")
        XCTAssertEqual(Logfmt.key(""), "_")
    }
}

/// Docs/operations.md's troubleshooting table is the hint table, row for row (`ErrorHint`).
final class TroubleshootingTableTests: XCTestCase {
    static func row(_ kind: VZError.Kind) -> String {
        func cell(_ s: String) -> String { s.replacingOccurrences(of: "|", with: "\\|") }
        return "| `\(kind.rawValue)` | \(cell(kind.meaning)) | \(cell(kind.hint)) |"
    }

    func testOperationsDocHasOneRowPerErrorKindWithTheHintText() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: repo.appendingPathComponent("Docs/operations.md"), encoding: .utf8)
        let missing = VZError.Kind.allCases.map(TroubleshootingTableTests.row).filter { !doc.contains($0) }
        XCTAssertEqual(missing, [], "Docs/operations.md lacks these rows (paste them into the troubleshooting table):\n" + missing.joined(separator: "\n"))
    }
}
