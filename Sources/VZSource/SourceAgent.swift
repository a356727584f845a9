import Foundation
import Logging
import VZCore
import VZPlatform
import VZWire

/// `vzrepl-source replicate`: one pass over every disk of a job. Emits the JSON-lines events and
/// returns the exit code the controlling server reads (Docs/events.md). The disks replicate
/// `parallelDisks` at a time, each committing on its own; one that fails rolls back only itself.
public final class SourceAgent {
    public static let agentName = "vzrepl-source"

    /// Exit codes, one per class of failure, documented in Docs/events.md.
    public enum ExitCode: Int32 {
        case ok = 0, internalError = 1, badJobFile = 2, sourceError = 3, transportError = 4, targetRefused = 5

        public init(for kind: VZError.Kind) {
            switch kind {
            case .badJobFile, .badArgument: self = .badJobFile
            case .sourceIO, .sourceChanged, .sourceUnsupported, .hardwareChanged: self = .sourceError
            case .connectionRefused, .connectionLost, .timeout, .dnsFailure, .hostKeyMismatch, .hostKeyUnknown,
                 .authenticationFailed, .noAcceptableCipher, .transport, .protocolViolation, .corruptFrame, .versionMismatch,
                 .targetUnavailable:
                self = .transportError
            case .targetRefused, .corruptMap, .corruptJournal, .replicaIO, .noSpace, .pathOutsideRoot, .locked, .hashMismatch:
                self = .targetRefused
            case .internal: self = .internalError
            }
        }
    }

    let job: JobConfig
    let events: EventEmitter
    var logger: Logger
    let version: String
    public var workers = 2
    /// `--keep-temp`: leave the working files (active-block filters) in the workDir.
    public var keepTemp = false
    /// `--metrics-file`: where the pass summary goes in Prometheus text format (`PassMetrics`).
    public var metricsPath: String?
    /// The id of this pass (a UUID): `passId` of `pass-started`, `pass=` of every log line of both
    /// agents (the target learns it from `hello`, protocol version 3).
    public let passId: String

    public init(job: JobConfig, events: EventEmitter, logger: Logger, version: String, passId: String = PassIdentifier.make()) {
        self.job = job
        self.events = events
        self.logger = logger
        self.version = version
        self.passId = passId
        self.logger[metadataKey: "job"] = "\(job.job)"
        self.logger[metadataKey: "pass"] = "\(passId)"
    }

    /// Runs the pass; never throws: every failure becomes an `error` event and an exit code.
    public func replicate() -> ExitCode {
        let started = Date()
        let outcomes = DiskOutcomes(disks: job.disks.map(\.name))
        let passStarted = PassStartedEvent(job: job, version: version, events: events, extra: ["passId": passId])
        logger.info("pass started", metadata: ["mode": "\(job.mode.rawValue)", "disks": "\(job.disks.map(\.name).joined(separator: ","))",
                                               "transport": "\(job.target.transport.rawValue)", "version": "\(version)",
                                               "parallelDisks": "\(job.parallelDisks)"])
        let sources: [SourceDisk]
        do {
            sources = try openSources(outcomes: outcomes, passStarted: passStarted)
        } catch {
            return finish(outcomes, passStarted: passStarted, started: started)
        }
        let limiter = job.bandwidthLimit.map { BandwidthLimiter(bytesPerSecond: $0) }
        let queue = DiskQueue(count: job.disks.count)
        let sessions = min(job.parallelDisks, job.disks.count)
        let done = DispatchGroup()
        for _ in 0..<sessions {
            done.enter()
            let body = { [self] in
                runSession(sources: sources, queue: queue, limiter: limiter, outcomes: outcomes, passStarted: passStarted)
                done.leave()
            }
            // Each session replicates its disks in turn; the disks' own pipelines have their threads.
            if sessions == 1 {
                body()
            } else {
                let t = Thread { body() }
                t.stackSize = 8 << 20
                t.start()
            }
        }
        done.wait()
        return finish(outcomes, passStarted: passStarted, started: started)
    }

