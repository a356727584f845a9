import CLibSSH2
import CSSHKeystream
import Foundation
import Glibc
import Logging
import VZCore

/// The `ssh` transport: the protocol runs over the stdin/stdout of an exec channel to the target
/// VA's sshd, whose forced command is `vzrepl-target serve --stdio`. AES-256 only, the host key
/// checked against a pin before authenticating, public-key authentication, keepalives, and an
/// idle timeout so a dead link fails the pass in bounded time.
///
/// Threads: one reader and one writer may use the stream at the same time (the `ByteStream`
/// contract); a private service thread sends keepalives, logs the target's stderr and answers
/// sshd's client-alive probes while neither is active. `close()` may come from any thread.
public final class SSHTransport: ByteStream, @unchecked Sendable {
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        public var user: String
        /// Private key file (OpenSSH format; ed25519 recommended). Its public half is derived.
        public var identityFile: String
        /// "SHA256:..." as `ssh-keygen -lf` prints it for the target's host key.
        public var hostKeySHA256: String?
        public var knownHostsFile: String?
        /// The command asked of the server; the forced command in authorized_keys wins.
        public var command: String
        /// Limit for each setup step: TCP connect, SSH handshake, authentication, channel, exec.
        public var connectTimeout: Double
        /// A read or write fails with `.timeout` when the session moved no data for this long.
        public var idleTimeout: Double
        /// Seconds between SSH keepalives; 0 disables them.
        public var keepaliveInterval: Int

