import Foundation
import Glibc
import VZCore
import VZFormats
import VZPlatform
import VZTarget
import XCTest

final class RollbackTests: XCTestCase {
    typealias X = UndoFixture

    func testDecision() {
        func d(_ j: UInt64?, _ m: UInt64?) -> Rollback.Action { Rollback.decide(journalStartGeneration: j, mapGeneration: m).action }
        XCTAssertEqual(d(nil, nil), .nothingToDo)
        XCTAssertEqual(d(nil, 4), .nothingToDo)
        XCTAssertEqual(d(4, 4), .rollBack, "map not replaced: the pass did not commit")
        XCTAssertEqual(d(4, 5), .discardJournal, "map renamed in: committed, journal left by a crash")
        XCTAssertEqual(d(0, 1), .discardJournal)
        XCTAssertEqual(d(0, nil), .rollBack, "first pass, no map")
        XCTAssertEqual(d(4, nil), .rollBack, "map missing or corrupt: cannot prove the commit")
        XCTAssertEqual(d(4, 3), .rollBackAndDropMap)
        XCTAssertTrue(Rollback.decide(journalStartGeneration: 4, mapGeneration: 4).reason.contains("generation 4"))
    }

    /// The state after a pass that did not commit: original replica, journal, new content.
    func interruptedPass(_ dir: TempDir) throws -> (FileReplica, original: [UInt8], originalHoles: ExtentSet) {
        let replica = try X.makeOriginal(dir)
        let original = try replica.contents()
        let holes = try replica.holes()
        XCTAssertEqual(holes, X.blockSet([1, 4, 6]), "fixture: the file system must report holes")
        let j = try X.begin(dir)
        try X.runPass(j, replica)
        j.close()
        XCTAssertNotEqual(try replica.contents(), original)
        return (replica, original, holes)
    }

    func testRollbackRestoresBytesAndHoles() throws {
        let dir = try TempDir()
        let (replica, original, holes) = try interruptedPass(dir)
        let outcome = try Rollback.restore(directory: dir.directory, disk: "disk1", replica: replica, logger: X.logger)
        XCTAssertEqual(try replica.contents(), original)
        // Holes are holes again; block 3 (allocated zeros) was journaled as zeros and is now a hole.
        XCTAssertEqual(try replica.holes(), ExtentSet(holes.extents + [X.block(3)]))
        XCTAssertEqual(outcome.dataRecords, 4)
        XCTAssertEqual(outcome.zeroRecords, 4)
        XCTAssertEqual(outcome.restoredBytes, 7 * X.bs + 1000)
        XCTAssertNil(outcome.tail)
        XCTAssertEqual(try dir.directory.entries(), ["disk.img"], "journal and script removed")
        // Nothing left to do: a second run is a no-op.
        XCTAssertEqual(try Rollback.restore(directory: dir.directory, disk: "disk1", replica: replica, logger: X.logger).restoredBytes, 0)
        XCTAssertEqual(try replica.contents(), original)
    }

    /// Rollback killed after every number of replica writes (and at its flush), then run again.
    func testRollbackInterruptedAtEveryStepThenRunAgain() throws {
        for budget in 0...8 {   // 8 records; at 8 the flush fails
            let dir = try TempDir()
            let (replica, original, _) = try interruptedPass(dir)
            let dying = InterruptingReplica(replica, budget: budget, failFlush: budget == 8)
            XCTAssertThrowsError(try Rollback.restore(directory: dir.directory, disk: "disk1", replica: dying, logger: X.logger))
            XCTAssertTrue(dir.exists("disk1.vzundo"), "the journal goes only after the flush (budget \(budget))")
            XCTAssertTrue(dir.exists("vzundo-script"))
            // A second interruption at another point, then a full run.
            let dying2 = InterruptingReplica(replica, budget: budget / 2)
            _ = try? Rollback.restore(directory: dir.directory, disk: "disk1", replica: dying2, logger: X.logger)
            let outcome = try Rollback.recover(directory: dir.directory, disk: "disk1", replica: replica, logger: X.logger)
            XCTAssertEqual(outcome.decision.action, .rollBack)
            XCTAssertEqual(try replica.contents(), original, "budget \(budget)")
            XCTAssertEqual(try dir.directory.entries(), ["disk.img"])
        }
    }

    func writeMap(_ dir: TempDir, generation: UInt64) throws {
        let map = BlockMap(blockSize: X.blockSize, capacity: X.capacity, filledWith: .zero)
        try dir.directory.writeAtomically("disk1.vzmap", VzmapFile.encode(map, generation: generation, createdUnixSeconds: 1))
    }

    func testRecoverKeepsACommittedPassAndRemovesItsJournal() throws {
        let dir = try TempDir()
        let (replica, original, _) = try interruptedPass(dir)   // journal start generation 5
        let committed = try replica.contents()
        try writeMap(dir, generation: 6)
        var opened = false
        let outcome = try Rollback.recover(directory: dir.directory, disk: "disk1", logger: X.logger,
                                           openReplica: { opened = true; return replica })
        XCTAssertEqual(outcome.decision.action, .discardJournal)
        XCTAssertFalse(opened, "a committed pass needs no replica")
        XCTAssertEqual(try replica.contents(), committed)
        XCTAssertNotEqual(committed, original)
        XCTAssertEqual(try dir.directory.entries(), ["disk.img", "disk1.vzmap"])
    }

