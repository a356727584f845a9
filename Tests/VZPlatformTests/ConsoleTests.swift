import Foundation
import Glibc
import XCTest
@testable import VZPlatform

/// stderr with a live progress display on it: log lines below warning stay off the terminal,
/// warnings and errors (and relayed lines that are not logfmt) are printed above the live lines,
/// which are then drawn again whole.
final class ConsoleTests: XCTestCase {
    func testLogLinesStayOutOfTheLiveLines() throws {
        let path = NSTemporaryDirectory() + "/console-\(getpid()).txt"
        defer { unlink(path) }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let c = Console(fd: fd)
        c.log("before\n", important: false, inFile: true)
        c.showLive(["d0: scan", "d1: scan"])
        c.log("ts=x level=info msg=quiet\n", important: false, inFile: true)
        c.relay("ts=x level=info subsystem=vzrepl.target msg=\"target quiet\"\n")
        c.relay("ts=x level=warning subsystem=vzrepl.target msg=\"target warns\"\n")
        c.log("ts=x level=error msg=loud\n", important: true, inFile: true)
        c.log("ts=x level=info msg=\"no file\"\n", important: false, inFile: false)
        c.showLive(["d0: send", "d1: send"])
        c.endLive()
        c.message("pass finished")
        c.log("after\n", important: false, inFile: true)
        close(fd)
        let out = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertFalse(out.contains("quiet"), out)
        let up = "\u{1B}[2A\u{1B}[J", live = "\r\u{1B}[2Kd0: scan\n\r\u{1B}[2Kd1: scan\n"
        XCTAssertEqual(out, "before\n" + live
                       + up + "ts=x level=warning subsystem=vzrepl.target msg=\"target warns\"\n" + live
                       + up + "ts=x level=error msg=loud\n" + live
                       + up + "ts=x level=info msg=\"no file\"\n" + live
                       + "\u{1B}[2A" + "\r\u{1B}[2Kd0: send\n\r\u{1B}[2Kd1: send\n"
                       + "pass finished\nafter\n")
    }

    func testRelayedLinesThatAreNotLogLinesAreImportant() {
        XCTAssertTrue(Console.isImportant(relayed: "Fatal error: something\n"))
        XCTAssertTrue(Console.isImportant(relayed: "ts=1 level=error msg=x\n"))
        XCTAssertTrue(Console.isImportant(relayed: "ts=1 level=critical msg=x\n"))
        XCTAssertFalse(Console.isImportant(relayed: "ts=1 level=debug msg=x\n"))
        XCTAssertFalse(Console.isImportant(relayed: "ts=1 level=info msg=\"level=error\"\n"))
    }
}
