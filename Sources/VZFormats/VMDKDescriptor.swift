import VZCore

/// A VMDK text descriptor as a source disk has it (VMDK-FORMATS.md §1): a separate small file,
/// or the region embedded in a sparse extent. Parsed from bytes; every error is `.sourceIO` and
/// names the file and the field.
public struct VMDKDescriptor: Equatable, Sendable {
    public enum Access: String, Sendable { case rw = "RW", rdonly = "RDONLY", noaccess = "NOACCESS" }

    /// The extent types this reader knows. ESXi's RDM types are refused by name.
    public enum ExtentType: String, Sendable, CaseIterable {
        case flat = "FLAT", vmfs = "VMFS", sparse = "SPARSE", zero = "ZERO"
        case vmfsSparse = "VMFSSPARSE", seSparse = "SESPARSE"
    }

    public struct Extent: Equatable, Sendable {
        public var access: Access
        public var sectors: UInt64
        public var type: ExtentType
        /// The file as written (quoted in the descriptor); nil for ZERO.
        public var fileName: String?
        /// FLAT only: the first sector inside the file.
        public var offsetSectors: UInt64
    }

    public var version: Int
    public var cid: UInt32
    public var parentCID: UInt32
    public var createType: String
    public var parentFileNameHint: String?
    public var extents: [Extent]
    /// `ddb.*` entries, keys lowercased.
    public var ddb: [String: String]

    /// parentCID of a base disk.
    public static let noParent: UInt32 = 0xFFFF_FFFF
    /// More is not a descriptor (real ones are < 2 KiB; qemu embeds 10 KiB).
    public static let maxBytes = 1 << 20
    /// ESXi links have one extent; a hosted split disk of the largest size at 2 GiB per extent
    /// has 32768. Anything beyond is refused before it costs memory.
    public static let maxExtents = 65536
    /// 2^41 sectors = 1 PiB: larger extents are absurd, and sectors * 512 stays far from overflow.
    public static let maxSectors: UInt64 = 1 << 41

    public var capacitySectors: UInt64 { extents.reduce(0) { $0 + $1.sectors } }
    public var capacity: UInt64 { capacitySectors * 512 }
    public var hasParent: Bool { parentCID != VMDKDescriptor.noParent || parentFileNameHint != nil }

    public init(version: Int = 1, cid: UInt32, parentCID: UInt32 = VMDKDescriptor.noParent, createType: String,
                parentFileNameHint: String? = nil, extents: [Extent], ddb: [String: String] = [:]) {
        self.version = version; self.cid = cid; self.parentCID = parentCID; self.createType = createType
        self.parentFileNameHint = parentFileNameHint; self.extents = extents; self.ddb = ddb
    }

    /// True when `bytes` (the start of a file) look like a text descriptor: printable text
    /// holding a `createType` line or the conventional first comment.
    public static func looksLikeDescriptor(_ bytes: some Collection<UInt8>) -> Bool {
        let head = Array(bytes.prefix(4096).filter { $0 != 0 })
        guard !head.isEmpty, head.allSatisfy({ $0 == 9 || $0 == 10 || $0 == 13 || ($0 >= 32 && $0 != 127) || $0 >= 128 }) else {
            return false
        }
        let text = String(decoding: head, as: UTF8.self).lowercased()
        return text.hasPrefix("# disk descriptorfile") || text.contains("createtype=") || text.contains("createtype =")
    }

