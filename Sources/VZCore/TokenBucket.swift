/// A byte-rate limiter as a pure value (time is passed in, in seconds): `bandwidthLimit` of the
/// job file (Docs/job-file.md). Ask it before writing `n` bytes; it answers how long to wait
/// first. It starts empty and holds at most `burst` bytes of credit, so over any window of `T`
/// seconds at most `rate × T + burst + n` bytes pass (one request may overdraw: the bytes a
/// request was granted go on the account even when they make it negative, and later requests
/// wait for the debt). Callers keep `n` small (`chunkSize`) so the bound holds tightly:
/// with the defaults, within 10 % over any 10 s window.
public struct TokenBucket: Equatable, Sendable {
    /// Bytes per second.
    public let rate: Double
    /// The most credit that accumulates while the sender is idle.
    public let burst: Double
    private var tokens: Double
    private var last: Double?

    /// `burstSeconds` of credit at most: 0.25 s, so an idle period never buys a flood.
    public init(bytesPerSecond: UInt64, burstSeconds: Double = 0.25) {
        rate = Double(max(bytesPerSecond, 1))
        burst = rate * burstSeconds
        tokens = 0
    }

    /// The largest write to make at once: 1/32 s of the rate (at least 1 KiB, at most 256 KiB),
    /// so a block frame is paced evenly rather than sent in one burst and paid for afterwards.
    public var chunkSize: Int { Int(min(max(rate / 32, 1024), 256 * 1024)) }

    /// Takes `n` bytes at time `now` and returns the seconds to wait before writing them (0 when
    /// there is credit). The bytes are charged at once: call it once per write.
    public mutating func take(_ n: Int, at now: Double) -> Double {
        if let last, now > last {
            tokens = min(burst, tokens + (now - last) * rate)
        }
        if last == nil || now > last! { last = now }
        tokens -= Double(n)
        return tokens >= 0 ? 0 : -tokens / rate
    }
}
