import XCTest
@testable import VZCore

/// union, subtracting, complement and blocksTouched against brute-force oracles: a bitmap of a
/// small universe (one Bool per byte) and a per-block scan. Every random test runs twice: once at
/// the bottom of the 64-bit range and once ending exactly at UInt64.max, where a careless `end`
/// or round-up would trap.
final class ExtentSetAlgebraTests: XCTestCase {
    private let universe = 256
    private let bases: [UInt64] = [0, UInt64.max - 256]

    private func bitmap(_ s: ExtentSet, base: UInt64) -> [Bool] {
        var b = [Bool](repeating: false, count: universe)
        for e in s {
            XCTAssertTrue(e.offset >= base && e.end - base <= UInt64(universe), "\(e) outside the universe at \(base)")
            for i in Int(e.offset - base)..<Int(e.end - base) { b[i] = true }
        }
        return b
    }

    private func randomExtent(_ rng: inout SeededRNG, base: UInt64) -> Extent {
        let off = UInt64.random(in: 0..<UInt64(universe), using: &rng)
        let len = UInt64.random(in: 0...min(UInt64(universe) - off, 40), using: &rng)
        return Extent(offset: base + off, length: len)
    }

    private func randomSet(_ rng: inout SeededRNG, base: UInt64, max: Int = 12) -> ExtentSet {
        ExtentSet((0..<Int.random(in: 0...max, using: &rng)).map { _ in randomExtent(&rng, base: base) })
    }

    /// Sorted, disjoint, not touching, none empty.
    private func assertCanonical(_ s: ExtentSet, _ context: @autoclosure () -> String = "",
                                 file: StaticString = #filePath, line: UInt = #line) {
        for e in s.extents { XCTAssertGreaterThan(e.length, 0, "\(s.extents) \(context())", file: file, line: line) }
        for (a, b) in zip(s.extents, s.extents.dropFirst()) {
            XCTAssertLessThan(a.end, b.offset, "not sorted/coalesced: \(s.extents) \(context())", file: file, line: line)
        }
    }

    func testUnionMatchesOracle() {
        for base in bases {
            var rng = SeededRNG(seed: 11)
            for _ in 0..<2000 {
                let a = randomSet(&rng, base: base), b = randomSet(&rng, base: base)
                let u = a.union(b)
                XCTAssertEqual(bitmap(u, base: base), zip(bitmap(a, base: base), bitmap(b, base: base)).map { $0 || $1 },
                               "\(a.extents) ∪ \(b.extents) = \(u.extents)")
                assertCanonical(u, "\(a.extents) ∪ \(b.extents)")
                XCTAssertEqual(u, b.union(a))
                // The same bytes inserted one by one give the same (canonical) value.
                XCTAssertEqual(u, ExtentSet(a.extents + b.extents))
            }
        }
    }

    func testSubtractingMatchesOracle() {
        for base in bases {
            var rng = SeededRNG(seed: 12)
            for _ in 0..<2000 {
                let a = randomSet(&rng, base: base), b = randomSet(&rng, base: base)
                let d = a.subtracting(b)
                XCTAssertEqual(bitmap(d, base: base), zip(bitmap(a, base: base), bitmap(b, base: base)).map { $0 && !$1 },
                               "\(a.extents) − \(b.extents) = \(d.extents)")
                assertCanonical(d, "\(a.extents) − \(b.extents)")
                XCTAssertEqual(d.union(a.intersection(b)), a)
            }
        }
    }

    func testComplementMatchesOracle() {
        for base in bases {
            var rng = SeededRNG(seed: 13)
            for _ in 0..<2000 {
                let s = randomSet(&rng, base: base)
                let r = randomExtent(&rng, base: base)
                let c = s.complement(within: r)
                let bits = bitmap(s, base: base)
                let expected = (0..<universe).map { i in
                    base + UInt64(i) >= r.offset && base + UInt64(i) < r.end && !bits[i]
                }
                XCTAssertEqual(bitmap(c, base: base), expected, "\(r) − \(s.extents) = \(c.extents)")
                assertCanonical(c, "\(r) − \(s.extents)")
                XCTAssertEqual(c, ExtentSet([r]).subtracting(s))
                XCTAssertEqual(c.complement(within: r), s.intersection(ExtentSet([r])))
            }
        }
    }

