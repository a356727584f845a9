import VZCore

/// The algorithm name-lists of an SSH_MSG_KEXINIT (RFC 4253 §7.1).
public struct KexInit: Equatable, Sendable {
    public var serverBanner: String
    public var kex: [String]
    public var hostKey: [String]
    public var ciphersClientToServer: [String]
    public var ciphersServerToClient: [String]
    public var macsClientToServer: [String]
    public var macsServerToClient: [String]
    public var compressionClientToServer: [String]
    public var compressionServerToClient: [String]
}

/// Reads the server's identification line and first binary packet (its KEXINIT, sent in the
/// clear before any key exists) from the raw bytes of an SSH connection. Pure: it is fed bytes
/// (`append`) and `next()` returns nil until the whole KEXINIT is there, so it can be tested by
/// splitting input at every offset. Used to name the server's ciphers when negotiation fails,
/// which libssh2 does not report.
public struct KexInitParser {
    /// RFC 4253 §4.2: an identification line is at most 255 bytes with CR LF.
    public static let maxLineLength = 255
    /// Lines a server may send before its identification line; more means it is not SSH.
    public static let maxPreBannerLines = 32
    /// The largest KEXINIT packet accepted. Real ones are 1–2 KiB; RFC 4253 §6.1 only requires
    /// implementations to handle 35000-byte packets.
    public static let maxPacketLength = 35000
    static let msgKexInit: UInt8 = 20

    private enum State { case banner, packet(banner: String), done }
    private var state = State.banner
    private var buffer: [UInt8] = []
    private var linesSeen = 0
    /// Bytes consumed before `buffer` (for error offsets).
    private var consumed = 0
    private let peer: String

    /// `peer` names the server ("host:port") in errors.
    public init(peer: String) { self.peer = peer }

    public var isDone: Bool { if case .done = state { return true } else { return false } }

    /// Whether the server's "SSH-2.0-..." identification line has arrived.
    public var sawIdentification: Bool { if case .banner = state { return false } else { return true } }

    /// The first thing the server sent, for "this is not an SSH server" messages: its first
    /// complete line, or the start of an unfinished one; nil when nothing came.
    public var firstWords: String? {
        if let l = firstLine { return l }
        if case .banner = state, !buffer.isEmpty { return String(decoding: buffer.prefix(60), as: UTF8.self) }
        return nil
    }
    private var firstLine: String?

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if isDone { return }
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    /// The KEXINIT once all its bytes have arrived; nil while more are needed. Throws
    /// `.protocolViolation` naming the peer, the offset and the field for malformed input.
    public mutating func next() throws -> KexInit? {
        while true {
            switch state {
            case .done:
                return nil
            case .banner:
                guard let nl = buffer.firstIndex(of: 0x0A) else {
                    if buffer.count > KexInitParser.maxLineLength {
                        throw fail(at: consumed, "a line longer than \(KexInitParser.maxLineLength) bytes before the SSH identification line\(firstLine.map { " (its first line: '\($0)')" } ?? "")")
                    }
                    return nil
                }
                guard nl < KexInitParser.maxLineLength else {
                    throw fail(at: consumed, "a line longer than \(KexInitParser.maxLineLength) bytes before the SSH identification line\(firstLine.map { " (its first line: '\($0)')" } ?? "")")
                }
                var line = buffer[..<nl]
                if line.last == 0x0D { line = line.dropLast() }
                let text = String(decoding: line, as: UTF8.self)
                buffer.removeSubrange(...nl)
                consumed += nl + 1
                if text.hasPrefix("SSH-") {
                    guard text.hasPrefix("SSH-2.0-") || text.hasPrefix("SSH-1.99-") else {
                        throw fail(at: consumed - nl - 1, "identification '\(text.prefix(80))' is not SSH protocol 2.0")
                    }
                    state = .packet(banner: text)
                } else {
                    if firstLine == nil { firstLine = String(text.prefix(60)) }
                    linesSeen += 1
                    guard linesSeen <= KexInitParser.maxPreBannerLines else {
                        throw fail(at: consumed, "more than \(KexInitParser.maxPreBannerLines) lines without an SSH identification line (got '\(text.prefix(60))')")
                    }
                }
            case .packet(let banner):
                guard buffer.count >= 5 else { return nil }
                let packetLength = Int(be32(buffer, 0))
                let paddingLength = Int(buffer[4])
                guard packetLength <= KexInitParser.maxPacketLength else {
                    throw fail(at: consumed, "packet_length \(packetLength) exceeds \(KexInitParser.maxPacketLength)")
                }
                guard paddingLength >= 4, paddingLength + 1 < packetLength else {
                    throw fail(at: consumed + 4, "padding_length \(paddingLength) does not fit packet_length \(packetLength)")
                }
                guard buffer.count >= 4 + packetLength else { return nil }
                let payload = Array(buffer[5..<(4 + packetLength - paddingLength)])
                let kexinit = try parsePayload(payload, banner: banner, base: consumed + 5)
                buffer = []
                state = .done
                return kexinit
            }
        }
    }

