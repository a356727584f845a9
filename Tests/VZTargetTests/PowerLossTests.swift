import Foundation
import VZCore
import VZFormats
import VZPlatform
import VZTarget
import XCTest

/// An in-process power-loss layer (FAULTS.md): the journal file and the replica keep every write
/// in memory until it is fsynced; a "crash" at the k-th fsync stops everything and drops
/// (or keeps, or keeps some of) the unsynced writes. The durable state is what reached the real
/// files. At every replica write the test checks the invariant: the undo record of each block it
/// touches is already durable.
final class PowerLossTests: XCTestCase {
    typealias X = UndoFixture
    struct Crash: Error {}

    final class World {
        var syncBudget: Int
        var crashed = false
        init(syncBudget: Int) { self.syncBudget = syncBudget }
        func operation() throws { if crashed { throw Crash() } }
        func sync() throws {
            try operation()
            if syncBudget == 0 { crashed = true; throw Crash() }
            syncBudget -= 1
        }
    }

    /// What survives of the unsynced writes at the crash.
    enum Survivors: CaseIterable { case none, all, everyOther }

    static func survives(_ s: Survivors, _ i: Int) -> Bool {
        switch s { case .none: return false; case .all: return true; case .everyOther: return i % 2 == 0 }
    }

    final class CrashStorage: UndoJournalStorage {
        let inner: UndoJournalStorage
        let world: World
        /// false: a broken fsync that persists nothing (the negative control).
        let honest: Bool
        var pending: [(UInt64, [UInt8])] = []
        init(_ inner: UndoJournalStorage, _ world: World, honest: Bool = true) { self.inner = inner; self.world = world; self.honest = honest }
        func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws {
            try world.operation()
            pending.append((offset, Array(bytes)))
        }
        func sync() throws {
            try world.sync()
            if honest { for (o, b) in pending { try b.withUnsafeBytes { try inner.write(at: o, $0) } } }
            pending = []
        }
        func crash(_ s: Survivors) throws {
            for (i, (o, b)) in pending.enumerated() where PowerLossTests.survives(s, i) {
                try b.withUnsafeBytes { try inner.write(at: o, $0) }
            }
            pending = []
        }
        func close() { inner.close() }
    }

    final class CrashReplica: Replica {
        let disk: FileReplica
        let world: World
        let check: (Extent) -> Void
        var pending: [UndoFixture.Op] = []
        init(_ disk: FileReplica, _ world: World, check: @escaping (Extent) -> Void) { self.disk = disk; self.world = world; self.check = check }
        var capacity: UInt64 { disk.capacity }
        var displayName: String { "crash layer over \(disk.displayName)" }

        static func extent(_ op: UndoFixture.Op) -> Extent {
            switch op {
            case .write(let o, let b): return Extent(offset: o, length: UInt64(b.count))
            case .zeros(let e): return e
            }
        }

        func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
            try world.operation()
            try disk.read(at: offset, into: buffer)
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
            pending.append(.write(offset, Array(bytes)))
        }
        func writeZeros(_ extent: Extent) throws {
            try world.operation()
            check(extent)
            pending.append(.zeros(extent))
        }
        func isHole(_ extent: Extent) throws -> Bool {
            try world.operation()
            if pending.contains(where: { Self.extent($0).intersection(extent) != nil }) { return false }
            return try disk.isHole(extent)
        }
        func flush() throws {
            try world.sync()
            for op in pending { try UndoFixture.apply(op, to: disk) }
            try disk.flush()
            pending = []
        }
        func crash(_ s: Survivors) throws {
            for (i, op) in pending.enumerated() where PowerLossTests.survives(s, i) { try UndoFixture.apply(op, to: disk) }
            pending = []
        }
    }

    /// Runs the fixture pass through the crash layer, crashing at fsync number `crashAt` (never,
    /// when the pass needs fewer), then recovers. Returns the invariant violations seen, whether
    /// the crash happened, and whether the replica is byte-exact the original after rollback.
    func run(crashAt: Int, survivors: Survivors, honest: Bool = true) throws -> (violations: [String], crashed: Bool, restored: Bool, checks: Int) {
        let dir = try TempDir()
        let original = try X.makeOriginal(dir).contents()
        let world = World(syncBudget: crashAt)
        var storage: CrashStorage!
        let journal = try X.begin(dir, storageLayer: { storage = CrashStorage($0, world, honest: honest); return storage })
        var violations: [String] = []
        var checks = 0
        let replica = CrashReplica(try FileReplica(dir), world) { extent in
            // The durable journal is what reached the real file.
            checks += 1
            guard let bytes = try? dir.bytes("disk1.vzundo"),
                  let durable = try? UndoJournalDecoder.decodeAll(bytes, fileName: "j") else {
                violations.append("journal unreadable at write of \(extent)"); return
            }
            let covered = ExtentSet(durable.records.map(\.extent))
            for i in (extent.offset / X.bs)...((extent.end - 1) / X.bs) where !covered.covers(X.block(i)) {
                violations.append("block \(i) written before its undo record was durable")
            }
        }
        do {
            for (n, (extents, ops)) in X.passBatches.enumerated() {
                try journal.protect(extents, replica: replica)
                for op in ops { try X.apply(op, to: replica) }
                if n % 2 == 1 { try replica.flush() }
            }
            try replica.flush()
        } catch is Crash {
        } catch let e as VZError where e.message.contains("Crash") {
        }
        let crashed = world.crashed
        try storage.crash(survivors)
        try replica.crash(survivors)
        journal.close()

        // Restart: recover from the durable files alone.
        let disk = try FileReplica(dir)
        _ = try Rollback.restore(directory: dir.directory, disk: "disk1", replica: disk, logger: X.logger)
        return (violations, crashed, try disk.contents() == original, checks)
    }

    func testPowerLossAtEveryFsyncRestoresTheOriginal() throws {
        var sawCompletePass = false
        for crashAt in 0...8 {
            for survivors in Survivors.allCases {
                let r = try run(crashAt: crashAt, survivors: survivors)
                XCTAssertEqual(r.violations, [], "crash at fsync \(crashAt), \(survivors)")
                XCTAssertTrue(r.restored, "crash at fsync \(crashAt), \(survivors): replica not back to the original")
                if !r.crashed { sawCompletePass = true; XCTAssertEqual(r.checks, 8) }
            }
        }
        XCTAssertTrue(sawCompletePass, "the sweep must reach past the last fsync of the pass")
    }

    /// The negative control: with an fsync that persists nothing, the same check catches replica
    /// writes whose undo records are not durable, and rollback cannot restore the original.
    func testTheCheckCatchesAJournalThatIsNotDurable() throws {
        let r = try run(crashAt: 100, survivors: .none, honest: false)
        XCTAssertFalse(r.violations.isEmpty)
        XCTAssertFalse(r.restored)
    }
}
