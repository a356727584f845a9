/// Per-block content summary of a disk: for each block, whether it is all zeros, has data with a
/// known SHA-256, or is unknown. Stored compactly (one kind byte and 32 hash bytes a block), since
/// a 2 TiB disk at 1 MiB blocks has two million entries.
public struct BlockMap: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        /// Nothing is known: never matches, so the block is always sent.
        case unknown = 0
        case data = 1
        case zero = 2
    }

    public struct Entry: Equatable, Sendable {
        public static let encodedSize = 33
        public static let unknown = Entry(kind: .unknown, hash: SHA256Digest.zero)
        public static let zero = Entry(kind: .zero, hash: SHA256Digest.zero)
        public var kind: Kind
        public var hash: SHA256Digest
        public init(kind: Kind, hash: SHA256Digest) { self.kind = kind; self.hash = kind == .data ? hash : .zero }

        public static func data(_ hash: SHA256Digest) -> Entry { Entry(kind: .data, hash: hash) }

        public func encode(into w: inout ByteWriter) {
            w.u8(kind.rawValue)
            hash.append(to: &w)
        }

        public static func decode(_ r: inout ByteReader, field: String) throws -> Entry {
            let k = try r.u8(field + ".kind")
            guard let kind = Kind(rawValue: k) else { throw r.fail(field + ".kind", "unknown kind \(k)") }
            let h = SHA256Digest(try r.raw(32, field + ".hash"))
            if kind != .data && h != .zero { throw r.fail(field + ".hash", "must be zero for a \(kind) entry") }
            return Entry(kind: kind, hash: h)
        }
    }

    public let blockSize: UInt32
    public let capacity: UInt64
    private var kinds: [UInt8]
    private var hashes: [SHA256Digest]

    public init(blockSize: UInt32, capacity: UInt64, filledWith entry: Entry = .unknown) {
        self.blockSize = blockSize
        self.capacity = capacity
        let n = Int(BlockMap.blockCount(capacity: capacity, blockSize: blockSize))
        kinds = Array(repeating: entry.kind.rawValue, count: n)
        hashes = Array(repeating: entry.hash, count: n)
    }

    public static func blockCount(capacity: UInt64, blockSize: UInt32) -> UInt64 {
        // Not (capacity + blockSize - 1) / blockSize: a capacity from a corrupt file may be near 2^64.
        capacity / UInt64(blockSize) + (capacity % UInt64(blockSize) == 0 ? 0 : 1)
    }

    public var count: Int { kinds.count }

    public subscript(index: Int) -> Entry {
        get { Entry(kind: Kind(rawValue: kinds[index]) ?? .unknown, hash: hashes[index]) }
        set { kinds[index] = newValue.kind.rawValue; hashes[index] = newValue.hash }
    }

    /// The extent of block `index` (the last block may be short).
    public func extent(ofBlock index: Int) -> Extent {
        let off = UInt64(index) * UInt64(blockSize)
        return Extent(offset: off, length: min(UInt64(blockSize), capacity - off))
    }
}

/// A SHA-256 digest as a value (four words, so maps of millions of entries stay compact and
/// comparisons are cheap).
public struct SHA256Digest: Hashable, Sendable, CustomStringConvertible {
    public var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64
    public static let zero = SHA256Digest(w0: 0, w1: 0, w2: 0, w3: 0)

    public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3
    }

    /// From 32 bytes in digest order.
    public init<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        precondition(bytes.count == 32, "a SHA-256 digest has 32 bytes")
        var words: [UInt64] = [0, 0, 0, 0]
        for (i, b) in bytes.enumerated() { words[i / 8] |= UInt64(b) << (8 * (i % 8)) }
        self.init(w0: words[0], w1: words[1], w2: words[2], w3: words[3])
    }

    public var bytes: [UInt8] {
        var w = ByteWriter(capacity: 32)
        append(to: &w)
        return w.bytes
    }

    public func append(to w: inout ByteWriter) { w.u64(w0); w.u64(w1); w.u64(w2); w.u64(w3) }

    public var description: String { bytes.map { String(format2: $0) }.joined() }
}

extension String {
    init(format2 b: UInt8) {
        let hex = Array("0123456789abcdef")
        self = String([hex[Int(b >> 4)], hex[Int(b & 0xF)]])
    }
}
