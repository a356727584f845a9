/// Little-endian field-by-field encoding. Every on-wire and on-disk format of vzrepl is written
/// with `ByteWriter` and read with `ByteReader`, never by copying a struct.
public struct ByteWriter {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { append(v) }
    public mutating func u32(_ v: UInt32) { append(v) }
    public mutating func u64(_ v: UInt64) { append(v) }

    private mutating func append<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func raw<C: Collection>(_ data: C) where C.Element == UInt8 { bytes.append(contentsOf: data) }
    public mutating func raw(_ data: UnsafeRawBufferPointer) { bytes.append(contentsOf: data) }

    /// A string as u16 length + UTF-8 bytes; a longer one is cut at a character boundary (never
    /// in the middle of a UTF-8 sequence, which the reader would refuse).
    public mutating func string(_ s: String) {
        var utf8 = Array(s.utf8.prefix(Int(UInt16.max) + 1))
        if utf8.count > Int(UInt16.max) {
            var end = Int(UInt16.max)
            while end > 0 && utf8[end] & 0xC0 == 0x80 { end -= 1 }  // utf8[end] starts the first dropped character
            utf8.removeSubrange(end...)
        }
        u16(UInt16(utf8.count))
        raw(utf8)
    }

    /// Overwrites 4 bytes at `offset` (used to patch a length field after the fact).
    public mutating func patchU32(at offset: Int, _ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { src in
            for i in 0..<4 { bytes[offset + i] = src[i] }
        }
    }
}

/// Reads little-endian fields from bytes it is given, throwing a `VZError` that names the
/// context (file or frame), the field and the byte offset where that field starts, when the
/// bytes run out or a value is out of range.
public struct ByteReader {
    public let bytes: ArraySlice<UInt8>
    public private(set) var position: Int
    public let context: String
    public let errorKind: VZError.Kind
    /// The field read last and the offset it starts at, so that a value rejected after it was
    /// read is reported at its own offset, not at the byte after it.
    private var lastField: (name: String, offset: Int)?

    public init(_ bytes: ArraySlice<UInt8>, context: String, errorKind: VZError.Kind = .protocolViolation) {
        self.bytes = bytes
        self.position = bytes.startIndex
        self.context = context
        self.errorKind = errorKind
    }

    public init(_ bytes: [UInt8], context: String, errorKind: VZError.Kind = .protocolViolation) {
        self.init(bytes[...], context: context, errorKind: errorKind)
    }

    public var remaining: Int { bytes.endIndex - position }
    public var offset: Int { position - bytes.startIndex }

    /// An error naming `field` at the offset it starts: the offset it was read from when it is
    /// the field read last, else the current offset (a field not read yet would start there).
    public func fail(_ field: String, _ reason: String) -> VZError {
        let at = lastField.flatMap { $0.name == field ? $0.offset : nil } ?? offset
        return VZError(errorKind, "\(context): field '\(field)' at byte \(at): \(reason)")
    }

    private mutating func take(_ n: Int, _ field: String) throws -> ArraySlice<UInt8> {
        lastField = (field, offset)
        guard n >= 0, remaining >= n else {
            throw fail(field, "needs \(n) bytes, only \(remaining) left (truncated)")
        }
        defer { position += n }
        return bytes[position..<position + n]
    }

    private mutating func int<T: FixedWidthInteger>(_ field: String) throws -> T {
        let s = try take(MemoryLayout<T>.size, field)
        var v: T = 0
        for (i, b) in s.enumerated() { v |= T(b) << (8 * i) }
        return v
    }

    public mutating func u8(_ field: String) throws -> UInt8 { try int(field) }
    public mutating func u16(_ field: String) throws -> UInt16 { try int(field) }
    public mutating func u32(_ field: String) throws -> UInt32 { try int(field) }
    public mutating func u64(_ field: String) throws -> UInt64 { try int(field) }

    public mutating func raw(_ n: Int, _ field: String) throws -> ArraySlice<UInt8> { try take(n, field) }

    /// A string as u16 length + UTF-8 bytes; errors about it name the offset of its length.
    public mutating func string(_ field: String, maxLength: Int = 4096) throws -> String {
        let start = offset
        let n = Int(try u16(field + ".length"))
        lastField = (field, start)
        guard n <= maxLength else { throw fail(field, "length \(n) exceeds the limit of \(maxLength)") }
        let s = try take(n, field)
        lastField = (field, start)
        guard let str = String(validating: s, as: UTF8.self) else { throw fail(field, "not valid UTF-8") }
        return str
    }

    /// Requires that every byte was consumed: trailing garbage is an error, not ignored.
    public func expectEnd() throws {
        guard remaining == 0 else { throw fail("(end)", "\(remaining) unexpected trailing bytes") }
    }
}