        public init(host: String, port: Int = 22, user: String, identityFile: String, hostKeySHA256: String? = nil,
                    knownHostsFile: String? = nil, command: String = "vzrepl-target serve --stdio",
                    connectTimeout: Double = 15, idleTimeout: Double = 30, keepaliveInterval: Int = 10) {
            self.host = host; self.port = port; self.user = user; self.identityFile = identityFile
            self.hostKeySHA256 = hostKeySHA256; self.knownHostsFile = knownHostsFile; self.command = command
            self.connectTimeout = connectTimeout; self.idleTimeout = idleTimeout; self.keepaliveInterval = keepaliveInterval
        }
    }

    /// Whether libssh2's per-block AES-CTR calls are served from the keystream cache
    /// (CSSHKeystream: the executable's EVP_Cipher took precedence over libcrypto's), and how many
    /// 64 KiB keystream refills it made in this process.
    public static var keystreamCache: (active: Bool, refills: UInt) {
        (vz_keystream_active() == 1, UInt(vz_keystream_refills()))
    }

    /// The libssh2 this process runs on: its own version string and the ciphers and MACs it
    /// implements. `make` builds against the vendored 1.11.1 (ThirdParty/libssh2), which has
    /// AES-256-GCM and the ETM MACs; Debian 12's 1.10, which a plain `swift build` links, has
    /// neither (aes256-ctr + hmac-sha2-256 then).
    public static let library: (version: String, ciphers: [String], macs: [String]) = {
        _ = SSHSession.libraryStatus
        let version = libssh2_version(0).map { String(cString: $0) } ?? "unknown"
        var ciphers: [String] = [], macs: [String] = []
        if let session = libssh2_session_init_ex(nil, nil, nil, nil) {
            func supported(_ method: Int32) -> [String] {
                var algs: UnsafeMutablePointer<UnsafePointer<CChar>?>?
                let n = libssh2_session_supported_algs(session, method, &algs)
                guard n > 0, let algs else { return [] }
                defer { libssh2_free(session, algs) }
                return (0..<Int(n)).compactMap { algs[$0].map { String(cString: $0) } }
            }
            ciphers = supported(LIBSSH2_METHOD_CRYPT_CS)
            macs = supported(LIBSSH2_METHOD_MAC_CS)
            libssh2_session_free(session)
        }
        return (version, ciphers, macs)
    }()

    /// Whether the library has aes256-gcm@openssh.com (the cipher the policy prefers).
    public static var libraryHasAESGCM: Bool { library.ciphers.contains("aes256-gcm@openssh.com") }

    /// What libssh2 negotiated, as logged at connect.
    public struct Negotiated: Equatable, Sendable {
        public var kex: String
        public var hostKey: String
        public var cipherClientToServer: String
        public var cipherServerToClient: String
        public var macClientToServer: String
        public var macServerToClient: String
    }

    public let options: Options
    public let negotiated: Negotiated
    /// The server's host key, "SHA256:...".
    public let hostKeyFingerprint: String
    private let session: SSHSession
    private let service: SSHServiceThread
    private var wroteEOF = false

    private init(options: Options, session: SSHSession, negotiated: Negotiated, fingerprint: String) {
        self.options = options
        self.session = session
        self.negotiated = negotiated
        self.hostKeyFingerprint = fingerprint
        service = SSHServiceThread(session: session, keepaliveInterval: options.keepaliveInterval)
    }

    deinit { close() }

    /// Connects, verifies the host key, authenticates and starts `options.command`. Every failure
    /// is a `VZError` naming the host and port: `.dnsFailure`, `.connectionRefused`, `.timeout`,
    /// `.noAcceptableCipher`, `.hostKeyMismatch`, `.hostKeyUnknown`, `.authenticationFailed`,
    /// `.badArgument`, `.transport`, `.connectionLost`.
    public static func connect(_ options: Options, logger: Logger) throws -> SSHTransport {
        let peer = "\(options.host):\(options.port)"
        guard !options.host.isEmpty else { throw VZError(.badArgument, "ssh transport: the host is empty") }
        guard (1...65535).contains(options.port) else { throw VZError(.badArgument, "ssh transport to \(options.host): \(options.port) is not a TCP port") }
        guard !options.user.isEmpty else { throw VZError(.badArgument, "ssh transport to \(peer): the user is empty") }
        guard options.connectTimeout > 0, options.idleTimeout > 0 else {
            throw VZError(.badArgument, "ssh transport to \(peer): connect timeout \(options.connectTimeout) s and idle timeout \(options.idleTimeout) s must be positive")
        }
        // Checked before connecting: no pin must never become "connect and see".
        let pin = try HostKeyPin(fingerprint: options.hostKeySHA256, knownHostsFile: options.knownHostsFile)
        guard access(options.identityFile, R_OK) == 0 else {
            throw VZError(.badArgument, "ssh transport to \(peer): cannot read private key file \(options.identityFile): \(String(cString: strerror(errno)))")
        }

        let fd = try TCPConnector.connect(host: options.host, port: options.port, timeout: options.connectTimeout)
        let session = try SSHSession(socket: fd, peer: "\(options.user)@\(peer)", idleTimeout: options.idleTimeout, logger: logger)
        do {
            let (negotiated, fingerprint) = try SSHHandshake(session: session, options: options, pin: pin, logger: logger).run()
            return SSHTransport(options: options, session: session, negotiated: negotiated, fingerprint: fingerprint)
        } catch {
            session.close()
            throw error
        }
    }

    // MARK: - ByteStream

    /// Reads what the remote command wrote to stdout; 0 once it has closed it (EOF).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try read(into: buffer, timeout: nil) ?? 0
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, timeout: Double?) throws -> Int? {
        guard buffer.count > 0 else { return 0 }
        let now = MonotonicClock.now()
        let outcome: SSHSession.Outcome
        do {
            outcome = try session.run(.reader, .read, .idle(since: now, what: "read", until: timeout.map { now + $0 })) {
                // stderr first: unread stderr would hold the channel window (and the target) still.
                _ = session.drainStderrLocked()
                guard let ch = session.channel else { return 0 }
                return vz_ssh2_channel_read(ch, buffer.baseAddress, buffer.count)
            }
        } catch is SSHSession.CallerDeadline {
            return nil
        }
        if outcome.rc < 0 { throw session.dataError(outcome, during: "reading from the remote command") }
        return outcome.rc
    }

    public func interruptRead() { session.interrupt(.reader) }

    /// The server's window and the socket can take `count` bytes now, and no packet is half sent.
    public func canWriteWithoutBlocking(_ count: Int) -> Bool {
        session.lock(); defer { session.unlock() }
        guard !session.closed, let ch = session.channel else { return true }
        if session.remoteExit != nil { return true }  // let the write report it
        return !session.hasPendingPacket && vz_ssh2_channel_window_write(ch) >= UInt(count) && session.socketWritable()
    }

    /// Writes all of `bytes`. libssh2 takes at most ~32 KiB (one SSH packet) per call, straight
    /// from `bytes` (it encrypts into its own packet buffer), so this loops without copying.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard var next = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            var remoteGone = false
            var died: PeerExit?
            let outcome = try session.run(.writer, .write, .idle(since: MonotonicClock.now(), what: "written")) {
                guard let ch = session.channel else { return Int(LIBSSH2_ERROR_CHANNEL_CLOSED) }
                // The service thread saw the agent die (exit-signal, or a non-zero exit-status):
                // fail now, not once the window runs out and the idle timeout passes.
                if let e = session.remoteExit {
                    died = e
                    return Int(LIBSSH2_ERROR_CHANNEL_CLOSED)
                }
                var n = vz_ssh2_channel_write(ch, next, left)
                // 0 means the server's window is closed (libssh2 then waits for inbound data,
                // the window adjust); treat it as EAGAIN so we wait instead of spinning.
                if n == 0 { n = Int(vz_ssh2_error_eagain()) }
                // The target is gone when it has sent EOF, an exit signal or an exit status while
                // we still have data for it; without this check a write to a closed channel
                // would wait for a window adjust that never comes and end as a timeout.
                // (libssh2_channel_eof stays 0 while stdout data we have not read yet is
                // queued — the target's keepalives — so the exit-signal is what tells a kill.)
                if n == Int(vz_ssh2_error_eagain()) {
                    if let e = session.checkRemoteExitLocked() {
                        died = e
                        return Int(LIBSSH2_ERROR_CHANNEL_CLOSED)
                    }
                    if libssh2_channel_eof(ch) == 1 {
                        remoteGone = true
                        return Int(LIBSSH2_ERROR_CHANNEL_CLOSED)
                    }
                }
                return n
            }
            if let e = died {
                throw VZError(.connectionLost, "ssh \(session.peer): the target agent died (it \(e.summary)) with \(left) bytes still to be written\(e.stderrNote)")
            }
            if remoteGone {
                throw VZError(.connectionLost, "ssh \(session.peer): the remote command closed the channel while \(left) bytes were still to be written\(exitDescription())")
            }
            if outcome.rc < 0 { throw session.dataError(outcome, during: "writing to the remote command") }
            next += outcome.rc
            left -= outcome.rc
        }
    }

    /// Sends EOF: the remote command reads end of stream on its stdin.
    public func closeWrite() {
        guard !wroteEOF else { return }
        wroteEOF = true
        do {
            let outcome = try session.run(.writer, .eof, .idle(since: MonotonicClock.now(), what: "sent (EOF)")) {
                guard let ch = session.channel else { return 0 }
                // The EOF packet lives on libssh2's stack: only start it when it fits whole.
                if !session.hasPendingPacket && !session.socketWritable() {
                    session.waitForWritable = true
                    return Int(vz_ssh2_error_eagain())
                }
                return Int(libssh2_channel_send_eof(ch))
            }
            if outcome.rc < 0 { session.logger.debug("ssh \(session.peer): sending EOF failed: \(outcome.message)") }
        } catch {
            session.logger.debug("ssh \(session.peer): sending EOF failed: \(error)")
        }
    }

    /// Closes the channel, disconnects and frees everything. Idempotent, any thread.
    public func close() {
        service.stop()
        session.close()
    }

    /// The remote command's exit status once the server has reported it (nil before).
    public var remoteExitStatus: Int32? {
        session.lock(); defer { session.unlock() }
        guard !session.closed, let ch = session.channel, libssh2_channel_eof(ch) == 1 else { return nil }
        return libssh2_channel_get_exit_status(ch)
    }

    /// How the remote command ended: waits up to `timeout` seconds for the channel to close
    /// (the exit status comes just before the close), reading stderr meanwhile. nil while the
    /// command runs, or when the server said nothing.
    public func peerExit(waitingUpTo timeout: Double) -> PeerExit? {
        let eagain = Int(vz_ssh2_error_eagain())
        var closed = false
        _ = try? session.run(.reader, .read, .setup(deadline: MonotonicClock.now() + timeout, step: "waiting for the remote command's exit status")) {
            _ = session.drainStderrLocked()
            if session.checkRemoteExitLocked() != nil { return 1 }
            guard let ch = session.channel else { return 1 }
            let rc = Int(libssh2_channel_wait_closed(ch))
            if rc == eagain { return rc }
            closed = rc == 0
            return 1  // closed, or not even at EOF: take what is known
        }
        session.lock(); defer { session.unlock() }
        if let e = session.checkRemoteExitLocked() { return e }
        guard closed, !session.closed, let ch = session.channel else { return nil }
        return PeerExit(status: libssh2_channel_get_exit_status(ch), lastStderrLine: session.lastStderrLineLocked)
    }

    private func exitDescription() -> String {
        session.lock(); defer { session.unlock() }
        guard !session.closed, let ch = session.channel else { return "" }
        let status = libssh2_channel_get_exit_status(ch)
        return status != 0 ? " (it exited with status \(status))" : ""
    }
}
