import Foundation
import Logging
import VZCore
import VZPlatform
import VZWire

/// One protocol session with the target agent: the transport, the banners, hello and helloAck.
/// A job's disks go through one session each at a time; with `parallelDisks` several sessions
/// run side by side, each with its own target agent process (the target locks per disk).
final class TargetSession {
    let stream: ByteStream
    let channel: MessageChannel
    var machine = SourceSessionStateMachine()
    /// The target agent's version (its helloAck) and protocol version (its banner).
    let targetVersion: String
    var targetProtocolVersion: Int { channel.peerProtocolVersion }
    /// `--debug`'s frame summary, flushed when the session ends.
    private var trace: FrameTrace?

    private init(stream: ByteStream, channel: MessageChannel, targetVersion: String) {
        self.stream = stream
        self.channel = channel
        self.targetVersion = targetVersion
    }

    /// Connects and greets the target. A failure is explained (how the target agent ended) and
    /// the transport closed before it is thrown.
    /// `diskSet`: the job's whole disk set, sent to a version-3 target so it can refuse a changed
    /// one before anything is written (every session of the job sends it); nil for a read-only
    /// session (`plan`), which changes nothing the set guards.
    /// `passId` goes to a version-3 target in `hello` (an older one would refuse the field).
    static func open(job: JobConfig, version: String, passId: String, limiter: BandwidthLimiter?, diskSet: [Message.DiskSetEntry]?,
                     logger: Logger) throws -> TargetSession {
        let transport = try TransportFactory.connect(job.target, logger: logger)
        let channel = MessageChannel(stream: transport, peerName: "target", limits: TransportFactory.limits(job.target))
        channel.limiter = limiter
        // `--debug`: a summary of this session's frames.
        var trace: FrameTrace?
        if logger.logLevel <= .trace {
            let t = FrameTrace(logger: logger)
            channel.frameObserver = { t.observe(sent: $0, type: $1, bytes: $2) }
            trace = t
        }
        var greeted = false  // the target's banner arrived
        do {
            let banner = try channel.exchangeBanners(agent: SourceAgent.agentName, version: version)
            greeted = true
            var machine = SourceSessionStateMachine(peerProtocolVersion: channel.peerProtocolVersion)
            // A target that refuses at once (its root is missing) may be gone before hello is
            // written: its error frame then says why, not the broken pipe.
            try withTargetExplanation(channel) {
                // A version-2 target would refuse the trailing pass id: it logs without one.
                let id = channel.peerProtocolVersion >= 3 ? passId : ""
                try channel.send(.hello(job: job.job, sourceVersion: "\(SourceAgent.agentName) \(version)", passId: id), in: &machine)
            }
            let answer = try withTargetExplanation(channel) { try channel.nextAction(of: &machine) }
            guard case let .connected(targetVersion) = answer else { throw SourceSessionStateMachine.unexpected(answer) }
            logger.info("connected to \(targetVersion) (\(banner))", metadata: ["peerProtocol": "\(channel.peerProtocolVersion)"])
            if channel.peerProtocolVersion < 3 {
                logger.notice("the target speaks protocol \(channel.peerProtocolVersion): it does not learn the pass id, its log lines of this pass carry none")
            }
            if let diskSet {
                if machine.speaksDiskSets {
                    try withTargetExplanation(channel) { try channel.send(.diskSet(diskSet), in: &machine) }
                } else {
                    logger.notice("the target speaks protocol \(channel.peerProtocolVersion): it is not sent the job's disk set (an added or removed disk is not detected) nor the source chains")
                }
            }
            let s = TargetSession(stream: transport, channel: channel, targetVersion: targetVersion)
            s.machine = machine
            s.trace = trace
            return s
        } catch {
            let e = explainEnd(of: transport, error as? VZError ?? VZError(.internal, "\(error)"), afterBanner: greeted)
            trace?.flush()
            finish(transport, logger: logger)
            throw e
        }
    }

    /// Runs `body` on this session; a failure is explained like `open`'s.
    func run<T>(_ body: (TargetSession) throws -> T) throws -> T {
        do {
            return try TargetSession.withTargetExplanation(channel) { try body(self) }
        } catch {
            throw TargetSession.explainEnd(of: stream, error as? VZError ?? VZError(.internal, "\(error)"), afterBanner: true)
        }
    }

    /// Ends the session normally (bye), then closes it.
    func end(logger: Logger) {
        do {
            try channel.send(.bye, in: &machine)
            stream.closeWrite()
        } catch {
            logger.warning("could not end the session with the target cleanly: \(error)")
        }
        trace?.flush()
        TargetSession.finish(stream, logger: logger)
    }

    /// Closes after a failure.
    func abandon(logger: Logger) {
        trace?.flush()
        TargetSession.finish(stream, logger: logger)
    }

    /// Closes the transport (bounded: an exec child that does not exit is stopped) and logs it
    /// when the target agent had to be stopped.
    private static func finish(_ stream: ByteStream, logger: Logger) {
        stream.close()
        if let exit = stream.peerExit(waitingUpTo: 0), exit.forcedBy != nil {
            logger.warning("the target agent \(exit)")
        }
    }

    /// A lost connection often means the target agent died, or never started: when the
    /// transport knows how the agent ended, say so. Ended before its banner (not found, a
    /// missing library, bad arguments) is `targetUnavailable`, which no retry will fix.
    private static func explainEnd(of stream: ByteStream, _ e: VZError, afterBanner: Bool) -> VZError {
        guard e.kind == .connectionLost || e.kind == .timeout else { return e }
        // EOF on its stdout comes an instant before its exit status: give it a moment.
        guard let exit = stream.peerExit(waitingUpTo: e.kind == .connectionLost ? 2 : 0) else { return e }
        if !afterBanner && exit.signal == nil {
            return VZError(.targetUnavailable, "the target agent \(exit.summary) before it sent its protocol banner: it is missing or cannot start\(exit.stderrNote) (\(e.message))")
        }
        if e.message.contains(exit.summary) { return e }
        return VZError(.connectionLost, "\(e.message) — the target agent \(exit)")
    }

    /// When sending fails because the target hung up, the target usually said why first: read
    /// its error frame and report that instead of a bare "broken pipe".
    private static func withTargetExplanation<T>(_ channel: MessageChannel, _ body: () throws -> T) throws -> T {
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
