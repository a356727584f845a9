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
            case .sourceIO, .sourceChanged: self = .sourceError
            case .connectionRefused, .connectionLost, .timeout, .dnsFailure, .hostKeyMismatch, .hostKeyUnknown,
                 .authenticationFailed, .noAcceptableCipher, .transport, .protocolViolation, .corruptFrame, .versionMismatch:
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

    public init(job: JobConfig, events: EventEmitter, logger: Logger, version: String) {
        self.job = job
        self.events = events
        self.logger = logger
        self.version = version
        self.logger[metadataKey: "job"] = "\(job.job)"
    }

    /// Runs the pass; never throws: every failure becomes an `error` event and an exit code.
    public func replicate() -> ExitCode {
        let started = Date()
        events.emit("pass-started", ["mode": job.mode.rawValue, "disks": job.disks.map(\.name), "blockSize": job.blockSize,
                                     "transport": job.target.transport.rawValue, "sourceVersion": version])
        var results: [DiskResult] = []
        var current: String?
        do {
            // Open every disk first: a missing or resized disk fails the pass before anything is sent.
            let readers = try job.disks.map { d -> BlockReader in
                current = d.name
                let r = try RawBlockReader(path: d.source, disk: d.name)
                if let want = d.capacityBytes, want != r.capacity {
                    throw VZError(.sourceChanged, "disk '\(d.name)' (\(d.source)) has \(r.capacity) bytes, the job was configured for \(want): the VM's hardware changed")
                }
                return r
            }
            current = nil
            let stream = try TransportFactory.connect(job.target, logger: logger)
            defer { stream.close() }
            let channel = MessageChannel(stream: stream, peerName: "target")
            let banner = try channel.exchangeBanners(agent: SourceAgent.agentName, version: version)
            // The session's rules live in the state machine; this loop only carries out its actions.
            var session = SourceSessionStateMachine()
            try channel.send(.hello(job: job.job, sourceVersion: "\(SourceAgent.agentName) \(version)"), in: &session)
            let answer = try withTargetExplanation(channel) { try channel.nextAction(of: &session) }
            guard case let .connected(targetVersion) = answer else { throw SourceSessionStateMachine.unexpected(answer) }
            logger.info("connected to \(targetVersion) (\(banner))")
            for (d, reader) in zip(job.disks, readers) {
                current = d.name
                let replicator = DiskReplicator(disk: d, reader: reader, job: job, channel: channel, events: events,
                                                logger: logger, workers: workers, keepTemp: keepTemp)
                let r = try withTargetExplanation(channel) { try replicator.run(session: &session) }
                results.append(r)
                events.emit("disk-finished", r.eventFields)
                logger.info("disk \(d.name) committed: generation \(r.generation), scanned \(r.scannedBytes), changed \(r.changedBytes), zero \(r.zeroBytes), sent \(r.sentBytes) bytes in \(String(format: "%.2f", r.seconds)) s")
            }
            current = nil
            try channel.send(.bye, in: &session)
            stream.closeWrite()
        } catch {
            let e = error as? VZError ?? VZError(.internal, "\(error)")
            let code = ExitCode(for: e.kind)
            logger.error("pass failed\(current.map { " on disk \($0)" } ?? ""): \(e)")
            var fields: [String: Any] = ["kind": e.kind.rawValue, "message": e.message, "transient": e.isTransient,
                                         "exitCode": Int(code.rawValue)]
            if let d = current { fields["disk"] = d }
            events.emit("error", fields)
            events.emit("pass-finished", ["ok": false, "exitCode": Int(code.rawValue), "disksCommitted": results.count,
                                          "seconds": Date().timeIntervalSince(started)])
            return code
        }
        events.emit("pass-finished", ["ok": true, "exitCode": 0, "disksCommitted": results.count,
                                      "seconds": Date().timeIntervalSince(started),
                                      "sentBytes": results.reduce(0) { $0 + $1.sentBytes },
                                      "changedBytes": results.reduce(0) { $0 + $1.changedBytes }])
        return .ok
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
