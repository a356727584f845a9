import CLibSSH2
import Foundation
import VZCore

/// What the SSH server's host key must be: a SHA-256 fingerprint as `ssh-keygen -lf` prints it,
/// and/or a known_hosts file. Checked right after the key exchange and before the private key
/// is offered, so a man in the middle never sees an authentication attempt. There is no
/// trust-on-first-use: no pin is an error.
public struct HostKeyPin: Equatable, Sendable {
    /// Normalized "SHA256:<base64 without padding>".
    public var fingerprint: String?
    public var knownHostsFile: String?

    /// Throws `.hostKeyUnknown` when neither is given, `.badArgument` for a malformed fingerprint.
    public init(fingerprint: String?, knownHostsFile: String?) throws {
        if let fp = fingerprint {
            guard let n = HostKeyPin.normalize(fp) else {
                throw VZError(.badArgument, "host key pin '\(fp)' is not an OpenSSH SHA-256 fingerprint: expected 'SHA256:' and 43 base64 characters, as 'ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub' prints on the target")
            }
            self.fingerprint = n
        }
        if let kh = knownHostsFile, kh.isEmpty {
            throw VZError(.badArgument, "known_hosts file name is empty")
        }
        self.knownHostsFile = knownHostsFile
        if self.fingerprint == nil && self.knownHostsFile == nil {
            throw VZError(.hostKeyUnknown, "no host key pin for the SSH target: give hostKeySHA256 (from 'ssh-keygen -lf' on the target) or a knownHosts file; vzrepl never trusts a host on first use")
        }
    }

    /// "SHA256:" + unpadded base64 of a 32-byte digest, exactly as `ssh-keygen -lf` prints it.
    public static func fingerprint(sha256 digest: [UInt8]) -> String {
        var b64 = Data(digest).base64EncodedString()
        while b64.hasSuffix("=") { b64.removeLast() }
        return "SHA256:" + b64
    }

    /// Accepts "SHA256:xxx", "xxx", and either with '=' padding; nil unless it decodes to 32 bytes.
    public static func normalize(_ pin: String) -> String? {
        var body = pin.trimmingCharacters(in: .whitespaces)
        if body.hasPrefix("SHA256:") { body.removeFirst(7) }
        while body.hasSuffix("=") { body.removeLast() }
        guard body.count == 43, body.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "/") }),
              let data = Data(base64Encoded: body + "="), data.count == 32 else { return nil }
        return "SHA256:" + body
    }

    /// Checks the key the server presented in `session` against every pin given. `peer` is
    /// "host:port" for messages; `host`/`port` are looked up in known_hosts ("[host]:port" form
    /// when the port is not 22, which libssh2 handles).
    func verify(session: OpaquePointer, host: String, port: Int, peer: String) throws -> String {
        guard let raw = libssh2_hostkey_hash(session, LIBSSH2_HOSTKEY_HASH_SHA256) else {
            throw VZError(.hostKeyUnknown, "SSH server \(peer): libssh2 gave no SHA-256 host key hash; cannot verify the server")
        }
        let digest = raw.withMemoryRebound(to: UInt8.self, capacity: 32) { Array(UnsafeBufferPointer(start: $0, count: 32)) }
        let offered = HostKeyPin.fingerprint(sha256: digest)
        if let expected = fingerprint, expected != offered {
            throw VZError(.hostKeyMismatch, "SSH server \(peer) presented host key \(offered), but the job pins \(expected): the target was reinstalled or someone is in between; check the key on the target with 'ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub' before changing the pin")
        }
        if let file = knownHostsFile {
            try checkKnownHosts(file, session: session, host: host, port: port, peer: peer, offered: offered)
        }
        return offered
    }

    private func checkKnownHosts(_ file: String, session: OpaquePointer, host: String, port: Int, peer: String, offered: String) throws {
        guard access(file, R_OK) == 0, let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            let why = access(file, R_OK) == 0 ? "not UTF-8 text" : String(cString: strerror(errno))
            throw VZError(.hostKeyUnknown, "cannot read known_hosts file \(file) (\(why)): cannot verify SSH server \(peer)")
        }
        guard let kh = libssh2_knownhost_init(session) else {
            throw VZError(.transport, "libssh2_knownhost_init failed while checking \(peer)")
        }
        defer { libssh2_knownhost_free(kh) }
        // Line by line rather than libssh2_knownhost_readfile: that one gives up on the first
        // line it cannot parse (@cert-authority, sk- keys), and we only need the usable ones.
        var skipped = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let rc = trimmed.withCString { libssh2_knownhost_readline(kh, $0, strlen($0), LIBSSH2_KNOWNHOST_FILE_OPENSSH) }
            if rc != 0 { skipped += 1 }
        }
        var keyLength = 0
        var keyType: Int32 = 0
        guard let key = libssh2_session_hostkey(session, &keyLength, &keyType) else {
            throw VZError(.hostKeyUnknown, "SSH server \(peer): libssh2 gave no host key; cannot check it against \(file)")
        }
        let typeBits = vz_ssh2_knownhost_key_bits(keyType)
        var entry: UnsafeMutablePointer<libssh2_knownhost>?
        let result = libssh2_knownhost_checkp(kh, host, Int32(port), key, keyLength,
                                              vz_ssh2_knownhost_check_flags() | typeBits, &entry)
        let note = skipped > 0 ? " (\(skipped) line(s) of it could not be parsed and were ignored)" : ""
        switch result {
        case LIBSSH2_KNOWNHOST_CHECK_MATCH:
            return
        case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
            throw VZError(.hostKeyMismatch, "SSH server \(peer) presented host key \(offered), which is not the key \(file) records for it\(note): the target was reinstalled or someone is in between")
        case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
            let name = port == 22 ? host : "[\(host)]:\(port)"
            throw VZError(.hostKeyUnknown, "SSH server \(peer) (host key \(offered)) is not in known_hosts file \(file)\(note); add it after checking the fingerprint on the target, e.g. 'ssh-keyscan -p \(port) -t ed25519 \(host)' gives the line for '\(name)'")
        default:
            throw VZError(.hostKeyUnknown, "cannot check SSH server \(peer) against known_hosts file \(file) (libssh2 result \(result))\(note)")
        }
    }
}
