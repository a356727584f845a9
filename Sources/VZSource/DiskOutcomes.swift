import Foundation
import VZCore

/// What became of each disk of a pass, for `pass-finished`'s `disks` (Docs/events.md):
/// `committed`, `failed` (with the error's kind and message) or `skipped` (not started because
/// another disk failed first). Sessions running side by side record into it.
final class DiskOutcomes: @unchecked Sendable {
    enum State {
        case committed(DiskResult)
        /// `plan`: the disk's plan was made.
        case planned
        case failed(VZError)
        case skipped
    }

    struct Outcome {
        var disk: String
        var state: State

        var eventFields: [String: Any] {
            switch state {
            case let .committed(r):
                return ["disk": disk, "outcome": "committed", "generation": r.generation]
            case let .failed(e):
                return ["disk": disk, "outcome": "failed", "kind": e.kind.rawValue, "message": e.message,
                        "exitCode": Int(SourceAgent.ExitCode(for: e.kind).rawValue)]
            case .planned:
                return ["disk": disk, "outcome": "planned"]
            case .skipped:
                return ["disk": disk, "outcome": "skipped"]
            }
        }
    }

    private let lock = NSLock()
    private var outcomes: [Outcome]

    init(disks: [String]) { outcomes = disks.map { Outcome(disk: $0, state: .skipped) } }

    func commit(_ i: Int, _ r: DiskResult) { set(i, .committed(r)) }
    func fail(_ i: Int, _ e: VZError) { set(i, .failed(e)) }
    func planned(_ i: Int) { set(i, .planned) }

    private func set(_ i: Int, _ s: State) {
        lock.lock()
        outcomes[i].state = s
        lock.unlock()
    }

    /// In the job's order.
    var all: [Outcome] {
        lock.lock()
        defer { lock.unlock() }
        return outcomes
    }
}

/// The disks of a job handed out in order to the sessions that replicate them; once a disk has
/// failed, no new one starts.
final class DiskQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var nextIndex = 0
    private var stopped = false
    let count: Int

    init(count: Int) { self.count = count }

    func next() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped, nextIndex < count else { return nil }
        nextIndex += 1
        return nextIndex - 1
    }

    func stop() {
        lock.lock()
        stopped = true
        lock.unlock()
    }
}

/// `pass-started`, emitted once: as soon as the first session knows the target agent's version
/// and protocol version, or, when the pass fails before that, just before its first `error`.
final class PassStartedEvent: @unchecked Sendable {
    private let lock = NSLock()
    private var emitted = false
    private let fields: [String: Any]
    private let events: EventEmitter
    private let name: String

    init(job: JobConfig, version: String, events: EventEmitter, name: String = "pass-started", extra: [String: Any] = [:]) {
        self.name = name
        var f: [String: Any] = ["mode": job.mode.rawValue, "disks": job.disks.map(\.name), "blockSize": job.blockSize,
                                "transport": job.target.transport.rawValue, "sourceVersion": version,
                                "parallelDisks": job.parallelDisks]
        if let limit = job.bandwidthLimit { f["bandwidthLimit"] = limit }
        fields = f.merging(extra) { _, b in b }
        self.events = events
    }

    func emit(target: TargetSession?) {
        lock.lock()
        defer { lock.unlock() }
        guard !emitted else { return }
        emitted = true
        var f = fields
        if let target {
            f["targetVersion"] = target.targetVersion
            f["targetProtocolVersion"] = target.targetProtocolVersion
        }
        events.emit(name, f)
    }
}