    /// `vzrepl-source plan`: per disk, what a pass would read and send (`disk-plan`), through one
    /// session whose disks are all opened read-only: the target changes nothing. Needs a target
    /// of protocol version 3 (older ones have no read-only mode: `versionMismatch`, exit 4).
    public func plan() -> ExitCode {
        let started = Date()
        let outcomes = DiskOutcomes(disks: job.disks.map(\.name))
        let planStarted = PassStartedEvent(job: job, version: version, events: events, name: "plan-started", extra: ["passId": passId])
        guard let sources = try? openSources(outcomes: outcomes, passStarted: planStarted) else {
            return finish(outcomes, passStarted: planStarted, started: started, event: "plan-finished")
        }
        let session: TargetSession
        do {
            session = try TargetSession.open(job: job, version: version, passId: passId, limiter: nil, diskSet: nil, logger: logger)
        } catch {
            let e = error as? VZError ?? VZError(.internal, "\(error)")
            outcomes.fail(0, e)
            reportError(e, disk: nil, passStarted: planStarted)
            return finish(outcomes, passStarted: planStarted, started: started, event: "plan-finished")
        }
        guard session.targetProtocolVersion >= 3 else {
            let e = VZError(.versionMismatch, "the target agent (\(session.targetVersion)) speaks protocol version \(session.targetProtocolVersion), which has no read-only mode: a plan needs version 3 or later; upgrade the target VA (a pass still works)")
            outcomes.fail(0, e)
            reportError(e, disk: nil, passStarted: planStarted)
            session.end(logger: logger)
            return finish(outcomes, passStarted: planStarted, started: started, event: "plan-finished")
        }
        planStarted.emit(target: session)
        for (i, d) in job.disks.enumerated() {
            let replicator = DiskReplicator(disk: d, reader: sources[i].reader, job: job, channel: session.channel, events: events,
                                            logger: logger, workers: workers, keepTemp: keepTemp)
            replicator.startedFields = sources[i].eventFields
            do {
                let fields = try session.run { try replicator.plan(session: &$0.machine) }
                outcomes.planned(i)
                events.emit("disk-plan", fields)
            } catch {
                let e = error as? VZError ?? VZError(.internal, "\(error)")
                outcomes.fail(i, e)
                reportError(e, disk: d.name, passStarted: planStarted)
                session.abandon(logger: logger)
                return finish(outcomes, passStarted: planStarted, started: started, event: "plan-finished")
            }
        }
        session.end(logger: logger)
        return finish(outcomes, passStarted: planStarted, started: started, event: "plan-finished")
    }

    /// Opens every disk first: a missing or resized disk fails the pass before anything is sent.
    private func openSources(outcomes: DiskOutcomes, passStarted: PassStartedEvent) throws -> [SourceDisk] {
        var sources: [SourceDisk] = []
        for (i, d) in job.disks.enumerated() {
            do {
                let source = try SourceReaderFactory.open(d, datastores: job.datastores)
                for line in source.notes { logger.info("disk \(d.name): \(line)") }
                let r = source.reader
                if let want = d.capacityBytes, want != r.capacity {
                    throw VZError(.hardwareChanged, "disk '\(d.name)' (\(d.source)) has \(r.capacity) bytes, the job was configured for \(want): the VM's hardware changed. Reconfigure the target VM's disk the same way (vzrepl-target resize for a grown disk) and update capacityBytes in the job, then run the pass again")
                }
                sources.append(source)
            } catch {
                let e = error as? VZError ?? VZError(.internal, "\(error)")
                outcomes.fail(i, e)
                reportError(e, disk: d.name, passStarted: passStarted)
                throw e
            }
        }
        return sources
    }

