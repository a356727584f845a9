import Foundation
import VZCore

/// The job's `bandwidthLimit` as the channels use it: one `TokenBucket` behind a lock, with the
/// clock and the sleep, shared by every session of a job so parallel disks share the limit.
public final class BandwidthLimiter: @unchecked Sendable {
    private let lock = NSLock()
    private var bucket: TokenBucket
    public let bytesPerSecond: UInt64

    public init(bytesPerSecond: UInt64) {
        self.bytesPerSecond = bytesPerSecond
        bucket = TokenBucket(bytesPerSecond: bytesPerSecond)
    }

    public var chunkSize: Int { bucket.chunkSize }

    /// Charges `n` bytes and sleeps until they may be written.
    public func wait(for n: Int) {
        lock.lock()
        let delay = bucket.take(n, at: MessageChannel.now())
        lock.unlock()
        if delay > 0 { usleep(useconds_t(min(delay, 60) * 1_000_000)) }
    }
}
