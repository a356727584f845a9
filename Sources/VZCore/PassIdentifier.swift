/// The id of one pass: a UUID the source makes (`UUID().uuidString`, lowercased) and sends to the
/// target in `hello` (protocol version 3), so that `grep pass=ID` over both agents' logs tells
/// that pass's story. The target uses its 16 bytes as the undo journal's pass id.
public enum PassIdentifier {
    /// 8-4-4-4-12 hexadecimal digits.
    public static func isValid(_ s: String) -> Bool { bytes(of: s) != nil }

    /// The 16 bytes of a UUID string, or nil when it is not one.
    public static func bytes(of s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count == 36 else { return nil }
        var out: [UInt8] = []
        var i = 0
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            case 0x41...0x46: return c - 0x41 + 10
            default: return nil
            }
        }
        while i < 36 {
            if [8, 13, 18, 23].contains(i) {
                guard u[i] == 0x2D else { return nil }
                i += 1
                continue
            }
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    /// The lowercase 8-4-4-4-12 form of 16 bytes.
    public static func string(of bytes: [UInt8]) -> String {
        let hex = bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }
        return [0..<4, 4..<6, 6..<8, 8..<10, 10..<16].map { hex[$0].joined() }.joined(separator: "-")
    }
}

extension PassIdentifier {
    /// A new random pass id (version-4 UUID), lowercase.
    public static func make() -> String {
        var g = SystemRandomNumberGenerator()
        var b: [UInt8] = []
        for _ in 0..<2 { let v = g.next() as UInt64; for i in 0..<8 { b.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
        b[6] = (b[6] & 0x0F) | 0x40  // version 4
        b[8] = (b[8] & 0x3F) | 0x80  // RFC 4122 variant
        return string(of: b)
    }
}