    /// One session's share of the job: disks from the queue, one after the other, until the
    /// queue is empty or some disk failed (then no new disk starts; the others are `skipped`).
    private func runSession(sources: [SourceDisk], queue: DiskQueue, limiter: BandwidthLimiter?,
                            outcomes: DiskOutcomes, passStarted: PassStartedEvent) {
        var session: TargetSession?
        while let i = queue.next() {
            let d = job.disks[i]
            if session == nil {
                do {
                    let diskSet = zip(job.disks, sources).map { Message.DiskSetEntry(name: $0.name, capacity: $1.reader.capacity) }
                    let s = try TargetSession.open(job: job, version: version, passId: passId, limiter: limiter, diskSet: diskSet, logger: logger)
                    passStarted.emit(target: s)
                    session = s
                } catch {
                    // Not the disk's fault: the error has no `disk`, the disk counts as failed.
                    let e = error as? VZError ?? VZError(.internal, "\(error)")
                    outcomes.fail(i, e)
                    queue.stop()
                    reportError(e, disk: nil, passStarted: passStarted)
                    return
                }
            }
            guard let s = session else { return }
            let replicator = DiskReplicator(disk: d, reader: sources[i].reader, job: job, channel: s.channel, events: events,
                                            logger: logger, workers: workers, keepTemp: keepTemp)
            replicator.startedFields = sources[i].eventFields
            do {
                let r = try s.run { try replicator.run(session: &$0.machine) }
                outcomes.commit(i, r)
                events.emit("disk-finished", r.eventFields)
                logger.info("disk committed", metadata: ["disk": "\(d.name)", "generation": "\(r.generation)", "scannedBytes": "\(r.scannedBytes)",
                                                         "changedBytes": "\(r.changedBytes)", "zeroBytes": "\(r.zeroBytes)", "sentBytes": "\(r.sentBytes)",
                                                         "seconds": "\(String(format: "%.2f", r.seconds))"])
            } catch {
                let e = error as? VZError ?? VZError(.internal, "\(error)")
                outcomes.fail(i, e)
                queue.stop()
                // The event first: closing may wait for the target agent to exit (bounded).
                reportError(e, disk: d.name, passStarted: passStarted)
                s.abandon(logger: logger)
                return
            }
        }
        session?.end(logger: logger)
    }

    private func reportError(_ e: VZError, disk: String?, passStarted: PassStartedEvent) {
        let code = ExitCode(for: e.kind)
        var meta: Logger.Metadata = ["kind": "\(e.kind.rawValue)", "error": "\(e.message)", "exitCode": "\(code.rawValue)",
                                     "transient": "\(e.isTransient)"]
        if let disk { meta["disk"] = "\(disk)" }
        logger.error("pass failed", metadata: meta)
        var fields: [String: Any] = ["kind": e.kind.rawValue, "message": e.message, "transient": e.isTransient,
                                     "exitCode": Int(code.rawValue), "hint": e.kind.hint]
        if let disk { fields["disk"] = disk }
        passStarted.emit(target: nil)
        events.emit("error", fields)
    }

    /// `pass-finished`, with every disk's outcome. The exit code is that of the first disk (in
    /// the job's order) that failed, 0 when every disk committed (Docs/events.md).
    private func finish(_ outcomes: DiskOutcomes, passStarted: PassStartedEvent, started: Date,
                        event: String = "pass-finished") -> ExitCode {
        passStarted.emit(target: nil)
        let all = outcomes.all
        let firstFailure = all.compactMap { o -> VZError? in
            if case let .failed(e) = o.state { return e }
            return nil
        }.first
        let code = firstFailure.map { ExitCode(for: $0.kind) } ?? .ok
        let committed = all.compactMap { o -> DiskResult? in
            if case let .committed(r) = o.state { return r }
            return nil
        }
        let seconds = Date().timeIntervalSince(started)
        logger.info("\(event == "pass-finished" ? "pass" : "plan") finished", metadata: ["disksCommitted": "\(committed.count)", "exitCode": "\(code.rawValue)",
                                                                                   "seconds": "\(String(format: "%.2f", seconds))"])
        if event == "pass-finished" {
            // The metrics file before pass-finished: a controller that saw the event finds it current.
            writeMetrics(PassMetrics(job: job.job, passId: passId, exitCode: code.rawValue, error: firstFailure?.kind,
                                     seconds: seconds, disks: committed))
        }
        var fields: [String: Any] = ["ok": code == .ok, "exitCode": Int(code.rawValue), "seconds": Date().timeIntervalSince(started),
                                     "disks": all.map(\.eventFields)]
        if event == "pass-finished" {
            fields["disksCommitted"] = committed.count
            fields["sentBytes"] = committed.reduce(0) { $0 + $1.sentBytes }
            fields["changedBytes"] = committed.reduce(0) { $0 + $1.changedBytes }
        }
        events.emit(event, fields)
        return code
    }

    /// `--metrics-file`: a failure to write it is logged; it does not change the pass's outcome.
    private func writeMetrics(_ metrics: PassMetrics) {
        guard let path = metricsPath else { return }
        do {
            try metrics.write(to: path)
        } catch {
            let e = error as? VZError ?? VZError(.internal, "\(error)")
            logger.failure("cannot write the metrics file", e, metadata: ["file": "\(path)"])
        }
    }
}
