import Foundation
import Glibc

/// The process's stderr when a person watches it: every writer of stderr (the log handler, the
/// exec target's relayed stderr, the progress display) goes through here, under one lock, so no
/// log line lands inside a live progress line. While a live area is shown (`showLive`), log lines
/// at info and below go only to the log file; warnings and errors (and anything that is not a log
/// line, such as a crashing target's last words) are printed above the live lines: the live lines
/// are cleared, the text printed, the live lines drawn again. Without a live area, lines are
/// written through unchanged.
public final class Console: @unchecked Sendable {
    public static let shared = Console(fd: 2)

    private let lock = NSLock()
    private let fd: Int32
    private var live: [String]?
    private var drawn = 0

    public init(fd: Int32) { self.fd = fd }

    /// Draws the live lines in place of the ones drawn last (the first call starts the live area).
    public func showLive(_ lines: [String]) {
        lock.lock()
        defer { lock.unlock() }
        live = lines
        write(moveUp() + draw(lines))
    }

    /// Leaves the live lines on the screen as they are and writes below them from now on.
    public func endLive() {
        lock.lock()
        defer { lock.unlock() }
        live = nil
        drawn = 0
    }

    /// A message for the person (a summary, an error): above the live lines if any.
    public func message(_ text: String) {
        lock.lock()
        defer { lock.unlock() }
        above(text.hasSuffix("\n") ? text : text + "\n")
    }

    /// One log line (with its newline). `important`: a warning or worse. `inFile`: the line is also
    /// in a log file, so the terminal may skip it while the live area is shown.
    public func log(_ line: String, important: Bool, inFile: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if live == nil { write(line); return }
        if important || !inFile { above(line) }
    }

    /// One line of the exec target's stderr (with its newline): the target's own log lines, logfmt;
    /// the ones below warning are in the target's log, and a line that is not logfmt at all (a
    /// crash, a loader's complaint) is always shown.
    public func relay(_ line: String) {
        log(line, important: Console.isImportant(relayed: line), inFile: true)
    }

    public static func isImportant(relayed line: String) -> Bool {
        guard let r = line.range(of: "level=") , line.hasPrefix("ts=") else { return true }
        let level = line[r.upperBound...].prefix { $0 != " " && $0 != "\n" }
        return !["trace", "debug", "info", "notice"].contains(String(level))
    }

    private func above(_ text: String) {
        var s = moveUp()
        if drawn > 0 { s += "\u{1B}[J" }
        drawn = 0
        s += text
        if let live { s += draw(live) }
        write(s)
    }

    private func moveUp() -> String { drawn > 0 ? "\u{1B}[\(drawn)A" : "" }

    private func draw(_ lines: [String]) -> String {
        drawn = lines.count
        return lines.map { "\r\u{1B}[2K" + $0 + "\n" }.joined()
    }

    private func write(_ s: String) { Syscall.writeBestEffort(fd, Array(s.utf8)) }
}
