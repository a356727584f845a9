import Foundation
import Glibc
import Logging
import VZCore

/// One logfmt line per event, to stderr (below warning: not while a live progress display is on
/// the terminal, `Console`) and to the agent's log file, for a field engineer reading
/// it at night (Docs/operations.md, "Reading the logs"):
///
///     ts=2026-11-25T03:12:44.123Z level=info subsystem=vzrepl.source msg="disk committed" job=web01 disk=disk0 pass=3f2a… generation=7
///
/// `ts` (UTC, RFC 3339 with milliseconds), `level`, `subsystem` (the logger's label), `msg`, then
/// `job`, `disk`, `pass` when the logger carries them, then `kind` and `hint` on error lines, then
/// the other metadata sorted by key. Never writes stdout: stdout of `vzrepl-source` carries the
/// JSON-lines events, of `vzrepl-target serve` the protocol.
///
/// Much of what is logged comes from the peer (its version string, `SSH_ORIGINAL_COMMAND`, a
/// refused name, an error frame's message): every key and value goes through `Logfmt`, in one
/// place, so no text can start a line of its own, forge a field, or drive the reader's terminal.
///
/// Every error (and critical) line carries `kind=` (a `VZError.Kind`; `internal` when the caller
/// gave none) and `hint=`, the kind's one-line "what to check next" (`ErrorHint`).
public struct LineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let sink: LogSink

    public init(label: String, sink: LogSink, level: Logger.Level) {
        self.label = label
        self.sink = sink
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    private static let formatter: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        f.timeZone = TimeZone(identifier: "UTC")
        return f
    }()
    private static let formatterLock = NSLock()

    /// The fields that come first, in this order, when present.
    static let leading = ["job", "disk", "pass", "kind", "hint"]

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        sink.write(LineLogHandler.line(level: event.level, label: label, message: "\(event.message)", metadata: all) + "\n",
                   important: event.level >= .warning)
    }

    /// The line (without its newline) for one event.
    static func line(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, date: Date = Date()) -> String {
        var all = metadata.mapValues { "\($0)" }
        if level >= .error {
            let kind = all["kind"].flatMap(VZError.Kind.init(rawValue:)) ?? .internal
            all["kind"] = kind.rawValue
            if all["hint"] == nil { all["hint"] = kind.hint }
        }
        // A logger may name its part of the agent in metadata (`subsystem: journal`).
        var subsystem = label
        if let sub = all.removeValue(forKey: "subsystem") { subsystem = sub.contains(".") ? sub : "vzrepl." + sub }
        formatterLock.lock()
        let ts = formatter.string(from: date)
        formatterLock.unlock()
        var fields: [(key: String, value: String)] = [("ts", ts), ("level", level.rawValue), ("subsystem", subsystem), ("msg", message)]
        fields += leading.compactMap { k in all[k].map { (k, $0) } }
        // A metadata key may not pose as one of the fixed fields.
        let fixed: Set<String> = ["ts", "level", "subsystem", "msg"]
        fields += all.keys.filter { !leading.contains($0) }.sorted().map { k in (fixed.contains(k) ? "meta." + k : k, all[k]!) }
        return Logfmt.line(fields)
    }

    /// The names `--log-level` accepts, most verbose first.
    public static let levelNames = Logger.Level.allCases.map(\.rawValue)

    /// The file an agent logs to: `--log-file` if given, else AGENT.log in `--log-dir`, else in
    /// $VZREPL_LOG_DIR, else in /var/log/vzrepl.
    public static func logFilePath(agent: String, file: String?, directory: String?) -> String {
        if let file { return file }
        let dir = directory ?? ProcessInfo.processInfo.environment["VZREPL_LOG_DIR"] ?? defaultDirectory
        return "\(dir)/\(agent).log"
    }

    public static let defaultDirectory = "/var/log/vzrepl"

    /// Installs the handler for every logger of the process. A log file that cannot be opened
    /// (the default directory is not writable off the appliance) leaves stderr logging only, and
    /// says so in the first line.
    public static func bootstrap(filePath: String?, level: Logger.Level, maxFileBytes: UInt64 = LogSink.defaultMaxBytes) {
        let sink = LogSink(filePath: filePath, maxBytes: maxFileBytes)
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, sink: sink, level: level) }
        if let problem = sink.openProblem {
            Logger(label: "vzrepl.log").warning("cannot open the log file; logging to stderr only",
                                                metadata: ["file": "\(filePath ?? "")", "reason": "\(problem)"])
        }
    }
}

extension Logger {
    /// An error line for `error`: `kind` its `VZError.Kind` (`internal` for any other error),
    /// `error` its message; the handler adds the kind's `hint`.
    public func failure(_ message: Logger.Message, _ error: Error, metadata extra: Logger.Metadata = [:], critical: Bool = false) {
        let e = error as? VZError ?? VZError(.internal, "\(error)")
        var meta = extra
        meta["kind"] = "\(e.kind.rawValue)"
        meta["error"] = "\(e.message)"
        log(level: critical ? .critical : .error, message, metadata: meta)
    }
}
