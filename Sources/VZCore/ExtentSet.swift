/// A set of disjoint, sorted, coalesced extents. The currency between the planners: active
/// extents (ABM), changed extents (CBT), known-zero extents.
public struct ExtentSet: Equatable, Sendable, Sequence {
    public private(set) var extents: [Extent] = []

    public init() {}

    public init<S: Sequence>(_ items: S) where S.Element == Extent {
        for e in items { insert(e) }
    }

    public var isEmpty: Bool { extents.isEmpty }
    public var totalLength: UInt64 { extents.reduce(0) { $0 + $1.length } }
    public func makeIterator() -> IndexingIterator<[Extent]> { extents.makeIterator() }

    /// Adds an extent, merging with neighbours it overlaps or touches.
    public mutating func insert(_ e: Extent) {
        guard !e.isEmpty else { return }
        // Fast path: appending in order, which is how scanners produce extents.
        if let last = extents.last, e.offset >= last.offset {
            if e.offset <= last.end {
                extents[extents.count - 1].length = Swift.max(last.end, e.end) - last.offset
            } else {
                extents.append(e)
            }
            return
        }
        var lo = e.offset, hi = e.end
        var result: [Extent] = []
        result.reserveCapacity(extents.count + 1)
        var placed = false
        for x in extents {
            if x.end < lo {
                result.append(x)
            } else if x.offset > hi {
                if !placed { result.append(Extent(offset: lo, length: hi - lo)); placed = true }
                result.append(x)
            } else {
                lo = Swift.min(lo, x.offset); hi = Swift.max(hi, x.end)
            }
        }
        if !placed { result.append(Extent(offset: lo, length: hi - lo)) }
        extents = result
    }

    public func intersection(_ other: ExtentSet) -> ExtentSet {
        var out = ExtentSet()
        var i = 0, j = 0
        let a = extents, b = other.extents
        while i < a.count && j < b.count {
            if let x = a[i].intersection(b[j]) { out.extents.append(x) }
            if a[i].end < b[j].end { i += 1 } else { j += 1 }
        }
        return out
    }

    /// True when every byte of `e` is in the set.
    public func covers(_ e: Extent) -> Bool {
        if e.isEmpty { return true }
        // Binary search for the last extent starting at or before e.offset.
        var lo = 0, hi = extents.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if extents[mid].offset <= e.offset { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return false }
        return extents[lo - 1].contains(e)
    }
}
