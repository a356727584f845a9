import Foundation
import VZCore
import VZFormats
import VZPlatform
import XCTest
@testable import VZTarget

/// Power loss on the real apply path: `BatchApplier` (what `DiskSession.apply` feeds) with the real
/// `UndoJournal`, over the crash layer (`CrashLayer`: every replica and journal write kept in
/// memory until its fsync). A crash at the k-th fsync drops (or keeps, or keeps some of) the
/// unsynced writes; recovery from what reached the real files must give back the original
/// replica. SIGKILL sweeps cannot show this: a killed process's unsynced writes stay in the page
/// cache.
///
/// The overlap (batch N+1 journaled while the writer thread writes batch N) is forced both ways:
/// the writer far ahead (each batch written before the next is protected) and far behind (batch
/// N written only after N+1 was protected). Which fsync is the k-th does not depend on the
/// interleaving: only the submitting thread fsyncs (the journal's group commits, then the final
/// flush) — asserted below — while the writer thread only writes.
final class ApplyPathPowerLossTests: XCTestCase {
    typealias X = UndoFixture

    /// The real journal, and a signal after each group commit.
    final class SignallingJournal: PassJournal {
        let inner: UndoJournal
        let protected: () -> Void
        init(_ inner: UndoJournal, protected: @escaping () -> Void) { self.inner = inner; self.protected = protected }
        func protect(_ extents: [Extent], replica: VZCore.Replica) throws {
            try inner.protect(extents, replica: replica)
            protected()
        }
        func discard() throws { try inner.discard() }
    }

    enum Overlap: CaseIterable { case writerAhead, writerBehind }

    /// A pass as the session applies it: whole blocks, each block in one batch only, data over
    /// data, data over holes and allocated zeros, a zero extent over data, the short last block.
    static var batches: [[DecodedChange]] {
        func data(_ i: UInt64, _ seed: Int) -> DecodedChange {
            let bytes = X.pattern(seed, Int(X.block(i).length))
            return .block(offset: i * X.bs, bytes: bytes[...], hash: SHA256.digest(bytes))
        }
        return [[data(0, 10), data(1, 11)], [data(3, 13), .zero(X.block(2))], [data(4, 14), data(8, 18)], [.zero(X.block(5)), data(6, 16)]]
    }

    struct Outcome { var violations: [String]; var crashed: Bool; var restored: Bool; var syncThreads: [Bool] }

    func run(crashAt: Int, survivors: Survivors, overlap: Overlap) throws -> Outcome {
        let dir = try TempDir()
        let original = try X.makeOriginal(dir).contents()
        let world = CrashWorld(syncBudget: crashAt)
        var storage: CrashStorage!
        let journal = try X.begin(dir, storageLayer: { storage = CrashStorage($0, world); return storage })
        let violationsLock = NSLock()
        var violations: [String] = []
        let replica = CrashReplica(try FileReplica(dir), world) { extent in
            // What reached the real journal file is what survives a power loss.
            guard let bytes = try? dir.bytes("disk1.vzundo"),
                  let durable = try? UndoJournalDecoder.decodeAll(bytes, fileName: "j") else {
                violationsLock.lock(); violations.append("journal unreadable at write of \(extent)"); violationsLock.unlock(); return
            }
            let covered = ExtentSet(durable.records.map(\.extent))
            for i in (extent.offset / X.bs)...((extent.end - 1) / X.bs) where !covered.covers(X.block(i)) {
                violationsLock.lock(); violations.append("block \(i) written before its undo record was durable"); violationsLock.unlock()
            }
        }
        let gate = NSCondition()
        var protectedBatches = 0, stopped = false
        let signalling = SignallingJournal(journal) { gate.lock(); protectedBatches += 1; gate.broadcast(); gate.unlock() }
        let applier = BatchApplier(replica: replica, journal: signalling) { _ in }
        let count = Self.batches.count
        applier.beforeWritingBatch = { n in
            // Behind: batch n is written only once batch n+1 is protected (or the submitter stopped).
            guard overlap == .writerBehind, n + 1 < count else { return }
            gate.lock(); defer { gate.unlock() }
            while protectedBatches < n + 2 && !stopped { _ = gate.wait(until: Date().addingTimeInterval(5)) }
        }
        do {
            for batch in Self.batches {
                try applier.submit(batch)
                if overlap == .writerAhead {
                    // Ahead: the writer finishes this batch before the next one is protected.
                    while !world.crashed, !(try batchWritten(batch, replica)) { usleep(200) }
                }
            }
            try applier.finish()
            try replica.flush()
        } catch is Crash {
        } catch let e as VZError where e.message.contains("Crash") {
        }
        gate.lock(); stopped = true; gate.broadcast(); gate.unlock()
        try? applier.finish()
        try storage.crash(survivors)
        try replica.crash(survivors)
        journal.close()

        let disk = try FileReplica(dir)
        _ = try Rollback.restore(directory: dir.directory, disk: "disk1", replica: disk, logger: X.logger)
        return Outcome(violations: violations, crashed: world.crashed, restored: try disk.contents() == original,
                       syncThreads: world.syncThreads)
    }

    /// True once every change of `batch` reads back through the layer.
    func batchWritten(_ batch: [DecodedChange], _ replica: CrashReplica) throws -> Bool {
        for change in batch {
            let e = change.extent
            var buffer = [UInt8](repeating: 0xEE, count: Int(e.length))
            try buffer.withUnsafeMutableBytes { try replica.read(at: e.offset, into: $0) }
            switch change {
            case let .block(_, bytes, _): if buffer[...] != bytes { return false }
            case .zero: if buffer.contains(where: { $0 != 0 }) { return false }
            }
        }
        return true
    }

    func testPowerLossAtEveryFsyncOfTheRealApplyPathRestoresTheOriginal() throws {
        for overlap in Overlap.allCases {
            var completed = false
            var syncOrder: [Bool]?
            for crashAt in 0...12 {
                for survivors in Survivors.allCases {
                    let r = try run(crashAt: crashAt, survivors: survivors, overlap: overlap)
                    let context = "\(overlap), crash at fsync \(crashAt), \(survivors) survive"
                    XCTAssertEqual(r.violations, [], context)
                    XCTAssertTrue(r.restored, "\(context): the replica is not back to the original")
                    XCTAssertTrue(r.syncThreads.allSatisfy { $0 }, "\(context): an fsync ran off the submitting thread")
                    if !r.crashed {
                        completed = true
                        if let s = syncOrder { XCTAssertEqual(s, r.syncThreads, context) } else { syncOrder = r.syncThreads }
                    }
                }
            }
            XCTAssertTrue(completed, "\(overlap): the sweep must reach past the pass's last fsync")
            // One group commit per batch, then the replica flush.
            XCTAssertEqual(syncOrder?.count, Self.batches.count + 1, "\(overlap)")
        }
    }
}
