/// logfmt, as both agents' log lines use it (Docs/operations.md, "Reading the logs"): `key=value`
/// pairs separated by one space. A value is written bare when it is non-empty and holds only
/// printable characters other than space, `"`, `=` and `\`; otherwise it is quoted, with `\\`,
/// `\"`, `\n`, `\r`, `\t` and every other control or line-separating character escaped (`\x1b`,
/// `\u2028`, Go's `strconv.Quote` style). So no text — from the wire, a file name, a peer's error
/// — can end a line or start a field of its own.
public enum Logfmt {
    /// One line (no newline) of `fields`, in the order given.
    public static func line(_ fields: [(key: String, value: String)]) -> String {
        fields.map { "\(key($0.key))=\(value($0.value))" }.joined(separator: " ")
    }

    /// A key: letters, digits and `_ . - /` are kept, anything else becomes `_` (a key is never quoted).
    public static func key(_ k: String) -> String {
        guard !k.isEmpty else { return "_" }
        var out = String.UnicodeScalarView()
        for u in k.unicodeScalars {
            let ok = (u >= "a" && u <= "z") || (u >= "A" && u <= "Z") || (u >= "0" && u <= "9") || "_.-/".unicodeScalars.contains(u)
            out.append(ok ? u : "_")
        }
        return String(out)
    }

    /// A value, bare or quoted.
    public static func value(_ v: String) -> String {
        if !v.isEmpty && !v.unicodeScalars.contains(where: { needsQuoting($0) }) { return v }
        var out = String.UnicodeScalarView()
        out.append("\"")
        for u in v.unicodeScalars {
            switch u {
            case "\\": out.append(contentsOf: "\\\\".unicodeScalars)
            case "\"": out.append(contentsOf: "\\\"".unicodeScalars)
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\r": out.append(contentsOf: "\\r".unicodeScalars)
            case "\t": out.append(contentsOf: "\\t".unicodeScalars)
            default:
                if isControl(u) {
                    let hex = String(u.value, radix: 16)
                    let escape = u.value < 0x80 ? "\\x" + String(repeating: "0", count: 2 - hex.count) + hex
                                                : "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                    out.append(contentsOf: escape.unicodeScalars)
                } else {
                    out.append(u)
                }
            }
        }
        out.append("\"")
        return String(out)
    }

    /// C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
    static func isControl(_ u: Unicode.Scalar) -> Bool {
        u.value < 0x20 || (0x7F...0x9F).contains(u.value) || u.value == 0x2028 || u.value == 0x2029
    }

    static func needsQuoting(_ u: Unicode.Scalar) -> Bool {
        isControl(u) || u == " " || u == "\"" || u == "=" || u == "\\"
    }
}
