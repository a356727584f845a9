import Foundation
import Glibc

/// The machine-readable side of `vzrepl-source`: one JSON object per line on stdout, each with
/// an "event" field and a "time" (Docs/events.md). Lines are written whole and flushed at once,
/// so a controller reading the pipe sees each event as it happens. Every event of a pass goes
/// through one emitter, whatever thread (parallel disks) emits it: lines never interleave.
/// With a `display` (a person at a terminal), events go to it instead of stdout.
public final class EventEmitter: @unchecked Sendable {
    private let lock = NSLock()
    private let output: UnsafeMutablePointer<FILE>
    private let job: String
    private let display: ProgressDisplay?

    public init(job: String, output: UnsafeMutablePointer<FILE> = stdout, display: ProgressDisplay? = nil) {
        self.job = job
        self.output = output
        self.display = display
    }

    public func emit(_ event: String, _ fields: [String: Any] = [:]) {
        if let display {
            lock.lock()
            defer { lock.unlock() }
            display.show(event, fields)
            return
        }
        var object = fields
        object["event"] = event
        object["job"] = job
        object["time"] = EventEmitter.timestamp()
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        lock.lock()
        defer { lock.unlock() }
        data.withUnsafeBytes { _ = fwrite($0.baseAddress, 1, $0.count, output) }
        fputc(0x0A, output)
        fflush(output)
    }

    private static func timestamp() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }
}
