import Foundation
import VZCore
import VZWire

/// `disk-progress` for one disk (Docs/events.md): at most one event a second, with the phase,
/// what is done of what this pass will scan, the rate and the time left. Fed by the disk's
/// thread: the scan as verdicts come in, and every heartbeat of the target while the source
/// waits for it (its map, its commit), with the step a version-3 target reports.
final class DiskProgress {
    let disk: String
    let capacity: UInt64
    let events: EventEmitter
    private var scan = ProgressEstimate()
    private var step = ProgressEstimate()
    private var lastSample = -Double.infinity
    private var lastSentBytes: UInt64 = 0
    /// Candidate bytes of the pass: the capacity until the plan narrows it.
    var bytesTotal: UInt64
    var blocks: UInt64?
    private(set) var phase = "map"
    private var bytesDone: UInt64 = 0
    private var counters: [String: Any] = [:]

    init(disk: String, capacity: UInt64, events: EventEmitter) {
        self.disk = disk
        self.capacity = capacity
        self.events = events
        bytesTotal = capacity
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// The scan advanced: `bytesDone` of `bytesTotal` dealt with.
    func scanned(bytesDone done: UInt64, blocksDone: Int, scannedBytes: UInt64, sentBytes: UInt64, zeroBytes: UInt64) {
        let now = DiskProgress.now()
        bytesDone = done
        // A sample every 0.2 s is plenty for a 10 s window (and keeps it small at 10,000 blocks a second).
        if now - lastSample >= 0.2 {
            scan.record(done, at: now)
            lastSample = now
        }
        guard scan.shouldReport(at: now) else { return }
        phase = sentBytes > lastSentBytes ? "send" : "scan"
        lastSentBytes = sentBytes
        counters = ["blocksDone": blocksDone, "scannedBytes": scannedBytes, "sentBytes": sentBytes, "zeroBytes": zeroBytes]
        emit(rate: scan.bytesPerSecond, eta: scan.etaSeconds(total: bytesTotal), extra: [:])
    }

    /// A heartbeat of the target while the source waits for it in `phase` (`map`, `commit`):
    /// the target's own step, when it says, names the phase (`waiting-for-lock`, `recover`, a
    /// `map` it rebuilds by hashing the replica, with that step's bytes).
    func targetBeat(_ s: WorkStep?, waitingIn waiting: String) {
        let now = DiskProgress.now()
        var extra: [String: Any] = [:]
        phase = waiting
        var rate = 0.0
        var eta: Int?
        if let s {
            switch s.phase {
            case .waitingForLock, .recover, .map, .commit: phase = s.phase.name
            case .working, .apply: break
            }
            if s.total > 0 {
                step.record(s.done, at: now)
                extra = ["stepBytesDone": s.done, "stepBytesTotal": s.total]
                rate = step.bytesPerSecond
                eta = step.etaSeconds(total: s.total)
            }
        }
        guard scan.shouldReport(at: now) else { return }
        emit(rate: rate, eta: eta, extra: extra)
    }

    private func emit(rate: Double, eta: Int?, extra: [String: Any]) {
        var f: [String: Any] = ["disk": disk, "phase": phase, "bytesDone": bytesDone, "bytesTotal": bytesTotal,
                                "capacityBytes": capacity, "bytesPerSecond": UInt64(max(rate, 0).rounded()),
                                "etaSeconds": eta.map { $0 as Any } ?? NSNull(),
                                "percent": (Double(bytesDone) * 1000 / Double(Swift.max(bytesTotal, 1))).rounded(.down) / 10]
        if let blocks { f["blocks"] = blocks }
        f.merge(counters) { a, _ in a }
        f.merge(extra) { a, _ in a }
        events.emit("disk-progress", f)
    }
}