    func testRecoverRollsBackWhenTheMapWasNotReplaced() throws {
        for mapState in ["same", "missing", "corrupt", "older"] {
            let dir = try TempDir()
            let (replica, original, _) = try interruptedPass(dir)
            switch mapState {
            case "same": try writeMap(dir, generation: 5)
            case "corrupt":
                try writeMap(dir, generation: 6)
                var b = try dir.bytes("disk1.vzmap"); b[30] ^= 1; try dir.write("disk1.vzmap", b)   // generation field
            case "older": try writeMap(dir, generation: 2)
            default: break
            }
            let outcome = try Rollback.recover(directory: dir.directory, disk: "disk1", replica: replica, logger: X.logger)
            XCTAssertEqual(outcome.decision.action, mapState == "older" ? .rollBackAndDropMap : .rollBack, mapState)
            XCTAssertEqual(try replica.contents(), original, mapState)
            XCTAssertFalse(dir.exists("disk1.vzundo"))
            XCTAssertFalse(dir.exists("vzundo-script"))
            XCTAssertEqual(dir.exists("disk1.vzmap"), mapState == "same" || mapState == "corrupt", mapState)
        }
    }

    func testRecoverWithoutJournalRemovesLeftovers() throws {
        let dir = try TempDir()
        try dir.write(".disk1.vzundo.tmp", [1, 2, 3])
        try dir.write("vzundo-script", Array("#!/bin/sh\n".utf8))
        try dir.write("other.vzundo", [])   // another disk's unfinished pass keeps the script
        var outcome = try Rollback.recover(directory: dir.directory, disk: "disk1", logger: X.logger, openReplica: { nil })
        XCTAssertEqual(outcome.decision.action, .nothingToDo)
        XCTAssertEqual(try dir.directory.entries(), ["other.vzundo", "vzundo-script"])
        try FileManager.default.removeItem(atPath: "\(dir.path)/other.vzundo")
        outcome = try Rollback.recover(directory: dir.directory, disk: "disk1", logger: X.logger, openReplica: { nil })
        XCTAssertEqual(try dir.directory.entries(), [])
        XCTAssertFalse(Rollback.hasUncommittedPass(directory: dir.directory, disk: "disk1"))
    }

    func testRecoverRefusesWhatItCannotApply() throws {
        let dir = try TempDir()
        _ = try interruptedPass(dir)
        XCTAssertTrue(Rollback.hasUncommittedPass(directory: dir.directory, disk: "disk1"))
        XCTAssertEqual(try Rollback.disksWithJournals(in: dir.directory), ["disk1"])
        XCTAssertThrowsError(try Rollback.recover(directory: dir.directory, disk: "disk1", logger: X.logger, openReplica: { nil })) {
            XCTAssertEqual(($0 as? VZError)?.kind, .targetRefused)
        }
        let other = try FileReplica(dir, name: "other.img", capacity: X.capacity + 1)
        XCTAssertThrowsError(try Rollback.restore(directory: dir.directory, disk: "disk1", replica: other, logger: X.logger)) {
            XCTAssertEqual(($0 as? VZError)?.kind, .targetRefused)
        }
        XCTAssertEqual(try other.holes(), ExtentSet([Extent(offset: 0, length: X.capacity + 1)]), "nothing was written")
        // A corrupt header: recovery refuses and names the file.
        var b = try dir.bytes("disk1.vzundo"); b[40] ^= 1; try dir.write("disk1.vzundo", b)
        XCTAssertThrowsError(try Rollback.recover(directory: dir.directory, disk: "disk1", replica: other, logger: X.logger)) { e in
            XCTAssertEqual((e as? VZError)?.kind, .corruptJournal)
            XCTAssertTrue("\(e)".contains("disk1.vzundo"), "\(e)")
        }
        XCTAssertTrue(dir.exists("disk1.vzundo"))
    }

    func testTornTailInTheFileIsIgnored() throws {
        let dir = try TempDir()
        let (replica, original, _) = try interruptedPass(dir)
        let full = try dir.bytes("disk1.vzundo")
        // A record written but not fsynced: cut in its data; then garbage after a whole file.
        let torn = UndoJournalFormat.encodeRecord(kind: .data, passID: try UndoJournalFormat.decodeHeader(full, fileName: "j").passID,
                                                  sequence: 8, extent: X.block(0), data: X.pattern(77, Int(X.bs)))
        try dir.write("disk1.vzundo", full + torn.prefix(5000))
        let outcome = try Rollback.restore(directory: dir.directory, disk: "disk1", replica: replica, logger: X.logger)
        XCTAssertEqual(outcome.tail, .truncated)
        XCTAssertEqual(outcome.ignoredTailBytes, 5000)
        XCTAssertEqual(try replica.contents(), original, "block 0 (torn record) was never overwritten, and is left alone")
    }

    /// A journal much larger than the 1 MiB read chunk: records straddle chunk boundaries.
    func testStreamsALargeJournal() throws {
        let dir = try TempDir()
        let capacity = 40 * X.bs + 333
        let replica = try FileReplica(dir, capacity: capacity)
        for i in 0..<41 where i % 5 != 0 {
            try replica.write(at: UInt64(i) * X.bs, X.pattern(i, Int(X.block(UInt64(i), capacity: capacity).length)))
        }
        let original = try replica.contents()
        let j = try X.begin(dir, capacity: capacity)
        for i in stride(from: 40, through: 0, by: -1) {
            let e = X.block(UInt64(i), capacity: capacity)
            try j.protect([e], replica: replica)
            try replica.write(at: e.offset, X.pattern(1000 + i, Int(e.length)))
        }
        XCTAssertGreaterThan(j.stats.bytesWritten, 2 << 20)
        let outcome = try Rollback.restore(directory: dir.directory, disk: "disk1", replica: replica, logger: X.logger)
        XCTAssertEqual(outcome.dataRecords, 32)
        XCTAssertEqual(outcome.zeroRecords, 9)
        XCTAssertEqual(try replica.contents(), original)
    }
}
