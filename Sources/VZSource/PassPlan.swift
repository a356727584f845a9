import VZCore

/// What one pass does with a disk, decided once before any block is read: which blocks are
/// candidates, and which of those are known to be zero (sent without reading) or must be read.
/// A pure value: it does no I/O and sees only extent sets, so ABM's active extents and CBT's
/// changed areas plug in as two more sets.
///
/// A block is a candidate when any byte of it is on the disk, active and changed; the last block
/// of a disk whose capacity is not a multiple of the block size is short. Memory is linear in the
/// number of extents, never in the number of blocks.
struct PassPlan: Equatable, Sendable {
    /// One candidate block, in the order the producer submits it.
    struct Block: Equatable, Sendable {
        /// Index into the disk's `BlockMap`.
        var index: UInt64
        /// The block's bytes (the last block of the disk may be short).
        var extent: Extent
        /// Every byte is in the reader's known-zero extents (and white-space detection is on):
        /// the block is never read.
        var knownZero: Bool
    }

    let capacity: UInt64
    let blockSize: UInt64
    let mode: ReplicationMode
    let whitespace: Bool
    /// Every candidate block, block-aligned and clipped to the capacity.
    let candidates: ExtentSet
    /// The candidate blocks that lie wholly in the known-zero extents; empty when white-space
    /// detection is off.
    let knownZeroBlocks: ExtentSet
    /// The candidate blocks that must be read: `candidates` minus `knownZeroBlocks`.
    let blocksToRead: ExtentSet
    /// The bytes of candidate blocks that ABM proved free: a block partly active is read, and
    /// these bytes of it are zeroed before it is checked, hashed and sent, so no deleted data
    /// travels in a mixed block. Empty without ABM.
    let inactiveInCandidates: ExtentSet
    /// Sum of the candidate blocks' lengths: what progress counts towards.
    let candidateBytes: UInt64
    let candidateBlockCount: UInt64

    /// - Parameters:
    ///   - knownZero: extents the reader knows to be zero without reading them.
    ///   - active: ABM's active extents; nil means the whole disk is active.
    ///   - changed: CBT's changed areas; nil means everything may have changed.
    init(capacity: UInt64, blockSize: UInt32, mode: ReplicationMode, whitespace: Bool, knownZero: ExtentSet,
         active: ExtentSet? = nil, changed: ExtentSet? = nil) {
        precondition(blockSize > 0, "the job file validates the block size")
        self.capacity = capacity
        self.blockSize = UInt64(blockSize)
        self.mode = mode
        self.whitespace = whitespace
        let disk = Extent(offset: 0, length: capacity)
        var bytes = ExtentSet([disk])
        if let active { bytes = bytes.intersection(active) }
        if let changed { bytes = bytes.intersection(changed) }
        let candidates = bytes.blocksTouched(ofSize: self.blockSize, capacity: capacity)
        self.candidates = candidates
        if let active { inactiveInCandidates = candidates.subtracting(active) } else { inactiveInCandidates = ExtentSet() }
        if whitespace {
            // A block is wholly known zero when no byte of it is outside the known-zero extents.
            let notKnownZero = knownZero.complement(within: disk).blocksTouched(ofSize: self.blockSize, capacity: capacity)
            knownZeroBlocks = candidates.subtracting(notKnownZero)
        } else {
            knownZeroBlocks = ExtentSet()
        }
        blocksToRead = candidates.subtracting(knownZeroBlocks)
        candidateBytes = candidates.totalLength
        let size = self.blockSize
        candidateBlockCount = candidates.reduce(0) { $0 + $1.length / size + ($1.length % size == 0 ? 0 : 1) }
    }

    /// The target's map is compared with each block read (differential mode); in full mode every
    /// non-zero block is sent.
    var usesMap: Bool { mode == .differential }

    /// The candidate blocks in disk order, each tagged known-zero or to-read.
    var blocks: Blocks { Blocks(plan: self) }

    struct Blocks: Sequence {
        /// Block-aligned runs in disk order, each wholly known-zero or wholly to-read.
        fileprivate let runs: [(extent: Extent, knownZero: Bool)]
        fileprivate let blockSize: UInt64

        fileprivate init(plan: PassPlan) {
            blockSize = plan.blockSize
            var runs: [(extent: Extent, knownZero: Bool)] = []
            var zero = plan.knownZeroBlocks.makeIterator(), read = plan.blocksToRead.makeIterator()
            var z = zero.next(), r = read.next()
            while z != nil || r != nil {
                if let zz = z, r.map({ zz.offset < $0.offset }) ?? true {
                    runs.append((zz, true)); z = zero.next()
                } else if let rr = r {
                    runs.append((rr, false)); r = read.next()
                }
            }
            self.runs = runs
        }

        func makeIterator() -> Iterator { Iterator(runs: runs, blockSize: blockSize) }

        struct Iterator: IteratorProtocol {
            fileprivate let runs: [(extent: Extent, knownZero: Bool)]
            fileprivate let blockSize: UInt64
            private var run = 0
            private var position: UInt64

            fileprivate init(runs: [(extent: Extent, knownZero: Bool)], blockSize: UInt64) {
                self.runs = runs
                self.blockSize = blockSize
                position = runs.first?.extent.offset ?? 0
            }

            mutating func next() -> Block? {
                while run < runs.count {
                    let (extent, knownZero) = runs[run]
                    if position < extent.end {
                        // Runs start on a block boundary and end on one or at the capacity.
                        let length = Swift.min(blockSize, extent.end - position)
                        let block = Block(index: position / blockSize, extent: Extent(offset: position, length: length),
                                          knownZero: knownZero)
                        position += length
                        return block
                    }
                    run += 1
                    if run < runs.count { position = runs[run].extent.offset }
                }
                return nil
            }
        }
    }
}
