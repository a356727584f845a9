import XCTest
@testable import VZSource
import VZCore
import VZTestSupport

final class PassPlanTests: XCTestCase {
    private func indices(_ plan: PassPlan) -> [UInt64] { plan.blocks.map(\.index) }
    private func knownZeroIndices(_ plan: PassPlan) -> [UInt64] { plan.blocks.filter(\.knownZero).map(\.index) }
    private func set(_ ranges: (UInt64, UInt64)...) -> ExtentSet {
        ExtentSet(ranges.map { Extent(offset: $0.0, length: $0.1 - $0.0) })
    }

    /// No active or changed set: every block of the disk, in order, with the geometry of the map
    /// the target sends (the last block short).
    func testWithoutActiveOrChangedEveryBlockIsACandidate() {
        let capacity: UInt64 = 10 * 4096 + 100
        let plan = PassPlan(capacity: capacity, blockSize: 4096, mode: .differential, whitespace: true, knownZero: ExtentSet())
        let map = BlockMap(blockSize: 4096, capacity: capacity)
        XCTAssertEqual(plan.candidates.extents, [Extent(offset: 0, length: capacity)])
        XCTAssertEqual(indices(plan), Array(0...10))
        XCTAssertEqual(plan.blocks.map(\.extent), (0..<map.count).map { map.extent(ofBlock: $0) })
        XCTAssertEqual(plan.blocks.map(\.extent).last, Extent(offset: 40960, length: 100))
        XCTAssertEqual(plan.candidateBytes, capacity)
        XCTAssertEqual(plan.candidateBlockCount, 11)
        XCTAssertEqual(knownZeroIndices(plan), [])
        XCTAssertEqual(plan.blocksToRead, plan.candidates)
    }

    /// A block is a candidate when any byte of it is active and changed.
    func testActiveAndChangedNarrowTheCandidatesToWholeBlocks() {
        // 10.5 blocks of 1000 bytes.
        let active = set((1500, 2600), (9000, 20000))
        let changed = set((0, 1600), (2500, 2501), (10_400, 10_450))
        let both = PassPlan(capacity: 10_500, blockSize: 1000, mode: .differential, whitespace: true, knownZero: ExtentSet(),
                            active: active, changed: changed)
        // Active ∩ changed = [1500,1600) ∪ [2500,2501) ∪ [10400,10450): blocks 1, 2 and the short block 10.
        XCTAssertEqual(both.candidates, set((1000, 3000), (10_000, 10_500)))
        XCTAssertEqual(indices(both), [1, 2, 10])
        XCTAssertEqual(both.blocks.map(\.extent.length), [1000, 1000, 500])
        XCTAssertEqual(both.candidateBytes, 2500)
        XCTAssertEqual(both.candidateBlockCount, 3)

        let onlyActive = PassPlan(capacity: 10_500, blockSize: 1000, mode: .full, whitespace: true, knownZero: ExtentSet(), active: active)
        XCTAssertEqual(indices(onlyActive), [1, 2, 9, 10])
        XCTAssertEqual(onlyActive.candidateBytes, 3500)

        let onlyChanged = PassPlan(capacity: 10_500, blockSize: 1000, mode: .full, whitespace: true, knownZero: ExtentSet(), changed: changed)
        XCTAssertEqual(indices(onlyChanged), [0, 1, 2, 10])
        XCTAssertEqual(onlyChanged.candidateBytes, 3500)
    }

    func testEmptyCandidateSet() {
        let disjoint = PassPlan(capacity: 8192, blockSize: 4096, mode: .differential, whitespace: true,
                                knownZero: set((0, 8192)), active: set((0, 100)), changed: set((200, 300)))
        let nothingChanged = PassPlan(capacity: 8192, blockSize: 4096, mode: .differential, whitespace: true,
                                      knownZero: ExtentSet(), changed: ExtentSet())
        let pastTheEnd = PassPlan(capacity: 8192, blockSize: 4096, mode: .differential, whitespace: true,
                                  knownZero: ExtentSet(), active: set((8192, 100_000)))
        let emptyDisk = PassPlan(capacity: 0, blockSize: 4096, mode: .full, whitespace: true, knownZero: ExtentSet())
        for plan in [disjoint, nothingChanged, pastTheEnd, emptyDisk] {
            XCTAssertTrue(plan.candidates.isEmpty)
            XCTAssertEqual(indices(plan), [])
            XCTAssertEqual(plan.candidateBytes, 0)
            XCTAssertEqual(plan.candidateBlockCount, 0)
            XCTAssertTrue(plan.knownZeroBlocks.isEmpty)
        }
    }

