import VZCore

/// The protocol banner each agent sends before the first frame: one ASCII line
/// `VZREPL/<protocol> <agent> <agent version>\n` of at most `maxLength` bytes (Docs/protocol.md §1).
/// It is readable on purpose: a field engineer who points the source at the wrong program sees
/// what answered.
public struct Banner: Equatable, Sendable {
    public static let prefix = "VZREPL/"
    public static let maxLength = 128
    /// The version this agent speaks (VZVersion): 2 is 1 plus the `progress` message (type 13);
    /// 3 adds `diskSet` (20), `diskChain` (21), the step of `progress`, `openDisk`'s read-only
    /// flag and the pass id at the end of `hello`.
    public static let protocolVersion = VZVersion.protocolVersion
    /// The oldest version it still accepts: a version-1 peer gets keepalives instead of progress
    /// frames, and is not held to the no-progress limit, which it has no way to meet.
    public static let oldestProtocolVersion = 1

    public var protocolVersion: Int
    /// The whole line without its newline, for logs.
    public var line: String

    /// Our own banner line, newline included.
    public static func encode(agent: String, version: String) -> [UInt8] {
        Array("\(prefix)\(protocolVersion) \(agent) \(version)\n".utf8)
    }

    /// Checks a received line (without its newline): the prefix, then a protocol version from
    /// `oldestProtocolVersion` to ours.
    public static func parse(_ bytes: [UInt8], peerName: String) throws -> Banner {
        let banner = String(decoding: bytes, as: UTF8.self)
        guard banner.hasPrefix(prefix) else {
            throw VZError(.protocolViolation, "\(peerName): expected a banner starting with '\(prefix)', got '\(banner.prefix(80))': not a vzrepl agent")
        }
        let versionField = banner.dropFirst(prefix.count).prefix { $0 != " " }
        guard let v = Int(versionField), (oldestProtocolVersion...protocolVersion).contains(v) else {
            throw VZError(.versionMismatch, "\(peerName): speaks protocol version \(versionField), this agent speaks \(oldestProtocolVersion) to \(protocolVersion) ('\(banner)')")
        }
        return Banner(protocolVersion: v, line: banner)
    }
}

/// Collects the peer's banner line from bytes as they arrive. Fed one byte at a time by the
/// channel, because frames follow the banner at once and must not be read past it.
public struct BannerParser: Sendable {
    public let peerName: String
    private var line: [UInt8] = []

    public init(peerName: String) { self.peerName = peerName }

    /// Returns the banner once its newline arrived; nil while more bytes are needed.
    public mutating func feed(_ byte: UInt8) throws -> Banner? {
        if byte == 0x0A { return try Banner.parse(line, peerName: peerName) }
        line.append(byte)
        guard line.count <= Banner.maxLength else {
            throw VZError(.protocolViolation, "\(peerName): banner longer than \(Banner.maxLength) bytes: not a vzrepl agent (got '\(String(decoding: line.prefix(60), as: UTF8.self))...')")
        }
        return nil
    }

    /// The error for a stream that ended before the banner was complete.
    public func endOfStream() -> VZError {
        VZError(.connectionLost, "\(peerName): connection closed before the protocol banner"
                + (line.isEmpty ? "" : " (got '\(String(decoding: line.prefix(80), as: UTF8.self))')"))
    }
}