    private func parsePayload(_ p: [UInt8], banner: String, base: Int) throws -> KexInit {
        guard let type = p.first, type == KexInitParser.msgKexInit else {
            throw fail(at: base, "first packet is message \(p.first.map(String.init) ?? "(empty)"), expected SSH_MSG_KEXINIT (20)")
        }
        var pos = 1 + 16 // type + cookie
        guard p.count >= pos else { throw fail(at: base, "KEXINIT shorter than its 16-byte cookie") }
        let fields = ["kex_algorithms", "server_host_key_algorithms",
                      "encryption_algorithms_client_to_server", "encryption_algorithms_server_to_client",
                      "mac_algorithms_client_to_server", "mac_algorithms_server_to_client",
                      "compression_algorithms_client_to_server", "compression_algorithms_server_to_client",
                      "languages_client_to_server", "languages_server_to_client"]
        var lists: [[String]] = []
        for field in fields {
            guard p.count - pos >= 4 else { throw fail(at: base + pos, "KEXINIT ends before the length of \(field)") }
            let len = Int(be32(p, pos))
            pos += 4
            guard len <= p.count - pos else {
                throw fail(at: base + pos - 4, "\(field) length \(len) exceeds the \(p.count - pos) bytes left in the packet")
            }
            let bytes = p[pos..<(pos + len)]
            // Names are US-ASCII without controls (RFC 4251 §5); reject rather than print garbage.
            if let bad = bytes.firstIndex(where: { $0 < 0x21 || $0 > 0x7E }) {
                throw fail(at: base + bad, "\(field) contains byte 0x\(String(p[bad], radix: 16)), not a printable ASCII name")
            }
            lists.append(len == 0 ? [] : String(decoding: bytes, as: UTF8.self).split(separator: ",", omittingEmptySubsequences: false).map(String.init))
            pos += len
        }
        return KexInit(serverBanner: banner, kex: lists[0], hostKey: lists[1],
                       ciphersClientToServer: lists[2], ciphersServerToClient: lists[3],
                       macsClientToServer: lists[4], macsServerToClient: lists[5],
                       compressionClientToServer: lists[6], compressionServerToClient: lists[7])
    }

    private func be32<C: RandomAccessCollection>(_ b: C, _ at: Int) -> UInt32 where C.Element == UInt8, C.Index == Int {
        let s = b.startIndex + at
        return UInt32(b[s]) << 24 | UInt32(b[s + 1]) << 16 | UInt32(b[s + 2]) << 8 | UInt32(b[s + 3])
    }

    private func fail(at offset: Int, _ reason: String) -> VZError {
        VZError(.protocolViolation, "SSH server \(peer): byte \(offset) of its greeting: \(reason)")
    }
}
