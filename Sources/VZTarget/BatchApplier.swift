import Foundation
import VZCore
import VZPlatform

/// A block or zero extent ready to be written to the replica (decompressed and verified).
enum DecodedChange {
    /// `bytes`: a raw block's slice of its frame, or the decompressed block.
    case block(offset: UInt64, bytes: ArraySlice<UInt8>, hash: SHA256Digest)
    case zero(Extent)

    var extent: Extent {
        switch self {
        case let .block(offset, bytes, _): return Extent(offset: offset, length: UInt64(bytes.count))
        case let .zero(e): return e
        }
    }
}

/// Writes batches of changes to the replica, each only after the journal made the batch's
/// originals durable. The journal protects batch N+1 on the caller's thread while a writer
/// thread writes batch N, so the journal's fsync overlaps the replica writes instead of adding
/// to them. Batches never share a block within a pass, and the journal keeps a block's first
/// original only, so the overlap cannot journal a half-written block. At most two batches are
/// in memory.
final class BatchApplier {
    private let replica: Replica
    private let journal: PassJournal
    private let spaceCheck: ([Extent]) throws -> Void
    private let cond = NSCondition()
    private var pending: [DecodedChange]?
    private var writerError: Error?
    private var finished = false
    private var writer: JoinableThread?
    /// Test-only: called on the writer thread before it writes batch number N (0-based), so the
    /// power-loss tests can force both orders of the overlap (writer ahead, writer behind).
    var beforeWritingBatch: ((Int) -> Void)?

    init(replica: Replica, journal: PassJournal, spaceCheck: @escaping ([Extent]) throws -> Void) {
        self.replica = replica
        self.journal = journal
        self.spaceCheck = spaceCheck
        // Joined in `finish`: the writer never outlives the pass.
        writer = JoinableThread(stackSize: 8 << 20) { [self] in writerLoop() }
    }

    /// Protects `batch` (one journal fsync), then hands it to the writer once the previous batch
    /// is written. Throws the writer's error if it failed.
    func submit(_ batch: [DecodedChange]) throws {
        let extents = batch.map(\.extent)
        try spaceCheck(extents)
        try journal.protect(extents, replica: replica)
        cond.lock()
        defer { cond.unlock() }
        while pending != nil && writerError == nil { cond.wait() }
        if let e = writerError { throw e }
        pending = batch
        cond.broadcast()
    }

    /// Waits until every submitted batch is written; rethrows a writer failure. Must be called
    /// (also on error paths) so the writer thread ends.
    func finish() throws {
        cond.lock()
        finished = true
        cond.broadcast()
        cond.unlock()
        writer?.join()
        if let e = writerError { throw e }
    }

    private func writerLoop() {
        var written = 0
        while true {
            cond.lock()
            while pending == nil && !finished && writerError == nil { cond.wait() }
            guard let batch = pending, writerError == nil else { cond.unlock(); return }
            cond.unlock()
            beforeWritingBatch?(written)
            written += 1
            do {
                var dirty = ExtentSet()
                for change in batch {
                    switch change {
                    case let .block(offset, bytes, _):
                        try bytes.withUnsafeBytes { try replica.write(at: offset, $0) }
                        dirty.insert(change.extent)
                    case let .zero(e): try replica.writeZeros(e)
                    }
                }
                // Start the batch's writeback now, while the next batch is received, so the
                // commit's flush waits for the last batch only instead of the whole pass.
                for e in dirty.extents { try replica.startWriteback(e) }
                cond.lock(); pending = nil; cond.broadcast(); cond.unlock()
            } catch {
                cond.lock(); writerError = error; pending = nil; cond.broadcast(); cond.unlock()
                return
            }
        }
    }
}
