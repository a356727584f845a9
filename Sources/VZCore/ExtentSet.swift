/// A set of disjoint, sorted, coalesced extents. The currency between the planners: active
/// extents (ABM), changed extents (CBT), known-zero extents.
public struct ExtentSet: Equatable, Sendable, Sequence {
    public private(set) var extents: [Extent] = []

    public init() {}

    public init<S: Sequence>(_ items: S) where S.Element == Extent {
        for e in items { insert(e) }
    }

    /// Wraps extents that are already canonical (sorted, disjoint, not touching, none empty).
    private init(canonical: [Extent]) { extents = canonical }

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

    /// The parts of the set's extents that lie inside `e`, in order (a binary search, then a walk
    /// over just those extents).
    public func pieces(within e: Extent) -> [Extent] {
        guard !e.isEmpty else { return [] }
        var lo = 0, hi = extents.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if extents[mid].end <= e.offset { lo = mid + 1 } else { hi = mid }
        }
        var out: [Extent] = []
        var i = lo
        while i < extents.count && extents[i].offset < e.end {
            if let x = extents[i].intersection(e) { out.append(x) }
            i += 1
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

// The algebra the pass planner combines sets with. Every operation walks the sorted extents of
// its operands once (linear in the number of extents, never in bytes or blocks), and no
// arithmetic can overflow: an extent ends at most at UInt64.max, and nothing adds past an end.
extension ExtentSet {
    /// Appends an extent that starts at or after the start of the last one, merging when they
    /// overlap or touch: how the linear merges below build their result.
    private mutating func appendInOrder(_ e: Extent) {
        guard !e.isEmpty else { return }
        if let last = extents.last, e.offset <= last.end {
            if e.end > last.end { extents[extents.count - 1].length = e.end - last.offset }
        } else {
            extents.append(e)
        }
    }

    /// Every byte that is in either set.
    public func union(_ other: ExtentSet) -> ExtentSet {
        let a = extents, b = other.extents
        var out = ExtentSet()
        out.extents.reserveCapacity(a.count + b.count)
        var i = 0, j = 0
        while i < a.count || j < b.count {
            if j == b.count || (i < a.count && a[i].offset <= b[j].offset) {
                out.appendInOrder(a[i]); i += 1
            } else {
                out.appendInOrder(b[j]); j += 1
            }
        }
        return out
    }

    /// The bytes of this set that are not in `other`.
    public func subtracting(_ other: ExtentSet) -> ExtentSet {
        let b = other.extents
        var out: [Extent] = []
        var j = 0  // the first extent of `other` that may still cut the current extent
        for x in extents {
            var lo = x.offset
            let hi = x.end
            while j < b.count && b[j].end <= lo { j += 1 }
            while j < b.count && b[j].offset < hi {
                if b[j].offset > lo { out.append(Extent(offset: lo, length: b[j].offset - lo)) }
                lo = Swift.max(lo, b[j].end)
                // An extent of `other` reaching past this one may cut the next one too: keep it.
                if b[j].end >= hi { break }
                j += 1
            }
            if lo < hi { out.append(Extent(offset: lo, length: hi - lo)) }
        }
        // Pieces of one extent are separated by a non-empty extent of `other`, pieces of two by
        // the gap between them: the result is canonical as built.
        return ExtentSet(canonical: out)
    }

    /// The bytes of `range` that are not in the set.
    public func complement(within range: Extent) -> ExtentSet {
        var out: [Extent] = []
        var pos = range.offset
        let end = range.end
        for x in extents where x.end > pos {
            if x.offset >= end { break }
            if x.offset > pos { out.append(Extent(offset: pos, length: x.offset - pos)) }
            pos = x.end
            if pos >= end { break }
        }
        if pos < end { out.append(Extent(offset: pos, length: end - pos)) }
        return ExtentSet(canonical: out)
    }

    /// The blocks of a disk of `capacity` bytes, cut into blocks of `blockSize`, that any byte of
    /// the set touches, as block-aligned extents; the last block of the disk is short when the
    /// capacity is not a multiple of the block size, and bytes at or past `capacity` touch no block.
    public func blocksTouched(ofSize blockSize: UInt64, capacity: UInt64) -> ExtentSet {
        precondition(blockSize > 0, "a block has at least one byte")
        var out = ExtentSet()
        for x in extents {
            guard x.offset < capacity else { break }
            let end = Swift.min(x.end, capacity)
            let first = x.offset - x.offset % blockSize
            let tail = end % blockSize
            // The end of the block holding byte end-1, clipped to the capacity, without computing
            // a block end past UInt64.max.
            let last = tail == 0 ? end : (capacity - (end - tail) <= blockSize ? capacity : end - tail + blockSize)
            out.appendInOrder(Extent(offset: first, length: last - first))
        }
        return out
    }
}
