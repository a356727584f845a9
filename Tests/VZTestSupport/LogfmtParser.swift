/// A strict logfmt reader for the tests, written from the rules (not from the agents' writer):
/// `key=value` pairs separated by single spaces; a key is a run of characters other than space,
/// `=` and `"`; a value is bare (no space, `"`, `=`, `\`) or quoted with the escapes `\\ \" \n \r
/// \t \xHH \uHHHH`. A raw control character anywhere, a duplicate key or anything else is an error.
public enum LogfmtParser {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The fields of one line, in order.
    public static func parse(_ line: String) throws -> [(key: String, value: String)] {
        let s = Array(line.unicodeScalars)
        var i = 0
        var out: [(key: String, value: String)] = []
        func fail(_ why: String) -> Failure { Failure(description: "column \(i): \(why) in \(line)") }
        for u in s where u.value < 0x20 || (0x7F...0x9F).contains(u.value) || u.value == 0x2028 || u.value == 0x2029 {
            throw Failure(description: "raw control character U+\(String(u.value, radix: 16)) in \(line)")
        }
        while i < s.count {
            if !out.isEmpty {
                guard s[i] == " " else { throw fail("expected a space") }
                i += 1
            }
            var key = ""
            while i < s.count, s[i] != "=", s[i] != " ", s[i] != "\"" { key.unicodeScalars.append(s[i]); i += 1 }
            guard !key.isEmpty else { throw fail("empty key") }
            guard i < s.count, s[i] == "=" else { throw fail("expected '=' after key \(key)") }
            i += 1
            var value = ""
            if i < s.count, s[i] == "\"" {
                i += 1
                var closed = false
                while i < s.count {
                    let c = s[i]
                    if c == "\"" { closed = true; i += 1; break }
                    if c == "\\" {
                        guard i + 1 < s.count else { throw fail("dangling backslash") }
                        let e = s[i + 1]
                        i += 2
                        switch e {
                        case "\\": value += "\\"
                        case "\"": value += "\""
                        case "n": value += "\n"
                        case "r": value += "\r"
                        case "t": value += "\t"
                        case "x", "u":
                            let n = e == "x" ? 2 : 4
                            guard i + n <= s.count, let v = UInt32(String(String.UnicodeScalarView(s[i..<i + n])), radix: 16),
                                  let scalar = Unicode.Scalar(v) else { throw fail("bad \\\(e) escape") }
                            value.unicodeScalars.append(scalar)
                            i += n
                        default: throw fail("unknown escape \\\(e)")
                        }
                        continue
                    }
                    value.unicodeScalars.append(c)
                    i += 1
                }
                guard closed else { throw fail("unterminated quote") }
            } else {
                while i < s.count, s[i] != " " {
                    guard s[i] != "\"", s[i] != "=", s[i] != "\\" else { throw fail("'\(s[i])' in a bare value") }
                    value.unicodeScalars.append(s[i]); i += 1
                }
                guard !value.isEmpty else { throw fail("empty bare value for \(key)") }
            }
            guard !out.contains(where: { $0.key == key }) else { throw fail("duplicate key \(key)") }
            out.append((key, value))
        }
        return out
    }

    /// The fields of one line as a dictionary.
    public static func fields(_ line: String) throws -> [String: String] {
        Dictionary(uniqueKeysWithValues: try parse(line).map { ($0.key, $0.value) })
    }
}
