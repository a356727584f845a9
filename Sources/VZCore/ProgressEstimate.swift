/// Rate and time left for a long step, as a pure value fed samples (time in seconds, bytes done
/// so far): the `bytesPerSecond` and `etaSeconds` of `disk-progress` (Docs/events.md). The rate is
/// measured over the last `window` seconds, so a pass that slows down (a busy link, a disk with
/// its changes at the end) shows it within a few seconds, and one fast burst does not promise an
/// ETA the rest cannot keep. `shouldReport` spaces the events at least `interval` apart.
public struct ProgressEstimate: Equatable, Sendable {
    public struct Sample: Equatable, Sendable {
        public var time: Double
        public var bytes: UInt64
    }

    public let window: Double
    public let interval: Double
    private var samples: [Sample] = []
    private var lastReport: Double?

    public init(window: Double = 10, interval: Double = 1) {
        self.window = window
        self.interval = interval
    }

    /// Records that `bytes` (a count that only grows; a smaller one restarts the estimate, as for
    /// a new phase) were done at `time`.
    public mutating func record(_ bytes: UInt64, at time: Double) {
        if let lastSample = samples.last, bytes < lastSample.bytes || time < lastSample.time { samples.removeAll() }
        samples.append(Sample(time: time, bytes: bytes))
        // Keep one sample older than the window, so the rate spans the whole of it.
        while samples.count > 2, samples[1].time <= time - window { samples.removeFirst() }
    }

    /// Bytes per second over the window; 0 until two samples are at least 0.1 s apart.
    public var bytesPerSecond: Double {
        guard let first = samples.first, let last = samples.last, last.time - first.time >= 0.1 else { return 0 }
        return Double(last.bytes - first.bytes) / (last.time - first.time)
    }

    /// Seconds until `total` at the current rate (rounded up); 0 when done; nil while the rate is
    /// unknown or zero.
    public func etaSeconds(total: UInt64) -> Int? {
        guard let last = samples.last else { return nil }
        if last.bytes >= total { return 0 }
        let rate = bytesPerSecond
        guard rate > 0 else { return nil }
        let eta = (Double(total - last.bytes) / rate).rounded(.up)
        return eta < Double(Int32.max) ? Int(eta) : nil
    }

    /// True (and the report is counted) when `interval` passed since the last report, or for
    /// the first one.
    public mutating func shouldReport(at time: Double) -> Bool {
        if let last = lastReport, time - last < interval { return false }
        lastReport = time
        return true
    }
}
