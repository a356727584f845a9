import Logging
import VZCore
import VZTransport

/// Builds the byte stream to the target from the job file's `target` section.
enum TransportFactory {
    static let defaultIdleTimeout = 30.0

    static func connect(_ t: JobConfig.TargetConfig, logger: Logger) throws -> ByteStream {
        let idle = t.idleTimeoutSeconds ?? defaultIdleTimeout
        switch t.transport {
        case .exec:
            logger.info("starting target agent: \((t.command ?? []).joined(separator: " "))")
            return try ChildProcessTransport(command: t.command ?? [], idleTimeout: idle)
        case .ssh:
            throw VZError(.transport, "the ssh transport is not built into this agent yet")
        }
    }
}
