import Foundation
import VZCore
import VZFormats
import VZPlatform
import XCTest
@testable import VZTarget

/// Power loss on the real apply path: `BatchApplier` (what `DiskSession.apply` feeds) with the real
/// `UndoJournal`, over a crash layer that keeps every replica and journal write in memory until
/// its fsync. A crash at the k-th fsync drops (or keeps, or keeps some of) the unsynced writes;
/// recovery from what reached the real files must give back the original replica. SIGKILL sweeps
/// cannot show this: a killed process's unsynced writes stay in the page cache.
///
/// The overlap (batch N+1 journaled while the writer thread writes batch N) is forced both ways:
/// the writer far ahead (each batch written before the next is protected) and far behind (batch
/// N written only after N+1 was protected). Which fsync is the k-th does not depend on the
/// interleaving: only the submitting thread fsyncs (the journal's group commits, then the final
/// flush) — asserted below — while the writer thread only writes.
final class ApplyPathPowerLossTests: XCTestCase {
    typealias X = UndoFixture
    struct Crash: Error {}

    /// The crash budget, shared by the writer thread and the submitting thread.
    final class World: @unchecked Sendable {
        private let lock = NSLock()
        private var budget: Int
        private(set) var crashed = false
        private(set) var syncThreads: [Bool] = []  // true: on the submitting (main) thread
        init(syncBudget: Int) { budget = syncBudget }
        func operation() throws {
            lock.lock(); defer { lock.unlock() }
            if crashed { throw Crash() }
        }
        func sync() throws {
            lock.lock(); defer { lock.unlock() }
            if crashed { throw Crash() }
            syncThreads.append(Thread.isMainThread)
            if budget == 0 { crashed = true; throw Crash() }
            budget -= 1
        }
    }

    final class Storage: UndoJournalStorage {
        let inner: UndoJournalStorage
        let world: World
        var pending: [(UInt64, [UInt8])] = []
        init(_ inner: UndoJournalStorage, _ world: World) { self.inner = inner; self.world = world }
        func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws {
            try world.operation()
            pending.append((offset, Array(bytes)))
        }
        func sync() throws {
            try world.sync()
            for (o, b) in pending { try b.withUnsafeBytes { try inner.write(at: o, $0) } }
            pending = []
        }
        func crash(keep: (Int) -> Bool) throws {
            for (i, (o, b)) in pending.enumerated() where keep(i) { try b.withUnsafeBytes { try inner.write(at: o, $0) } }
            pending = []
        }
        func close() { inner.close() }
    }

    /// Unsynced replica writes, readable through the layer; thread-safe (the journal reads
    /// originals on the submitting thread while the writer thread writes).
    final class Replica: VZCore.Replica, @unchecked Sendable {
        let disk: FileReplica
        let world: World
        let check: (Extent) -> Void
        private let lock = NSLock()
        private var pending: [X.Op] = []
        init(_ disk: FileReplica, _ world: World, check: @escaping (Extent) -> Void) { self.disk = disk; self.world = world; self.check = check }
        var capacity: UInt64 { disk.capacity }
        var displayName: String { "crash layer" }
        static func extent(_ op: X.Op) -> Extent {
            switch op {
            case .write(let o, let b): return Extent(offset: o, length: UInt64(b.count))
            case .zeros(let e): return e
            }
        }
        func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
            try world.operation()
            try disk.read(at: offset, into: buffer)
            lock.lock(); defer { lock.unlock() }
            let want = Extent(offset: offset, length: UInt64(buffer.count))
            for op in pending {
                guard let x = Self.extent(op).intersection(want) else { continue }
                for p in x.offset..<x.end {
                    switch op {
                    case .write(let o, let b): buffer[Int(p - offset)] = b[Int(p - o)]
                    case .zeros: buffer[Int(p - offset)] = 0
                    }
                }
            }
        }
        func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws {
            try world.operation()
            check(Extent(offset: offset, length: UInt64(bytes.count)))
            lock.lock(); pending.append(.write(offset, Array(bytes))); lock.unlock()
        }
        func writeZeros(_ extent: Extent) throws {
            try world.operation()
            check(extent)
            lock.lock(); pending.append(.zeros(extent)); lock.unlock()
        }
        func isHole(_ extent: Extent) throws -> Bool {
            try world.operation()
            lock.lock()
            let touched = pending.contains { Self.extent($0).intersection(extent) != nil }
            lock.unlock()
            return touched ? false : try disk.isHole(extent)
        }
        func flush() throws {
            try world.sync()
            lock.lock(); defer { lock.unlock() }
            for op in pending { try X.apply(op, to: disk) }
            try disk.flush()
            pending = []
        }
        func crash(keep: (Int) -> Bool) throws {
            lock.lock(); defer { lock.unlock() }
            for (i, op) in pending.enumerated() where keep(i) { try X.apply(op, to: disk) }
            pending = []
        }
    }

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
    enum Survivors: CaseIterable { case none, all, everyOther }

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
        let world = World(syncBudget: crashAt)
        var storage: Storage!
        let journal = try X.begin(dir, storageLayer: { storage = Storage($0, world); return storage })
        let violationsLock = NSLock()
        var violations: [String] = []
        let replica = Replica(try FileReplica(dir), world) { extent in
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
        let keep: (Int) -> Bool = { i in survivors == .all || (survivors == .everyOther && i % 2 == 0) }
        try storage.crash(keep: keep)
        try replica.crash(keep: keep)
        journal.close()

        let disk = try FileReplica(dir)
        _ = try Rollback.restore(directory: dir.directory, disk: "disk1", replica: disk, logger: X.logger)
        return Outcome(violations: violations, crashed: world.crashed, restored: try disk.contents() == original,
                       syncThreads: world.syncThreads)
    }

    /// True once every change of `batch` reads back through the layer.
    func batchWritten(_ batch: [DecodedChange], _ replica: Replica) throws -> Bool {
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
