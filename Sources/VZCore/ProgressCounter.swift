import Foundation

/// A count of work done that only grows (bytes hashed, read or written): what the heartbeat
/// reports to the peer in `progress` frames, so the peer can tell a working agent from one that
/// is only alive (Docs/protocol.md §4). Thread-safe; only its growth has a meaning.
public final class ProgressCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count: UInt64 = 0

    public init() {}

    public func add(_ units: UInt64) {
        lock.lock()
        count &+= units
        lock.unlock()
    }

    public var value: UInt64 {
        lock.lock()
        defer { lock.unlock() }
        return count
    }
}
