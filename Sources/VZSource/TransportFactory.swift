import Logging
import VZCore
import VZTransportLocal
import VZWire
import VZTransportSSH

/// Builds the byte stream to the target from the job file's `target` section.
enum TransportFactory {
    static let defaultIdleTimeout = 30.0

    /// The receive deadlines the source holds the target to (Docs/protocol.md §4).
    static func limits(_ t: JobConfig.TargetConfig) -> MessageChannel.Limits {
        MessageChannel.Limits(progressTimeout: t.progressTimeoutSeconds ?? MessageChannel.Limits.defaultProgressTimeout)
    }

    static func connect(_ t: JobConfig.TargetConfig, logger: Logger) throws -> ByteStream {
        let idle = t.idleTimeoutSeconds ?? defaultIdleTimeout
        switch t.transport {
        case .exec:
            logger.info("starting target agent: \((t.command ?? []).joined(separator: " "))")
            // After its stdin closes, the agent gets the idle timeout to exit, then SIGTERM, SIGKILL.
            return try ChildProcessTransport(command: t.command ?? [], idleTimeout: idle, exitGrace: idle)
        case .ssh:
            let options = SSHTransport.Options(
                host: t.host ?? "", port: t.port ?? 22, user: t.user ?? "", identityFile: t.identity ?? "",
                hostKeySHA256: t.hostKeySHA256, knownHostsFile: t.knownHosts,
                command: (t.command ?? ["vzrepl-target", "serve", "--stdio"]).joined(separator: " "),
                connectTimeout: t.connectTimeoutSeconds ?? 15, idleTimeout: idle, keepaliveInterval: 10)
            return try SSHTransport.connect(options, logger: logger)
        }
    }
}
