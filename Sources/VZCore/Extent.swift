/// A byte range of a disk: `[offset, offset + length)`.
public struct Extent: Hashable, Sendable, CustomStringConvertible {
    public var offset: UInt64
    public var length: UInt64

    public init(offset: UInt64, length: UInt64) {
        self.offset = offset
        self.length = length
    }

    public var end: UInt64 { offset + length }
    public var isEmpty: Bool { length == 0 }

    public func intersection(_ other: Extent) -> Extent? {
        let lo = max(offset, other.offset), hi = min(end, other.end)
        return lo < hi ? Extent(offset: lo, length: hi - lo) : nil
    }

    public func contains(_ other: Extent) -> Bool { other.offset >= offset && other.end <= end }

    public var description: String { "[\(offset), +\(length))" }
}
