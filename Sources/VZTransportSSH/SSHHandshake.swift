import CLibSSH2
import Glibc
import Logging
import VZCore

/// The setup of an `SSHSession`, in the order security needs: restrict the algorithms, key
/// exchange, check the host key against the pin, only then offer the private key, open the
/// channel and start the command. Each step has `connectTimeout` seconds.
struct SSHHandshake {
    let session: SSHSession
    let options: SSHTransport.Options
    let pin: HostKeyPin
    let logger: Logger

    private var peer: String { "\(options.host):\(options.port)" }

    func run() throws -> (SSHTransport.Negotiated, String) {
        let policy = try SSHAlgorithmPolicy.standard.restricted(to: supported)
        try apply(policy)
        _ = libssh2_session_banner_set(session.session, "SSH-2.0-vzrepl_libssh2_\(LIBSSH2_VERSION)")

        session.tap.install(on: session.session)
        let handshake = try step("SSH handshake") { Int(libssh2_session_handshake(session.session, session.socket)) }
        session.tap.remove()
        if handshake.rc != 0 { throw handshakeError(handshake, policy: policy) }

        let negotiated = SSHTransport.Negotiated(
            kex: method(LIBSSH2_METHOD_KEX), hostKey: method(LIBSSH2_METHOD_HOSTKEY),
            cipherClientToServer: method(LIBSSH2_METHOD_CRYPT_CS), cipherServerToClient: method(LIBSSH2_METHOD_CRYPT_SC),
            macClientToServer: method(LIBSSH2_METHOD_MAC_CS), macServerToClient: method(LIBSSH2_METHOD_MAC_SC))

        // Before authentication: a server that fails the pin never sees our key.
        let fingerprint = try pin.verify(session: session.session, host: options.host, port: options.port, peer: peer)
        logger.info("ssh \(options.user)@\(peer): cipher \(negotiated.cipherClientToServer), MAC \(negotiated.macClientToServer), key exchange \(negotiated.kex), host key \(negotiated.hostKey) \(fingerprint), libssh2 \(SSHTransport.library.version)",
                    metadata: ["subsystem": "vzrepl.transport"])
        logger.debug("ssh \(peer): AES-CTR keystream cache for per-block calls \(SSHTransport.keystreamCache.active ? "active" : "not active (libcrypto's EVP_Cipher is called directly)")")

        let auth = try step("authentication") {
            Int(vz_ssh2_userauth_publickey_fromfile(session.session, options.user, nil, options.identityFile, nil))
        }
        if auth.rc != 0 { throw authError(auth) }

        let open = try step("opening the session channel") {
            if let ch = vz_ssh2_channel_open_session(session.session) {
                session.channel = ch
                return 0
            }
            return Int(libssh2_session_last_errno(session.session))
        }
        guard open.rc == 0, let channel = session.channel else {
            throw VZError(.transport, "ssh \(options.user)@\(peer): the server refused a session channel: \(open.message) (libssh2 error \(open.rc))")
        }
        let exec = try step("starting the remote command") { Int(vz_ssh2_channel_exec(channel, options.command)) }
        if exec.rc != 0 {
            throw VZError(.transport, "ssh \(options.user)@\(peer): the server refused to run '\(options.command)': \(exec.message) (libssh2 error \(exec.rc))")
        }
        if options.keepaliveInterval > 0 {
            libssh2_keepalive_config(session.session, 1, UInt32(options.keepaliveInterval))
        }
        return (negotiated, fingerprint)
    }

    private func step(_ name: String, _ call: () -> Int) throws -> SSHSession.Outcome {
        try session.run(.writer, .setup, .setup(deadline: MonotonicClock.now() + options.connectTimeout, step: name), call)
    }

    /// What this libssh2 build implements in a category (libssh2_session_supported_algs).
    private func supported(_ c: SSHAlgorithmPolicy.Category) -> [String] {
        let type: Int32
        switch c {
        case .kex: type = LIBSSH2_METHOD_KEX
        case .hostKey: type = LIBSSH2_METHOD_HOSTKEY
        case .cipher: type = LIBSSH2_METHOD_CRYPT_CS
        case .mac: type = LIBSSH2_METHOD_MAC_CS
        case .compression: type = LIBSSH2_METHOD_COMP_CS
        }
        var algs: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        let n = libssh2_session_supported_algs(session.session, type, &algs)
        guard n > 0, let list = algs else { return [] }
        defer { libssh2_free(session.session, list) }
        return (0..<Int(n)).compactMap { list[$0].map { String(cString: $0) } }
    }

    private func apply(_ policy: SSHAlgorithmPolicy) throws {
        let prefs: [(Int32, SSHAlgorithmPolicy.Category)] = [
            (LIBSSH2_METHOD_KEX, .kex), (LIBSSH2_METHOD_HOSTKEY, .hostKey),
            (LIBSSH2_METHOD_CRYPT_CS, .cipher), (LIBSSH2_METHOD_CRYPT_SC, .cipher),
            (LIBSSH2_METHOD_MAC_CS, .mac), (LIBSSH2_METHOD_MAC_SC, .mac),
            (LIBSSH2_METHOD_COMP_CS, .compression), (LIBSSH2_METHOD_COMP_SC, .compression)]
        for (type, category) in prefs {
            let list = policy.names(category).joined(separator: ",")
            let rc = libssh2_session_method_pref(session.session, type, list)
            guard rc == 0 else {
                throw VZError(.noAcceptableCipher, "ssh \(peer): libssh2 rejected the \(category.rawValue) preference '\(list)' (libssh2 error \(rc))")
            }
        }
    }

    private func method(_ type: Int32) -> String {
        libssh2_session_methods(session.session, type).map { String(cString: $0) } ?? "?"
    }

    /// A failed key exchange names the server's algorithms, read from its KEXINIT by the tap,
    /// because libssh2 only says it could not agree.
    private func handshakeError(_ o: SSHSession.Outcome, policy: SSHAlgorithmPolicy) -> VZError {
        if let server = session.tap.kexInit, let mismatch = policy.mismatch(with: server, peer: peer) {
            return mismatch
        }
        let tap = session.tap
        if tap.kexInit == nil {
            if let garbage = tap.parseError {
                return VZError(.protocolViolation, "\(garbage.message): is this port an SSH server?")
            }
            if !tap.sawIdentification, let words = tap.firstWords {
                return VZError(.protocolViolation, "ssh \(peer): the server did not identify as an SSH server (it sent '\(words)'): is this port an SSH server?")
            }
            if !tap.sawIdentification {
                return VZError(.connectionLost, "ssh \(peer): the server closed the connection before identifying itself (\(o.message)); sshd may be refusing connections (MaxStartups, a firewall, tcp wrappers)")
            }
        }
        switch Int32(truncatingIfNeeded: o.rc) {
        case LIBSSH2_ERROR_SOCKET_DISCONNECT, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_BANNER_RECV,
             LIBSSH2_ERROR_SOCKET_NONE:
            return VZError(.connectionLost, "ssh \(peer): the server closed the connection during the SSH handshake (\(o.message), libssh2 error \(o.rc)); its log says why")
        default:
            return VZError(.transport, "ssh \(peer): SSH handshake failed: \(o.message) (libssh2 error \(o.rc))")
        }
    }

    private func authError(_ o: SSHSession.Outcome) -> VZError {
        let who = "\(options.user)@\(peer)"
        switch Int32(truncatingIfNeeded: o.rc) {
        case LIBSSH2_ERROR_AUTHENTICATION_FAILED, LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
            return VZError(.authenticationFailed, "ssh \(who): the server refused the key \(options.identityFile) (\(o.message)); its public half must be in the target's authorized_keys for user '\(options.user)' (see Appliance/authorized_keys.template)")
        case LIBSSH2_ERROR_FILE:
            return VZError(.authenticationFailed, "ssh \(who): cannot use private key file \(options.identityFile): \(o.message) (passphrase-protected keys are not supported)")
        case LIBSSH2_ERROR_SOCKET_DISCONNECT, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_SEND:
            return VZError(.connectionLost, "ssh \(who): the connection was lost during authentication: \(o.message)")
        default:
            return VZError(.authenticationFailed, "ssh \(who): authentication with \(options.identityFile) failed: \(o.message) (libssh2 error \(o.rc))")
        }
    }
}
