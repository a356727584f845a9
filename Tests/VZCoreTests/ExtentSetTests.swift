import XCTest
@testable import VZCore

/// ExtentSet against a brute-force oracle: a bitmap of a small universe, one Bool per byte.
final class ExtentSetTests: XCTestCase {
    private let universe = 256

    private func bitmap(_ s: ExtentSet) -> [Bool] {
        var b = [Bool](repeating: false, count: universe)
        for e in s { for i in Int(e.offset)..<Int(e.end) { b[i] = true } }
        return b
    }

    private func randomExtent(_ rng: inout SeededRNG, allowEmpty: Bool = true) -> Extent {
        let off = UInt64.random(in: 0..<UInt64(universe - 1), using: &rng)
        let maxLen = min(UInt64(universe) - off, 40)
        let len = UInt64.random(in: (allowEmpty ? 0 : 1)...maxLen, using: &rng)
        return Extent(offset: off, length: len)
    }

    /// Sorted, disjoint, not touching (touching extents must be coalesced), none empty.
    private func assertCanonical(_ s: ExtentSet, file: StaticString = #filePath, line: UInt = #line) {
        for e in s.extents { XCTAssertGreaterThan(e.length, 0, "\(s.extents)", file: file, line: line) }
        for (a, b) in zip(s.extents, s.extents.dropFirst()) {
            XCTAssertLessThan(a.end, b.offset, "not sorted/coalesced: \(s.extents)", file: file, line: line)
        }
    }

    func testInsertMatchesBitmapOracle() {
        var rng = SeededRNG(seed: 1)
        for round in 0..<2000 {
            var s = ExtentSet()
            var oracle = [Bool](repeating: false, count: universe)
            for _ in 0..<Int.random(in: 0...25, using: &rng) {
                let e = randomExtent(&rng)
                s.insert(e)
                for i in Int(e.offset)..<Int(e.end) { oracle[i] = true }
                XCTAssertEqual(bitmap(s), oracle, "round \(round) after inserting \(e)")
                assertCanonical(s)
            }
            XCTAssertEqual(s.totalLength, UInt64(oracle.filter { $0 }.count))
            XCTAssertEqual(s.isEmpty, !oracle.contains(true))
        }
    }

    /// Scanners append in order; the fast path must also merge touching and overlapping extents.
    func testInOrderInsertsMatchOracle() {
        var rng = SeededRNG(seed: 2)
        for _ in 0..<500 {
            var items = (0..<Int.random(in: 1...20, using: &rng)).map { _ in randomExtent(&rng) }
            items.sort { $0.offset < $1.offset }
            let s = ExtentSet(items)
            var oracle = [Bool](repeating: false, count: universe)
            for e in items { for i in Int(e.offset)..<Int(e.end) { oracle[i] = true } }
            XCTAssertEqual(bitmap(s), oracle, "\(items)")
            assertCanonical(s)
        }
    }

    func testSameBytesGiveEqualSetsWhateverTheOrder() {
        var rng = SeededRNG(seed: 3)
        for _ in 0..<500 {
            let items = (0..<Int.random(in: 0...15, using: &rng)).map { _ in randomExtent(&rng) }
            XCTAssertEqual(ExtentSet(items), ExtentSet(items.shuffled(using: &rng)))
            XCTAssertEqual(ExtentSet(items), ExtentSet(items.reversed()))
        }
    }

    func testIntersectionMatchesOracle() {
        var rng = SeededRNG(seed: 4)
        for _ in 0..<2000 {
            let a = ExtentSet((0..<Int.random(in: 0...12, using: &rng)).map { _ in randomExtent(&rng) })
            let b = ExtentSet((0..<Int.random(in: 0...12, using: &rng)).map { _ in randomExtent(&rng) })
            let x = a.intersection(b)
            XCTAssertEqual(bitmap(x), zip(bitmap(a), bitmap(b)).map { $0 && $1 }, "\(a.extents) ∩ \(b.extents) = \(x.extents)")
            assertCanonical(x)
            XCTAssertEqual(x, b.intersection(a))
        }
    }

    func testCoversMatchesOracle() {
        var rng = SeededRNG(seed: 5)
        for _ in 0..<1000 {
            let s = ExtentSet((0..<Int.random(in: 0...10, using: &rng)).map { _ in randomExtent(&rng) })
            let bits = bitmap(s)
            for _ in 0..<30 {
                let e = randomExtent(&rng, allowEmpty: false)
                let expected = bits[Int(e.offset)..<Int(e.end)].allSatisfy { $0 }
                XCTAssertEqual(s.covers(e), expected, "\(s.extents) covers \(e)")
            }
        }
    }

    func testHandPickedCases() {
        var s = ExtentSet([Extent(offset: 10, length: 10), Extent(offset: 30, length: 10)])
        s.insert(Extent(offset: 20, length: 10))  // touches both neighbours
        XCTAssertEqual(s.extents, [Extent(offset: 10, length: 30)])
        s.insert(Extent(offset: 0, length: 5))
        s.insert(Extent(offset: 5, length: 0))  // empty: ignored
        XCTAssertEqual(s.extents, [Extent(offset: 0, length: 5), Extent(offset: 10, length: 30)])
        XCTAssertTrue(s.covers(Extent(offset: 10, length: 30)))
        XCTAssertFalse(s.covers(Extent(offset: 4, length: 7)))
        XCTAssertFalse(s.covers(Extent(offset: 39, length: 2)))
        // Extents near the top of the 64-bit range.
        let top = ExtentSet([Extent(offset: UInt64.max - 100, length: 100), Extent(offset: 0, length: 1)])
        XCTAssertEqual(top.totalLength, 101)
        XCTAssertTrue(top.covers(Extent(offset: UInt64.max - 50, length: 50)))
    }

    func testExtentIntersectionAndContains() {
        let a = Extent(offset: 10, length: 10)
        XCTAssertEqual(a.intersection(Extent(offset: 15, length: 10)), Extent(offset: 15, length: 5))
        XCTAssertNil(a.intersection(Extent(offset: 20, length: 5)))  // touching is not overlapping
        XCTAssertTrue(a.contains(Extent(offset: 10, length: 10)))
        XCTAssertFalse(a.contains(Extent(offset: 9, length: 2)))
        XCTAssertEqual(a.description, "[10, +10)")
    }
}

final class ExtentSetPiecesTests: XCTestCase {
    func testPiecesWithinAnExtent() {
        let s = ExtentSet([Extent(offset: 0, length: 10), Extent(offset: 20, length: 10), Extent(offset: 40, length: 5)])
        XCTAssertEqual(s.pieces(within: Extent(offset: 5, length: 20)), [Extent(offset: 5, length: 5), Extent(offset: 20, length: 5)])
        XCTAssertEqual(s.pieces(within: Extent(offset: 10, length: 10)), [])
        XCTAssertEqual(s.pieces(within: Extent(offset: 0, length: 100)), s.extents)
        XCTAssertEqual(s.pieces(within: Extent(offset: 44, length: 0)), [])
        XCTAssertEqual(ExtentSet().pieces(within: Extent(offset: 0, length: 5)), [])
    }
}
