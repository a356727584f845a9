import Foundation
import Logging
import VZCore
import VZPlatform
import VZWire

/// `vzrepl-source replicate`: one pass over every disk of a job. Emits the JSON-lines events and
/// returns the exit code the controlling server reads (Docs/events.md).
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
        events.emit("pass-started", ["mode": job.mode.rawValue, "disks": job.disks.map(\.name), "blockSize": job.blockSize,
                                     "transport": job.target.transport.rawValue, "sourceVersion": version, "passId": passId])
        logger.info("pass started", metadata: ["mode": "\(job.mode.rawValue)", "disks": "\(job.disks.map(\.name).joined(separator: ","))",
                                               "transport": "\(job.target.transport.rawValue)", "version": "\(version)"])
        var results: [DiskResult] = []
        var current: String?
        var stream: ByteStream?
        var greeted = false  // the target's banner arrived
        do {
            // Open every disk first: a missing or resized disk fails the pass before anything is sent.
            let sources = try job.disks.map { d -> SourceDisk in
                current = d.name
                let source = try SourceReaderFactory.open(d)
                for line in source.notes { logger.info("disk \(d.name): \(line)") }
                let r = source.reader
                if let want = d.capacityBytes, want != r.capacity {
                    throw VZError(.hardwareChanged, "disk '\(d.name)' (\(d.source)) has \(r.capacity) bytes, the job was configured for \(want): the VM's hardware changed. Reconfigure the target VM's disk the same way (vzrepl-target resize for a grown disk) and update capacityBytes in the job, then run the pass again")
                }
                return source
            }
            current = nil
            let transport = try TransportFactory.connect(job.target, logger: logger)
            stream = transport
            let channel = MessageChannel(stream: transport, peerName: "target", limits: TransportFactory.limits(job.target))
            if logger.logLevel <= .trace {
                let trace = FrameTrace(logger: logger)
                channel.frameObserver = { trace.observe(sent: $0, type: $1, bytes: $2) }
                frameTrace = trace
            }
            let banner = try channel.exchangeBanners(agent: SourceAgent.agentName, version: version)
            greeted = true
            // The session's rules live in the state machine; this loop only carries out its actions.
            var session = SourceSessionStateMachine()
            // A target that refuses at once (its root is missing) may be gone before hello is
            // written: its error frame then says why, not the broken pipe.
            try withTargetExplanation(channel) {
                // A version-2 target would refuse the trailing pass id: it logs without one.
                let id = channel.peerProtocolVersion >= 3 ? passId : ""
                try channel.send(.hello(job: job.job, sourceVersion: "\(SourceAgent.agentName) \(version)", passId: id), in: &session)
            }
            let answer = try withTargetExplanation(channel) { try channel.nextAction(of: &session) }
            guard case let .connected(targetVersion) = answer else { throw SourceSessionStateMachine.unexpected(answer) }
            logger.info("connected to \(targetVersion) (\(banner))", metadata: ["peerProtocol": "\(channel.peerProtocolVersion)"])
            if channel.peerProtocolVersion < 3 {
                logger.notice("the target speaks protocol \(channel.peerProtocolVersion): it does not learn the pass id, its log lines of this pass carry none")
            }
            for (d, source) in zip(job.disks, sources) {
                current = d.name
                let replicator = DiskReplicator(disk: d, reader: source.reader, job: job, channel: channel, events: events,
                                                logger: logger, workers: workers, keepTemp: keepTemp)
                replicator.startedFields = source.eventFields
                let r = try withTargetExplanation(channel) { try replicator.run(session: &session) }
                results.append(r)
                events.emit("disk-finished", r.eventFields)
                logger.info("disk committed", metadata: ["disk": "\(d.name)", "generation": "\(r.generation)", "scannedBytes": "\(r.scannedBytes)",
                                                         "changedBytes": "\(r.changedBytes)", "zeroBytes": "\(r.zeroBytes)", "sentBytes": "\(r.sentBytes)",
                                                         "seconds": "\(String(format: "%.2f", r.seconds))"])
            }
            current = nil
            try channel.send(.bye, in: &session)
            transport.closeWrite()
        } catch {
            var e = error as? VZError ?? VZError(.internal, "\(error)")
            if let s = stream { e = explainEnd(of: s, e, afterBanner: greeted) }
            let code = ExitCode(for: e.kind)
            var meta: Logger.Metadata = ["kind": "\(e.kind.rawValue)", "error": "\(e.message)", "exitCode": "\(code.rawValue)",
                                         "transient": "\(e.isTransient)"]
            if let d = current { meta["disk"] = "\(d)" }
            logger.error("pass failed", metadata: meta)
            var fields: [String: Any] = ["kind": e.kind.rawValue, "message": e.message, "transient": e.isTransient,
                                         "exitCode": Int(code.rawValue), "hint": e.kind.hint]
            if let d = current { fields["disk"] = d }
            // The event first: closing may wait for the target agent to exit (bounded).
            events.emit("error", fields)
            finish(stream)
            frameTrace?.flush()
            // The metrics file before pass-finished: a controller that saw the event finds it current.
            writeMetrics(PassMetrics(job: job.job, passId: passId, exitCode: code.rawValue, error: e.kind,
                                     seconds: Date().timeIntervalSince(started), disks: results))
            events.emit("pass-finished", ["ok": false, "exitCode": Int(code.rawValue), "disksCommitted": results.count,
                                          "seconds": Date().timeIntervalSince(started)])
            return code
        }
        finish(stream)
        frameTrace?.flush()
        logger.info("pass finished", metadata: ["disksCommitted": "\(results.count)", "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(started)))"])
        writeMetrics(PassMetrics(job: job.job, passId: passId, exitCode: 0, error: nil, seconds: Date().timeIntervalSince(started), disks: results))
        events.emit("pass-finished", ["ok": true, "exitCode": 0, "disksCommitted": results.count,
                                      "seconds": Date().timeIntervalSince(started),
                                      "sentBytes": results.reduce(0) { $0 + $1.sentBytes },
                                      "changedBytes": results.reduce(0) { $0 + $1.changedBytes }])
        return .ok
    }

    private var frameTrace: FrameTrace?

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

    /// Closes the transport (bounded: an exec child that does not exit is stopped) and logs it
    /// when the target agent had to be stopped.
    private func finish(_ stream: ByteStream?) {
        guard let stream else { return }
        stream.close()
        if let exit = stream.peerExit(waitingUpTo: 0), exit.forcedBy != nil {
            logger.warning("the target agent \(exit)")
        }
    }

    /// A lost connection often means the target agent died, or never started: when the
    /// transport knows how the agent ended, say so. Ended before its banner (not found, a
    /// missing library, bad arguments) is `targetUnavailable`, which no retry will fix.
    private func explainEnd(of stream: ByteStream, _ e: VZError, afterBanner: Bool) -> VZError {
        guard e.kind == .connectionLost || e.kind == .timeout else { return e }
        // EOF on its stdout comes an instant before its exit status: give it a moment.
        guard let exit = stream.peerExit(waitingUpTo: e.kind == .connectionLost ? 2 : 0) else { return e }
        if !afterBanner && exit.signal == nil {
            return VZError(.targetUnavailable, "the target agent \(exit.summary) before it sent its protocol banner: it is missing or cannot start\(exit.stderrNote) (\(e.message))")
        }
        if e.message.contains(exit.summary) { return e }
        return VZError(.connectionLost, "\(e.message) — the target agent \(exit)")
    }

    private func receiveOrExplain(_ channel: MessageChannel, _ what: String) throws -> Message {
        try withTargetExplanation(channel) { try channel.expect(what) }
    }

    /// When sending fails because the target hung up, the target usually said why first: read
    /// its error frame and report that instead of a bare "broken pipe".
    private func withTargetExplanation<T>(_ channel: MessageChannel, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as VZError where e.kind == .connectionLost {
            while let m = try? channel.receive() {
                if case let .error(kind, message) = m { throw SourceSessionStateMachine.peerError(kind: kind, message: message) }
            }
            throw e
        }
    }
}