    /// Known zero only when the whole block (up to the capacity) is in the known-zero extents, and
    /// only with white-space detection on.
    func testKnownZeroClassification() {
        // Blocks of 1000 bytes, the last one [10000, 10500).
        let knownZero = set((2000, 3000),      // block 2 exactly
                            (3000, 3999),      // block 3 but its last byte
                            (5500, 7000),      // half of block 5, all of block 6
                            (10_000, 50_000))  // the short last block, and past the end
        let plan = PassPlan(capacity: 10_500, blockSize: 1000, mode: .differential, whitespace: true, knownZero: knownZero)
        XCTAssertEqual(knownZeroIndices(plan), [2, 6, 10])
        XCTAssertEqual(plan.knownZeroBlocks, set((2000, 3000), (6000, 7000), (10_000, 10_500)))
        XCTAssertEqual(plan.blocksToRead, set((0, 2000), (3000, 6000), (7000, 10_000)))
        XCTAssertEqual(indices(plan), Array(0...10), "known-zero blocks are still candidates, in disk order")
        XCTAssertEqual(plan.candidateBytes, 10_500)

        let off = PassPlan(capacity: 10_500, blockSize: 1000, mode: .differential, whitespace: false, knownZero: knownZero)
        XCTAssertEqual(knownZeroIndices(off), [])
        XCTAssertTrue(off.knownZeroBlocks.isEmpty)
        XCTAssertEqual(indices(off), Array(0...10))

        // A known-zero block that is not active is not a candidate at all.
        let narrowed = PassPlan(capacity: 10_500, blockSize: 1000, mode: .differential, whitespace: true, knownZero: knownZero,
                                active: set((1999, 2001), (6500, 6501)))
        XCTAssertEqual(indices(narrowed), [1, 2, 6])
        XCTAssertEqual(knownZeroIndices(narrowed), [2, 6])

        // The short last block is not known zero when its last byte is not.
        let short = PassPlan(capacity: 10_500, blockSize: 1000, mode: .full, whitespace: true, knownZero: set((10_000, 10_499)))
        XCTAssertEqual(knownZeroIndices(short), [])
    }

    func testUsesTheMapOnlyInDifferentialMode() {
        XCTAssertTrue(PassPlan(capacity: 1, blockSize: 1, mode: .differential, whitespace: true, knownZero: ExtentSet()).usesMap)
        XCTAssertFalse(PassPlan(capacity: 1, blockSize: 1, mode: .full, whitespace: true, knownZero: ExtentSet()).usesMap)
    }

    /// Random disks against a per-block, per-byte oracle.
    func testRandomPlansMatchAPerBlockOracle() {
        var rng = SplitMix64(seed: 21)
        let universe = 300
        func randomSet() -> ExtentSet {
            ExtentSet((0..<Int.random(in: 0...8, using: &rng)).map { _ in
                let off = UInt64.random(in: 0..<UInt64(universe), using: &rng)
                return Extent(offset: off, length: UInt64.random(in: 0...min(UInt64(universe) - off, 60), using: &rng))
            })
        }
        func bits(_ s: ExtentSet?) -> [Bool] {
            guard let s else { return [Bool](repeating: true, count: universe) }
            var b = [Bool](repeating: false, count: universe)
            for e in s { for i in e.offset..<e.end { b[Int(i)] = true } }
            return b
        }
        for round in 0..<2000 {
            let capacity = UInt64.random(in: 0...UInt64(universe), using: &rng)
            let blockSize = UInt32.random(in: 1...50, using: &rng)
            let whitespace = Bool.random(using: &rng)
            let knownZero = randomSet()
            let active = Bool.random(using: &rng) ? randomSet() : nil
            let changed = Bool.random(using: &rng) ? randomSet() : nil
            let plan = PassPlan(capacity: capacity, blockSize: blockSize, mode: .differential, whitespace: whitespace,
                                knownZero: knownZero, active: active, changed: changed)

            let a = bits(active), c = bits(changed), z = bits(knownZero)
            var expected: [PassPlan.Block] = []
            let bs = UInt64(blockSize)
            var off: UInt64 = 0
            while off < capacity {
                let end = min(off + bs, capacity)
                let bytes = (Int(off)..<Int(end))
                if bytes.contains(where: { a[$0] && c[$0] }) {
                    expected.append(.init(index: off / bs, extent: Extent(offset: off, length: end - off),
                                          knownZero: whitespace && bytes.allSatisfy { z[$0] }))
                }
                off = end
            }
            let got = Array(plan.blocks)
            XCTAssertEqual(got, expected, "round \(round): capacity \(capacity), block \(blockSize), active \(active?.extents as Any), changed \(changed?.extents as Any), zero \(knownZero.extents)")
            XCTAssertEqual(plan.candidateBytes, expected.reduce(0) { $0 + $1.extent.length })
            XCTAssertEqual(plan.candidateBlockCount, UInt64(expected.count))
            XCTAssertEqual(plan.candidates, ExtentSet(expected.map(\.extent)))
        }
    }
}
