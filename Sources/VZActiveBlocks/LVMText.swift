/// The LVM2 metadata text (`vg { extent_size = 8192 physical_volumes { ... } ... }`): a tiny
/// tokenizer and tree for names, `=`, `{}`, `[ , ]`, strings, integers and `#` comments.
indirect enum LVMNode: Equatable {
    case section([(String, LVMNode)])
    case string(String)
    case int(Int64)
    case list([LVMNode])

    static func == (a: LVMNode, b: LVMNode) -> Bool {
        switch (a, b) {
        case let (.string(x), .string(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.list(x), .list(y)): return x == y
        case let (.section(x), .section(y)): return x.map(\.0) == y.map(\.0) && x.map(\.1) == y.map(\.1)
        default: return false
        }
    }

    subscript(_ key: String) -> LVMNode? {
        if case let .section(items) = self { return items.first { $0.0 == key }?.1 }
        return nil
    }
    var sections: [(String, LVMNode)] {
        if case let .section(items) = self { return items.filter { if case .section = $0.1 { return true }; return false } }
        return []
    }
    var int: Int64? { if case let .int(v) = self { return v }; return nil }
    var string: String? { if case let .string(v) = self { return v }; return nil }
    var list: [LVMNode]? { if case let .list(v) = self { return v }; return nil }
}

struct LVMTextParser {
    private let b: [UInt8]
    private var i = 0
    private var depth = 0
    static let maxDepth = 16

    init(_ bytes: [UInt8]) { b = bytes }

    static func parse(_ bytes: [UInt8]) throws -> LVMNode {
        var p = LVMTextParser(bytes)
        return try p.items(topLevel: true)
    }

    private mutating func skip() {
        while i < b.count {
            if b[i] == UInt8(ascii: "#") { while i < b.count && b[i] != 0x0A { i += 1 } }
            else if b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 }
            else { return }
        }
    }

    private static func isName(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D || c == 0x2E || c == 0x2B
    }

    private mutating func name() throws -> String {
        skip()
        let start = i
        while i < b.count && LVMTextParser.isName(b[i]) { i += 1 }
        guard i > start else { throw ParseFailure("LVM metadata: a name expected at byte \(i)") }
        return String(decoding: b[start..<i], as: UTF8.self)
    }

    private mutating func items(topLevel: Bool) throws -> LVMNode {
        depth += 1
        guard depth <= LVMTextParser.maxDepth else { throw ParseFailure("LVM metadata nested too deeply") }
        defer { depth -= 1 }
        var out: [(String, LVMNode)] = []
        while true {
            skip()
            if i >= b.count || b[i] == 0 {
                guard topLevel else { throw ParseFailure("LVM metadata: unterminated section") }
                return .section(out)
            }
            if b[i] == UInt8(ascii: "}") {
                guard !topLevel else { throw ParseFailure("LVM metadata: unbalanced '}'") }
                i += 1
                return .section(out)
            }
            let key = try name()
            skip()
            guard i < b.count else { throw ParseFailure("LVM metadata ends after '\(key)'") }
            if b[i] == UInt8(ascii: "{") {
                i += 1
                out.append((key, try items(topLevel: false)))
            } else if b[i] == UInt8(ascii: "=") {
                i += 1
                out.append((key, try value()))
            } else {
                throw ParseFailure("LVM metadata: '=' or '{' expected after '\(key)'")
            }
        }
    }

    private mutating func value() throws -> LVMNode {
        skip()
        guard i < b.count else { throw ParseFailure("LVM metadata: a value expected") }
        if b[i] == UInt8(ascii: "\"") {
            i += 1
            var s: [UInt8] = []
            while i < b.count && b[i] != UInt8(ascii: "\"") {
                if b[i] == UInt8(ascii: "\\"), i + 1 < b.count { i += 1 }
                s.append(b[i]); i += 1
            }
            guard i < b.count else { throw ParseFailure("LVM metadata: unterminated string") }
            i += 1
            return .string(String(decoding: s, as: UTF8.self))
        }
        if b[i] == UInt8(ascii: "[") {
            i += 1
            var out: [LVMNode] = []
            while true {
                skip()
                guard i < b.count else { throw ParseFailure("LVM metadata: unterminated list") }
                if b[i] == UInt8(ascii: "]") { i += 1; return .list(out) }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                guard b[i] != UInt8(ascii: "[") else { throw ParseFailure("LVM metadata: nested list") }
                out.append(try value())
                guard out.count <= 1 << 16 else { throw ParseFailure("LVM metadata: list too long") }
            }
        }
        let start = i
        if i < b.count && b[i] == UInt8(ascii: "-") { i += 1 }
        while i < b.count && b[i] >= 0x30 && b[i] <= 0x39 { i += 1 }
        guard let v = Int64(String(decoding: b[start..<i], as: UTF8.self)) else {
            throw ParseFailure("LVM metadata: a value expected at byte \(start)")
        }
        return .int(v)
    }
}
