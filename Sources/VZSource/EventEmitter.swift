import Foundation
import Glibc

/// The machine-readable side of `vzrepl-source`: one JSON object per line on stdout, each with
/// an "event" field and a "time" (Docs/events.md). Lines are written whole and flushed at once,
/// so a controller reading the pipe sees each event as it happens.
public final class EventEmitter: @unchecked Sendable {
    private let lock = NSLock()
    private let output: UnsafeMutablePointer<FILE>
    private let job: String

    public init(job: String, output: UnsafeMutablePointer<FILE> = stdout) {
        self.job = job
        self.output = output
    }

    public func emit(_ event: String, _ fields: [String: Any] = [:]) {
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
