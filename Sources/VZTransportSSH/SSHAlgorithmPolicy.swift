import VZCore

/// Which SSH algorithms vzrepl will negotiate, in order of preference (the client's order decides
/// in SSH). Ciphers are AES-256 only (DESIGN.md). Names the libssh2 build lacks are dropped
/// before they are offered, so a newer libssh2 with GCM and ETM MACs picks them up unchanged.
public struct SSHAlgorithmPolicy: Equatable, Sendable {
    public enum Category: String, CaseIterable, Sendable {
        case kex = "key exchange", hostKey = "host key", cipher = "cipher", mac = "MAC", compression = "compression"
    }

    public var kex: [String]
    public var hostKey: [String]
    public var ciphers: [String]
    public var macs: [String]
    /// vzrepl compresses with lz4 before encrypting; SSH zlib would only burn CPU.
    public var compression: [String]

    public static let standard = SSHAlgorithmPolicy(
        kex: ["curve25519-sha256", "curve25519-sha256@libssh.org",
              "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
              "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512"],
        hostKey: ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                  "rsa-sha2-512", "rsa-sha2-256"],
        ciphers: ["aes256-gcm@openssh.com", "aes256-ctr"],
        macs: ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512"],
        compression: ["none"])

    public init(kex: [String], hostKey: [String], ciphers: [String], macs: [String], compression: [String]) {
        self.kex = kex; self.hostKey = hostKey; self.ciphers = ciphers; self.macs = macs; self.compression = compression
    }

    public func names(_ c: Category) -> [String] {
        switch c {
        case .kex: return kex
        case .hostKey: return hostKey
        case .cipher: return ciphers
        case .mac: return macs
        case .compression: return compression
        }
    }

    /// The policy cut down to what the library supports (`supported` lists its names per
    /// category). Throws `.noAcceptableCipher` when a category ends up empty: this libssh2 build
    /// cannot meet the policy at all.
    public func restricted(to supported: (Category) -> [String]) throws -> SSHAlgorithmPolicy {
        func cut(_ c: Category) throws -> [String] {
            let have = Set(supported(c))
            let kept = names(c).filter(have.contains)
            guard !kept.isEmpty else {
                throw VZError(.noAcceptableCipher, "this libssh2 build supports none of the \(c.rawValue) algorithms vzrepl allows (\(names(c).joined(separator: ","))); it has \(supported(c).joined(separator: ","))")
            }
            return kept
        }
        return SSHAlgorithmPolicy(kex: try cut(.kex), hostKey: try cut(.hostKey), ciphers: try cut(.cipher),
                                  macs: try cut(.mac), compression: try cut(.compression))
    }

    /// Why negotiation with a server that sent `server` must fail, or nil if every category has
    /// a common algorithm. The error names what the server offered, what we offered, and the
    /// sshd setting to change (from `advice`, the full policy, since the appliance's sshd should
    /// offer what newer clients can use too). A MAC is irrelevant when both sides would pick an
    /// AEAD cipher.
    public func mismatch(with server: KexInit, peer: String, advice: SSHAlgorithmPolicy = .standard) -> VZError? {
        func common(_ ours: [String], _ theirs: [String]) -> Bool { ours.contains(where: theirs.contains) }
        func fail(_ c: Category, offered: [String], setting: String) -> VZError {
            let offeredText = offered.isEmpty ? "nothing" : offered.joined(separator: ",")
            return VZError(.noAcceptableCipher, "SSH server \(peer) (\(server.serverBanner)) offers no \(c == .cipher ? "AES-256 " : "")\(c.rawValue) algorithm vzrepl accepts: the server offers \(offeredText); vzrepl offers \(names(c).joined(separator: ",")). Set '\(setting)' in the target's sshd configuration (Appliance/sshd_config.d/vzrepl.conf)")
        }
        let cipherServer = server.ciphersClientToServer == server.ciphersServerToClient
            ? server.ciphersClientToServer : server.ciphersClientToServer + server.ciphersServerToClient.filter { !server.ciphersClientToServer.contains($0) }
        if !common(ciphers, server.ciphersClientToServer) || !common(ciphers, server.ciphersServerToClient) {
            return fail(.cipher, offered: cipherServer, setting: "Ciphers \(advice.ciphers.joined(separator: ","))")
        }
        if !common(kex, server.kex) { return fail(.kex, offered: server.kex, setting: "KexAlgorithms \(advice.kex.joined(separator: ","))") }
        if !common(hostKey, server.hostKey) {
            return fail(.hostKey, offered: server.hostKey, setting: "HostKeyAlgorithms \(advice.hostKey.joined(separator: ","))")
        }
        let aead = ciphers.first(where: server.ciphersClientToServer.contains).map { $0.contains("gcm") } ?? false
        if !aead && (!common(macs, server.macsClientToServer) || !common(macs, server.macsServerToClient)) {
            return fail(.mac, offered: server.macsClientToServer, setting: "MACs \(advice.macs.joined(separator: ","))")
        }
        if !common(compression, server.compressionClientToServer) || !common(compression, server.compressionServerToClient) {
            return fail(.compression, offered: server.compressionClientToServer, setting: "Compression no")
        }
        return nil
    }
}