    /// Parses a descriptor; it ends at the first NUL (qemu's padding and leftovers, an embedded
    /// region's padding).
    public static func parse(_ bytes: some Collection<UInt8>, fileName: String) throws -> VMDKDescriptor {
        func fail(_ field: String, _ why: String) -> VZError {
            VZError(.sourceIO, "\(fileName): descriptor field '\(field)': \(why)")
        }
        guard bytes.count <= maxBytes else {
            throw VZError(.sourceIO, "\(fileName): descriptor of \(bytes.count) bytes is larger than \(maxBytes): not a VMDK descriptor")
        }
        var raw = Array(bytes)
        // The text ends at the first NUL, as for qemu and VMware. What follows is padding, or
        // stale text: qemu rewrites the CID in place with "%x" (no leading zeros) and writes the
        // whole buffer back, so a shorter CID leaves the old descriptor's last bytes behind it.
        if let firstNul = raw.firstIndex(of: 0) { raw.removeSubrange(firstNul...) }
        if raw.starts(with: [0xEF, 0xBB, 0xBF]) { raw.removeFirst(3) }  // a UTF-8 byte order mark
        let isASCII = raw.allSatisfy { $0 < 0x80 }
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw VZError(.sourceIO, "\(fileName): descriptor is not UTF-8 text (other encodings are not read; convert the file names to UTF-8)")
        }
        var version: Int?
        var cid: UInt32?
        var parentCID: UInt32?
        var createType: String?
        var hint: String?
        var extents: [Extent] = []
        var ddb: [String: String] = [:]
        var lineNumber = 0
        // "\r\n" is one Character in Swift: split on it as well as on "\n" (and a lone "\r").
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            lineNumber += 1
            var line = Substring(rawLine)
            if line.last == "\r" { line = line.dropLast() }
            let trimmed = line.trimmingSpaces()
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let upper = trimmed.prefix(while: { $0 != " " && $0 != "\t" })
            if let access = Access(rawValue: String(upper)) {
                guard extents.count < maxExtents else { throw fail("extents", "more than \(maxExtents) extent lines") }
                extents.append(try parseExtent(trimmed, access: access, line: lineNumber, fileName: fileName))
                continue
            }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw VZError(.sourceIO, "\(fileName): descriptor line \(lineNumber) '\(trimmed.prefix(80))' is neither 'key=value' nor an extent")
            }
            let key = Substring(trimmed[..<eq]).trimmingSpaces().lowercased()
            let value = Substring(trimmed[trimmed.index(after: eq)...]).trimmingSpaces()
            let unquoted = Substring(value).trimmingCharacters(quote: "\"")
            switch key {
            case "version":
                guard let v = Int(unquoted), (1...3).contains(v) else { throw fail("version", "'\(value)' is not 1, 2 or 3") }
                version = v
            case "cid":
                cid = try hex32(unquoted, field: "CID", fail)
            case "parentcid":
                parentCID = try hex32(unquoted, field: "parentCID", fail)
            case "createtype":
                createType = unquoted
            case "parentfilenamehint":
                guard !unquoted.isEmpty else { throw fail("parentFileNameHint", "is empty") }
                hint = unquoted
            default:
                if key.hasPrefix("ddb.") { ddb[key] = unquoted }
                // encoding, isNativeSnapshot, changeTrackPath and the like: read, not needed.
                // Another charset (Workstation on Windows writes windows-1252) is fine as long as
                // the text is ASCII, where all of them agree; otherwise names could be misread.
                if key == "encoding" || key == "ddb.encoding" {
                    let enc = unquoted.lowercased()
                    guard enc == "utf-8" || enc == "utf8" || isASCII else {
                        throw fail(key == "encoding" ? "encoding" : "ddb.encoding",
                                   "'\(unquoted)' with non-ASCII text is not read (UTF-8 only); rewrite the descriptor in UTF-8")
                    }
                }
            }
        }
        guard let c = cid else { throw fail("CID", "missing") }
        guard let type = createType else { throw fail("createType", "missing") }
        guard !extents.isEmpty else { throw fail("extents", "the descriptor has no extent line") }
        var total: UInt64 = 0
        for e in extents {
            total += e.sectors  // each ≤ 2^41 and at most 65536 of them: no overflow
        }
        guard total <= maxSectors else { throw fail("extents", "\(total) sectors in all is larger than 1 PiB") }
        return VMDKDescriptor(version: version ?? 1, cid: c, parentCID: parentCID ?? noParent, createType: type,
                              parentFileNameHint: hint, extents: extents, ddb: ddb)
    }

    private static func hex32(_ s: String, field: String, _ fail: (String, String) -> VZError) throws -> UInt32 {
        guard !s.isEmpty, s.count <= 8, let v = UInt32(s, radix: 16) else { throw fail(field, "'\(s)' is not 1 to 8 hex digits") }
        return v
    }

    /// `ACCESS SECTORS TYPE ["FILENAME" [OFFSET]]`
    private static func parseExtent(_ line: String, access: Access, line number: Int, fileName: String) throws -> Extent {
        func fail(_ why: String) -> VZError {
            VZError(.sourceIO, "\(fileName): extent on line \(number) '\(line.prefix(120))': \(why)")
        }
        var rest = Substring(line).dropFirst(access.rawValue.count)
        func word() -> Substring? {
            rest = rest.drop(while: { $0 == " " || $0 == "\t" })
            guard !rest.isEmpty else { return nil }
            let w = rest.prefix(while: { $0 != " " && $0 != "\t" })
            rest = rest.dropFirst(w.count)
            return w
        }
        guard let sectorsWord = word(), let sectors = UInt64(sectorsWord) else { throw fail("field 'sectors' is not a number") }
        guard sectors > 0, sectors <= maxSectors else { throw fail("field 'sectors': \(sectors) is not between 1 and 2^41 (1 PiB)") }
        guard let typeWord = word() else { throw fail("field 'type' is missing") }
        guard let type = ExtentType(rawValue: typeWord.uppercased()) else {
            throw fail("field 'type': '\(typeWord)' is not read (FLAT, VMFS, SPARSE, ZERO, VMFSSPARSE, SESPARSE)")
        }
        var name: String?
        rest = rest.drop(while: { $0 == " " || $0 == "\t" })
        if rest.first == "\"" {
            let afterQuote = rest.dropFirst()
            guard let close = afterQuote.firstIndex(of: "\"") else { throw fail("field 'fileName' has no closing quote") }
            name = String(afterQuote[..<close])
            rest = afterQuote[afterQuote.index(after: close)...]
            guard !(name!.isEmpty) else { throw fail("field 'fileName' is empty") }
        } else if !rest.isEmpty {
            throw fail("field 'fileName' is not quoted")
        }
        var offset: UInt64 = 0
        if let o = word() {
            guard let v = UInt64(o), v <= maxSectors else { throw fail("field 'offset': '\(o)' is not a sector number") }
            offset = v
        }
        // Device extents may go on with a partition UUID and a device id: not used.
        switch type {
        case .zero:
            guard name == nil else { throw fail("a ZERO extent has no file") }
        default:
            guard name != nil else { throw fail("field 'fileName' is missing") }
        }
        if type != .flat && offset != 0 { throw fail("field 'offset' is only allowed for FLAT extents") }
        return Extent(access: access, sectors: sectors, type: type, fileName: name, offsetSectors: offset)
    }
}