    /// The oracle looks at every block of the disk and every byte of it.
    private func touchedByBruteForce(_ s: ExtentSet, blockSize: UInt64, capacity: UInt64, base: UInt64) -> ExtentSet {
        var out = ExtentSet()
        let bits = bitmap(s, base: base)
        var touched = Set<UInt64>()
        for i in 0..<universe where bits[i] && base + UInt64(i) < capacity { touched.insert((base + UInt64(i)) / blockSize) }
        for k in touched.sorted() {
            let off = k * blockSize
            out.insert(Extent(offset: off, length: min(blockSize, capacity - off)))
        }
        return out
    }

    func testBlocksTouchedMatchesOracle() {
        for base in bases {
            var rng = SeededRNG(seed: 14)
            for _ in 0..<3000 {
                let s = randomSet(&rng, base: base)
                let blockSize = UInt64.random(in: 1...48, using: &rng)
                // Capacities below, inside and at the end of the universe; multiples of the block
                // size or not (a short last block).
                let capacity = base + UInt64.random(in: 0...UInt64(universe), using: &rng)
                let t = s.blocksTouched(ofSize: blockSize, capacity: capacity)
                XCTAssertEqual(t, touchedByBruteForce(s, blockSize: blockSize, capacity: capacity, base: base),
                               "\(s.extents) at \(blockSize) within \(capacity)")
                assertCanonical(t)
                for e in t {
                    XCTAssertEqual(e.offset % blockSize, 0, "\(e)")
                    XCTAssertTrue(e.end % blockSize == 0 || e.end == capacity, "\(e) ends inside a block")
                    XCTAssertLessThanOrEqual(e.end, capacity)
                }
            }
        }
    }

    func testEmptySets() {
        let e = ExtentSet(), a = ExtentSet([Extent(offset: 5, length: 10)])
        XCTAssertEqual(e.union(e), e)
        XCTAssertEqual(e.union(a), a)
        XCTAssertEqual(a.union(e), a)
        XCTAssertEqual(e.subtracting(a), e)
        XCTAssertEqual(a.subtracting(e), a)
        XCTAssertEqual(a.subtracting(a), e)
        XCTAssertEqual(e.complement(within: Extent(offset: 3, length: 4)).extents, [Extent(offset: 3, length: 4)])
        XCTAssertEqual(a.complement(within: Extent(offset: 7, length: 0)), e)
        XCTAssertEqual(a.complement(within: Extent(offset: 6, length: 3)), e)
        XCTAssertEqual(e.blocksTouched(ofSize: 4, capacity: 100), e)
        XCTAssertEqual(a.blocksTouched(ofSize: 4, capacity: 0), e)
        XCTAssertEqual(e.intersection(a), e)
        XCTAssertTrue(e.covers(Extent(offset: 9, length: 0)))
        XCTAssertFalse(e.covers(Extent(offset: 9, length: 1)))
    }

