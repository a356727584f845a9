import Foundation
import Glibc
import Logging

/// One log line per event, to stderr and to a log file, for a field engineer reading it at night:
///
///     2026-11-25T03:12:44.123Z info  vzrepl.source job=web01 disk=disk0 pass=3f2a: seeded 12 GiB
///
/// Metadata (job, disk, pass, ...) is printed as key=value in a stable order. Never writes stdout:
/// stdout of `vzrepl-source` carries the JSON-lines events, of `vzrepl-target` the protocol.
///
/// Much of what is logged comes from the peer (its version string, `SSH_ORIGINAL_COMMAND`, a
/// refused name, an error frame's message): the message and every metadata key and value are
/// escaped here, in one place (`escaped`), so no text can start a line of its own or drive the
/// terminal of whoever reads the log.
public struct LineLogHandler: LogHandler {
    public final class Sink: @unchecked Sendable {
        private let lock = NSLock()
        private let file: UnsafeMutablePointer<FILE>?
        public let filePath: String?

        public init(filePath: String?) {
            self.filePath = filePath
            if let p = filePath {
                let dir = (p as NSString).deletingLastPathComponent
                if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
                file = fopen(p, "ae")  // close-on-exec: a spawned target agent must not inherit our log
                if file == nil { fputs("warning: cannot open log file \(p): \(String(cString: strerror(errno))); logging to stderr only\n", stderr) }
            } else {
                file = nil
            }
        }

        func write(_ line: String) {
            lock.lock()
            defer { lock.unlock() }
            fputs(line, stderr)
            if let f = file { fputs(line, f); fflush(f) }
        }
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let sink: Sink

    public init(label: String, sink: Sink, level: Logger.Level) {
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
        return f
    }()
    private static let formatterLock = NSLock()

    public func log(event: LogEvent) {
        emit(level: event.level, message: event.message, metadata: event.metadata)
    }

    private func emit(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?) {
        var all = metadata
        if let extra { all.merge(extra) { $1 } }
        let order = ["job", "disk", "pass"]
        func field(_ k: String, _ v: Logger.MetadataValue) -> String { "\(LineLogHandler.escaped(k))=\(LineLogHandler.escaped("\(v)"))" }
        var fields = order.compactMap { k in all[k].map { field(k, $0) } }
        fields += all.keys.filter { !order.contains($0) }.sorted().map { field($0, all[$0]!) }
        LineLogHandler.formatterLock.lock()
        let time = LineLogHandler.formatter.string(from: Date())
        LineLogHandler.formatterLock.unlock()
        let lvl = level.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
        let meta = fields.isEmpty ? "" : " " + fields.joined(separator: " ")
        sink.write("\(time) \(lvl)\(label)\(meta): \(LineLogHandler.escaped("\(message)"))\n")
    }

    /// `text` with every character that could end a line or control a terminal made visible:
    /// `\n`, `\r`, `\t`, `\x1b` (other C0 controls and DEL), `\u{85}` (C1 controls), `\u{2028}` and
    /// `\u{2029}` (the Unicode line and paragraph separators). Everything else is kept as is.
    public static func escaped(_ text: String) -> String {
        func needsEscape(_ u: Unicode.Scalar) -> Bool {
            u.value < 0x20 || (0x7F...0x9F).contains(u.value) || u.value == 0x2028 || u.value == 0x2029
        }
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = String.UnicodeScalarView()
        for u in text.unicodeScalars {
            guard needsEscape(u) else { out.append(u); continue }
            let visible: String
            switch u {
            case "\n": visible = "\\n"
            case "\r": visible = "\\r"
            case "\t": visible = "\\t"
            default:
                let hex = String(u.value, radix: 16)
                visible = u.value <= 0x7F ? "\\x" + (hex.count < 2 ? "0" : "") + hex : "\\u{\(hex)}"
            }
            out.append(contentsOf: visible.unicodeScalars)
        }
        return String(out)
    }

    /// The names `--log-level` accepts, most verbose first.
    public static let levelNames = Logger.Level.allCases.map(\.rawValue)

    /// Installs the handler for every logger of an agent; the log file defaults to
    /// $VZREPL_LOG_DIR/AGENT.log, else /var/log/vzrepl/AGENT.log.
    public static func bootstrap(agent: String, filePath: String?, levelName: String) {
        let dir = ProcessInfo.processInfo.environment["VZREPL_LOG_DIR"] ?? "/var/log/vzrepl"
        bootstrap(filePath: filePath ?? "\(dir)/\(agent).log", level: Logger.Level(rawValue: levelName) ?? .info)
    }

    /// Installs the handler for every logger of the process.
    public static func bootstrap(filePath: String?, level: Logger.Level) {
        let sink = Sink(filePath: filePath)
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, sink: sink, level: level) }
    }
}
