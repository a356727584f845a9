import Foundation
import VZCore
import VZFormats
import VZPlatform
import VZTarget
import XCTest

/// The journal and a replica through the in-process power-loss layer (`CrashLayer`), crashed at
/// every fsync. At every replica write the test checks the invariant: the undo record of each
/// block it touches is already durable.
final class PowerLossTests: XCTestCase {
    typealias X = UndoFixture

    /// Runs the fixture pass through the crash layer, crashing at fsync number `crashAt` (never,
    /// when the pass needs fewer), then recovers. Returns the invariant violations seen, whether
    /// the crash happened, and whether the replica is byte-exact the original after rollback.
    func run(crashAt: Int, survivors: Survivors, honest: Bool = true) throws -> (violations: [String], crashed: Bool, restored: Bool, checks: Int) {
        let dir = try TempDir()
        let original = try X.makeOriginal(dir).contents()
        let world = CrashWorld(syncBudget: crashAt)
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
