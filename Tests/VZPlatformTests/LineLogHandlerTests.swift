import Foundation
import Logging
import XCTest
@testable import VZPlatform

/// The log handler writes what the peer sent (versions, names, error messages) without letting it
/// forge a line: the message and metadata are escaped in the handler itself.
final class LineLogHandlerTests: XCTestCase {
    func logLines(_ body: (inout Logger) -> Void) throws -> [String] {
        let path = try makeTempDir("vzlog") + "/t.log"
        let sink = LineLogHandler.Sink(filePath: path)
        var logger = Logger(label: "vzrepl.test") { LineLogHandler(label: $0, sink: sink, level: .trace) }
        body(&logger)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(text.hasSuffix("\n"))
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    /// Regression: peer-controlled text was logged raw, so an embedded newline started a forged
    /// log line and ANSI escapes reached the reader's terminal.
    func testRegression_MessagesAndMetadataCannotForgeALine() throws {
        let hostile = "vzrepl-source 9\n2026-01-01T00:00:00.000Z error   vzrepl.target: forged\r\u{1B}[2J\tend\u{7F}\u{0}\u{85}\u{2028}x\u{2029}"
        let lines = try logLines { logger in
            logger[metadataKey: "job"] = "vm1\nlevel=error forged"
            logger.info("session started with \(hostile)", metadata: ["peer": "a\nb", "k\ney": "v"])
        }
        XCTAssertEqual(lines.count, 1, "\(lines)")
        let line = try XCTUnwrap(lines.first)
        XCTAssertTrue(line.contains("job=vm1\\nlevel=error forged"), line)
        XCTAssertTrue(line.contains("peer=a\\nb"), line)
        XCTAssertTrue(line.contains("k\\ney=v"), line)
        XCTAssertTrue(line.hasSuffix(#"session started with vzrepl-source 9\n2026-01-01T00:00:00.000Z error   vzrepl.target: forged\r\x1b[2J\tend\x7f\x00\u{85}\u{2028}x\u{2029}"#), line)
        XCTAssertFalse(line.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, line)
    }

    func testPlainTextIsUnchanged() throws {
        for text in ["", "plain ascii: 42 blocks", "ünïcødé ✓ 日本", "back\\slash"] {
            XCTAssertEqual(LineLogHandler.escaped(text), text)
        }
        let lines = try logLines { $0.notice("ünïcødé ✓") }
        XCTAssertTrue(lines.first?.hasSuffix("vzrepl.test: ünïcødé ✓") ?? false, "\(lines)")
    }
}
