import Foundation
import Logging
import VZCore

/// `--debug`: the protocol traffic, summarised in the log at trace level. Session frames (hello,
/// openDisk, diskState, commitDisk, diskCommitted, bye, error) get a line each; the bulk ones
/// (blockData, zeroExtent, mapChunk, keepalive, progress) are counted and summarised at most once a
/// second and before each session frame, so a pass of millions of blocks logs a few lines a second.
public final class FrameTrace: @unchecked Sendable {
    private let lock = NSLock()
    private var logger: Logger
    private var counts: [String: (frames: Int, bytes: Int)] = [:]
    private var lastSummary = Date()

    public init(logger: Logger) { self.logger = logger }

    /// The logger whose metadata (job, pass) later lines carry, once the session knows them.
    public func relabel(_ logger: Logger) {
        lock.lock()
        self.logger = logger
        lock.unlock()
    }

    static let bulk: Set<Message.MessageType> = [.blockData, .zeroExtent, .mapChunk, .keepalive, .progress]

    /// For `MessageChannel.frameObserver`.
    public func observe(sent: Bool, type: UInt8, bytes: Int) {
        let t = Message.MessageType(rawValue: type)
        let name = t.map { "\($0)" } ?? "type\(type)"
        let direction = sent ? "sent" : "received"
        lock.lock()
        defer { lock.unlock() }
        if let t, FrameTrace.bulk.contains(t) {
            let key = "\(direction).\(name)"
            let c = counts[key] ?? (0, 0)
            counts[key] = (c.frames + 1, c.bytes + bytes)
            if Date().timeIntervalSince(lastSummary) >= 1 { summarise() }
        } else {
            summarise()
            logger.trace("frame", metadata: ["direction": "\(direction)", "type": "\(name)", "bytes": "\(bytes)"])
        }
    }

    /// Logs what was counted since the last summary (caller holds the lock).
    private func summarise() {
        lastSummary = Date()
        guard !counts.isEmpty else { return }
        var meta: Logger.Metadata = [:]
        for (k, c) in counts {
            meta[k] = "\(c.frames)"
            meta[k + ".bytes"] = "\(c.bytes)"
        }
        counts = [:]
        logger.trace("frames since the last summary", metadata: meta)
    }

    /// Logs what is still counted (at the end of a session).
    public func flush() {
        lock.lock()
        summarise()
        lock.unlock()
    }
}