    func testTouchingExtents() {
        let left = ExtentSet([Extent(offset: 0, length: 10)]), right = ExtentSet([Extent(offset: 10, length: 10)])
        XCTAssertEqual(left.union(right).extents, [Extent(offset: 0, length: 20)])
        XCTAssertEqual(left.subtracting(right), left)  // touching removes nothing
        XCTAssertEqual(left.intersection(right), ExtentSet())
        XCTAssertEqual(left.complement(within: Extent(offset: 0, length: 20)), right)
        // Two extents in one block merge; extents in touching blocks merge too.
        let s = ExtentSet([Extent(offset: 1, length: 1), Extent(offset: 6, length: 1), Extent(offset: 9, length: 1)])
        XCTAssertEqual(s.blocksTouched(ofSize: 4, capacity: 100).extents, [Extent(offset: 0, length: 12)])
        XCTAssertEqual(ExtentSet([Extent(offset: 1, length: 1), Extent(offset: 9, length: 1)]).blocksTouched(ofSize: 4, capacity: 100).extents,
                       [Extent(offset: 0, length: 4), Extent(offset: 8, length: 4)])
        // A byte at a block boundary touches only the block it is in.
        XCTAssertEqual(ExtentSet([Extent(offset: 4, length: 4)]).blocksTouched(ofSize: 4, capacity: 100).extents, [Extent(offset: 4, length: 4)])
    }

    func testPartialLastBlock() {
        // 1000 bytes in blocks of 300: blocks 0..2 are whole, block 3 is [900, 1000).
        let cap: UInt64 = 1000
        XCTAssertEqual(ExtentSet([Extent(offset: 950, length: 10)]).blocksTouched(ofSize: 300, capacity: cap).extents,
                       [Extent(offset: 900, length: 100)])
        XCTAssertEqual(ExtentSet([Extent(offset: 990, length: 20)]).blocksTouched(ofSize: 300, capacity: cap).extents,
                       [Extent(offset: 900, length: 100)])
        XCTAssertEqual(ExtentSet([Extent(offset: 1000, length: 100)]).blocksTouched(ofSize: 300, capacity: cap), ExtentSet())
        XCTAssertEqual(ExtentSet([Extent(offset: 0, length: 1)]).blocksTouched(ofSize: 300, capacity: 100).extents,
                       [Extent(offset: 0, length: 100)])  // a disk smaller than one block
        XCTAssertEqual(ExtentSet([Extent(offset: 299, length: 2)]).blocksTouched(ofSize: 300, capacity: cap).extents,
                       [Extent(offset: 0, length: 600)])
    }

    func testUInt64Extremes() {
        let top = UInt64.max
        let whole = Extent(offset: 0, length: top)
        let high = ExtentSet([Extent(offset: top - 100, length: 100)])
        XCTAssertEqual(high.complement(within: whole).extents, [Extent(offset: 0, length: top - 100)])
        XCTAssertEqual(high.complement(within: whole).complement(within: whole), high)
        XCTAssertEqual(ExtentSet().complement(within: whole).extents, [whole])
        XCTAssertEqual(ExtentSet([whole]).complement(within: whole), ExtentSet())
        XCTAssertEqual(high.union(ExtentSet([Extent(offset: top - 200, length: 100)])).extents, [Extent(offset: top - 200, length: 200)])
        XCTAssertEqual(ExtentSet([whole]).subtracting(high).extents, [Extent(offset: 0, length: top - 100)])
        XCTAssertEqual(high.subtracting(ExtentSet([whole])), ExtentSet())
        // The last block of a disk of UInt64.max bytes is short; the round-up must not wrap.
        let mib: UInt64 = 1 << 20
        let lastStart = top - top % mib
        XCTAssertEqual(ExtentSet([Extent(offset: top - 1, length: 1)]).blocksTouched(ofSize: mib, capacity: top).extents,
                       [Extent(offset: lastStart, length: top - lastStart)])
        XCTAssertEqual(high.blocksTouched(ofSize: top, capacity: top).extents, [whole])
        XCTAssertEqual(ExtentSet([Extent(offset: 0, length: 1)]).blocksTouched(ofSize: top, capacity: top).extents, [whole])
        XCTAssertEqual(ExtentSet([Extent(offset: 1, length: 1)]).blocksTouched(ofSize: 1, capacity: top).extents,
                       [Extent(offset: 1, length: 1)])
        XCTAssertEqual(ExtentSet([whole]).blocksTouched(ofSize: 3, capacity: top).extents, [whole])
    }
}
