/// The one error type of vzrepl. Callers switch on `kind`; `message` names the file, frame or
/// field and the reason, for a field engineer reading the log.
public struct VZError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        // configuration
        case badJobFile, badArgument
        // source side
        case sourceIO, sourceChanged
        /// The VM's hardware changed since the job was configured or the replica made (a disk's
        /// capacity): the target VM must be reconfigured the same way first.
        case hardwareChanged
        /// A source in a container format the agent does not read (qcow2, VHD, VHDX, VDI, RDM).
        case sourceUnsupported
        // wire
        case protocolViolation, corruptFrame, hashMismatch, versionMismatch
        // transport (libssh2 / child process)
        case connectionRefused, connectionLost, timeout, dnsFailure
        case hostKeyMismatch, hostKeyUnknown, authenticationFailed, noAcceptableCipher, transport
        /// The target agent could not be started or exited before its banner (command not found,
        /// a missing library): permanent until someone installs or fixes it.
        case targetUnavailable
        // target side
        case targetRefused, corruptMap, corruptJournal, replicaIO, noSpace, pathOutsideRoot, locked
        // anything else
        case `internal`
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(kind.rawValue): \(message)" }

    /// Transient errors (a lost link, a timeout) may be retried by the controller; the rest are
    /// permanent until someone changes something.
    public var isTransient: Bool {
        switch kind {
        case .connectionLost, .timeout, .connectionRefused, .dnsFailure: return true
        default: return false
        }
    }
}
