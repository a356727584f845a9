import Foundation
import Logging
import VZCore
import VZPlatform
import VZWire

/// `vzrepl-target serve`: one protocol session over a byte stream (stdin/stdout when sshd runs
/// it as the forced command). Any error is sent to the source as an `error` frame, logged, and
/// thrown to the executable, which exits non-zero.
public final class TargetServer {
    public struct Options {
        public var rootPath: String
        public var idleTimeout: Double
        public var workers: Int
        public var journaled: Bool
        public var executablePath: String
        public var lockWait = 5.0
        /// The most memory one disk's block map may take; a disk whose map would need more is
        /// refused before anything is created (Docs/operations.md).
        public var mapMemoryLimit = Options.defaultMapMemoryLimit
        public static let defaultMapMemoryLimit: UInt64 = 512 << 20
        /// The receive deadlines the target holds the source to (Docs/protocol.md §4): a frame
        /// must be complete this long after its first byte; nothing but keepalives for this long
        /// is a stuck source.
        public var frameTimeout = MessageChannel.Limits.defaultFrameTimeout
        public var progressTimeout = MessageChannel.Limits.defaultProgressTimeout
        public init(rootPath: String, idleTimeout: Double = 60, workers: Int = 2, journaled: Bool = true,
                    executablePath: String = CommandLine.arguments.first ?? "vzrepl-target") {
            self.rootPath = rootPath; self.idleTimeout = idleTimeout; self.workers = workers
            self.journaled = journaled; self.executablePath = executablePath
        }
    }

    public static let agentName = "vzrepl-target"
    let options: Options
    var logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    public func serve(stream: ByteStream, version: String) throws {
        let channel = MessageChannel(stream: stream, peerName: "source", limits: .init(frameTimeout: options.frameTimeout,
                                                                                    progressTimeout: options.progressTimeout))
        var trace: FrameTrace?
        if logger.logLevel <= .trace {
            let t = FrameTrace(logger: logger)
            channel.frameObserver = { t.observe(sent: $0, type: $1, bytes: $2) }
            trace = t
        }
        defer { trace?.flush() }
        do {
            try session(channel: channel, version: version, trace: trace)
        } catch let e as VZError {
            logger.failure("session failed", e)
            // Tell the source why, if the stream still works; its own report quotes this.
            try? channel.send(.error(kind: e.kind.rawValue, message: e.message))
            stream.closeWrite()
            throw e
        }
        stream.closeWrite()
    }

    /// The session's rules live in `TargetSessionStateMachine`; this loop feeds it what arrives
    /// and carries out its actions.
    private func session(channel: MessageChannel, version: String, trace: FrameTrace?) throws {
        let banner = try channel.exchangeBanners(agent: TargetServer.agentName, version: version)
        let root = try Directory.openRoot(options.rootPath)
        var session = TargetSessionStateMachine(peerProtocolVersion: channel.peerProtocolVersion)
        let first = try channel.nextAction(of: &session)
        guard case let .greet(job, sourceVersion, passId) = first else { throw TargetSessionStateMachine.unexpected(first) }
        if !passId.isEmpty { logger[metadataKey: "pass"] = "\(passId)" }
        if let why = NameRules.problem(with: job) { throw VZError(.pathOutsideRoot, "job name \(why)") }
        logger[metadataKey: "job"] = "\(job)"
        trace?.relabel(logger)
        logger.info("session started", metadata: ["peer": "\(sourceVersion)", "banner": "\(banner)", "root": "\(options.rootPath)",
                                                  "peerProtocol": "\(channel.peerProtocolVersion)"])
        if !session.speaksDiskSets {
            logger.notice("the source speaks protocol \(channel.peerProtocolVersion): it sends no disk set, so an added or removed disk is not detected, and no source chain is recorded in .vzcid")
        }
        try channel.send(.helloAck(targetVersion: version), in: &session)
        // Made at the first disk to be written: a read-only session (`plan`) creates nothing.
        var jobDirectory: Directory?
        var diskOptions = DiskSession.Options()
        diskOptions.workers = options.workers
        diskOptions.journaled = options.journaled
        diskOptions.executablePath = options.executablePath
        diskOptions.rootPath = options.rootPath
        diskOptions.lockWait = options.lockWait
        diskOptions.mapMemoryLimit = options.mapMemoryLimit
        diskOptions.passId = PassIdentifier.bytes(of: passId)
        while true {
            let action = try channel.nextAction(of: &session)
            switch action {
            case let .openDisk(request) where request.readOnly:
                if jobDirectory == nil, root.exists(job) { jobDirectory = try root.subdirectory(job, create: false) }
                let disk = DiskInspection(jobDirectory: jobDirectory, request: request, channel: channel,
                                          session: session, options: diskOptions, logger: logger)
                try disk.run()
                session = disk.session
            case let .openDisk(request):
                let directory = try jobDirectory ?? root.subdirectory(job, create: true)
                jobDirectory = directory
                let disk = DiskSession(jobDirectory: directory, job: job, request: request, channel: channel,
                                       session: session, options: diskOptions, logger: logger)
                try disk.run()
                session = disk.session
            case let .checkDiskSet(disks):
                // Before any disk is opened: a changed disk set fails the session with nothing written.
                // Its fsyncs (or a wait for the job's lock) must not look like a dead target.
                // Only a writing session sends one, so the job directory is made here at the latest.
                let directory = try jobDirectory ?? root.subdirectory(job, create: true)
                jobDirectory = directory
                try channel.withHeartbeat(counting: DiskActivity.counter) { _ in
                    try JobDiskSet.check(disks, directory: directory, job: job, rootPath: options.rootPath,
                                         lockWait: options.lockWait, logger: logger)
                }
            case .end:
                logger.info("session ended normally")
                return
            default:
                throw TargetSessionStateMachine.unexpected(action)
            }
        }
    }
}
