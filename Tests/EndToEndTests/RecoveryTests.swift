import Foundation
import VZCore
import VZFormats
import XCTest

/// Issue 4, "Proof", the recovery side: recovery killed at every step and run again, torn and
/// garbage journal tails, bit-flipped maps, a damaged journal header and its documented runbook,
/// and `vzundo-script` run by hand. The interrupted states come from real target kills
/// (`kill-at:k`, FaultFixture.interrupt).
final class RecoveryTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    /// The largest k below the commit rename whose kill leaves the replica half old, half new.
    func halfAppliedKill(_ fx: FaultFixture, commit: Int) throws -> Int {
        var k = commit - 1
        while k > 0 {
            try fx.interrupt(at: k)
            if try fx.replicaState() == nil { return k }
            k -= 1
        }
        XCTFail("no kill point leaves a half-applied replica")
        return 0
    }

    /// The largest k below the commit rename whose kill leaves every block written but nothing
    /// committed and no temp file of the commit yet (the kill at the replica's flush): the most
    /// a rollback has to undo.
    func fullyWrittenKill(_ fx: FaultFixture, commit: Int) throws -> Int {
        var k = commit
        while k > 0 {
            try fx.interrupt(at: k)
            if try !fx.workingFiles().contains(where: { $0.hasSuffix(".tmp") }) {
                XCTAssertEqual(try fx.replicaState(), .new, "kill-at:\(k): every block should be written")
                return k
            }
            k -= 1
        }
        XCTFail("no kill point below the commit without temp files")
        return 0
    }

    /// The first k whose kill leaves every record of the pass in the journal (the next durable
    /// operation is the batch's fsync): found by bisection below the commit rename.
    func allRecordsWrittenKill(_ fx: FaultFixture, commit: Int) throws -> Int {
        func complete(_ k: Int) throws -> Bool {
            try fx.interrupt(at: k)
            guard FileManager.default.fileExists(atPath: fx.journal) else { return false }
            return try JournalRecords(path: fx.journal).records.count >= fx.changedBlocks
        }
        var lo = 1, hi = commit  // lo: incomplete; hi: complete
        let first = try complete(lo), last = try complete(hi)
        XCTAssertFalse(first)
        XCTAssertTrue(last)
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if try complete(mid) { hi = mid } else { lo = mid }
        }
        try fx.interrupt(at: hi)
        return hi
    }

    func append(_ bytes: [UInt8], to path: String) throws {
        let f = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try f.seekToEnd()
        try f.write(contentsOf: Data(bytes))
        try f.close()
    }

    func truncate(_ path: String, to size: Int) throws {
        let f = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try f.truncate(atOffset: UInt64(size))
        try f.close()
    }

    // MARK: 2. kill recovery at every step

    func testKillRecoveryAtEveryStepThenRunItAgain() throws {
        let started = Date()
        let fx = FaultFixture(h, .small)
        try fx.prepare()
        let commit = try fx.findCommitRename()
        let full = try fullyWrittenKill(fx, commit: commit)
        let half = try halfAppliedKill(fx, commit: full)
        var report: [String] = []
        for (k, what) in [(full, "a fully written, uncommitted pass"), (half, "a half-applied pass")] {
            try fx.interrupt(at: k)
            let before = try fx.replicaState()
            if k == full {
                XCTAssertEqual(before, .new, "kill-at:\(k): every block is written, nothing committed")
            } else {
                XCTAssertNil(before, "kill-at:\(k) should leave a half-applied replica")
            }
            XCTAssertEqual(try fx.mapGeneration(), fx.oldGeneration)
            XCTAssertTrue(FileManager.default.fileExists(atPath: fx.journal))
            try fx.save(as: "killed")

            var j = 1
            while true {
                try fx.restore(from: "killed")
                let r = try fx.recover(fault: "kill-at:\(j)")
                if r.result.status == 0 {
                    // j is past recovery's last durable operation.
                    XCTAssertTrue(r.result.stdout.contains("rollBack"), r.result.stdout)
                    try fx.assertSettled("\(what): recovery with kill-at:\(j) (never reached)", expect: [.old])
                    break
                }
                XCTAssertEqual(r.result.status, 137, "\(what): recovery with kill-at:\(j) was not killed: \(r.result.stdout)")
                // The journal may go only after the originals are back and flushed.
                if !FileManager.default.fileExists(atPath: fx.journal) {
                    XCTAssertEqual(try fx.replicaState(), .old, "\(what): recovery killed at \(j) removed the journal before the replica was restored")
                }
                let again = try fx.recover()
                XCTAssertEqual(again.result.status, 0, "\(what): recover after a recovery killed at \(j): \(again.result.stdout)\n\(again.log)")
                try fx.assertSettled("\(what): recovery killed at \(j), then recover", expect: [.old])
                // Idempotent: a third run finds nothing and changes nothing.
                let third = try fx.recover()
                XCTAssertEqual(third.result.status, 0)
                XCTAssertTrue(third.result.stdout.contains("0 had an unfinished pass"), third.result.stdout)
                XCTAssertEqual(try fx.replicaState(), .old)
                j += 1
                if j > 400 { XCTFail("recovery never completed"); break }
            }
            let steps = j - 1
            XCTAssertGreaterThanOrEqual(steps, fx.changedBlocks, "\(what): recovery took fewer durable steps than the journal has records")

            // Killed several times in a row, then finished.
            try fx.restore(from: "killed")
            for jj in [steps / 2, steps / 2, steps] {
                XCTAssertEqual(try fx.recover(fault: "kill-at:\(jj)").result.status, 137)
            }
            XCTAssertEqual(try fx.recover().result.status, 0)
            let state = try fx.assertSettled("\(what): recovery killed three times, then recover", expect: [.old])
            try fx.assertConverges("\(what): after the recoveries", from: state)
            report.append("\(what) (kill-at:\(k)): recovery killed at each of its \(steps) durable steps")
        }
        print("recovery kill sweep: " + report.joined(separator: "; ") + ", \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        fx.assertNoLeftovers("after recover (recovery kill sweep)")
    }

    // MARK: 8. torn and garbage journal tails

    /// Everything after the last whole record is ignored: random garbage, a record cut short, a
    /// record with a bad checksum — and a valid-looking record behind any of them, which must be
    /// ignored too (only the prefix up to the first bad record is trusted). A control shows the
    /// crafted record is applied when it stands in the valid prefix.
    func testGarbageAndTornJournalTailsAreIgnored() throws {
        let fx = FaultFixture(h, .small)
        try fx.prepare()
        let commit = try fx.findCommitRename()
        try fx.interrupt(at: try fullyWrittenKill(fx, commit: commit))  // every record durable, every block written
        let journal = try JournalRecords(path: fx.journal)
        XCTAssertEqual(journal.records.count, fx.changedBlocks)
        XCTAssertEqual(journal.validEnd, journal.bytes.count)
        try fx.save(as: "killed")

        let passID = UndoJournalFormat.PassID(bytes: journal.passID)
        let next = UInt64(journal.records.count)
        let garbage = Array(AgentHarness.randomBytes(fx.bs, seed: 77))
        // Blocks 0 and 1 hold data the pass does not touch.
        let record0 = UndoJournalFormat.encodeRecord(kind: .data, passID: passID, sequence: next,
                                                     extent: Extent(offset: 0, length: UInt64(fx.bs)), data: garbage)
        let record1 = UndoJournalFormat.encodeRecord(kind: .data, passID: passID, sequence: next + 1,
                                                     extent: Extent(offset: UInt64(fx.bs), length: UInt64(fx.bs)), data: garbage)
        var badCRC = record0
        badCRC[48 + 5] ^= 0x01

        let cases: [(String, [UInt8], Int?)] = [
            ("4096 random bytes", Array(AgentHarness.randomBytes(4096, seed: 78)), 4096),
            ("a record cut short in its data", Array(record0.prefix(48 + 1000)), 48 + 1000),
            ("a record cut short in its header", Array(record0.prefix(30)), 30),
            ("a record with a bad checksum, then a valid one", badCRC + record1, badCRC.count + record1.count),
            ("100 random bytes, then a valid record", Array(AgentHarness.randomBytes(100, seed: 79)) + record0, 100 + record0.count),
            ("a valid record of another pass",
             UndoJournalFormat.encodeRecord(kind: .data, passID: .random(), sequence: next,
                                            extent: Extent(offset: 0, length: UInt64(fx.bs)), data: garbage), nil),
            ("a valid record with a sequence gap",
             UndoJournalFormat.encodeRecord(kind: .data, passID: passID, sequence: next + 5,
                                            extent: Extent(offset: 0, length: UInt64(fx.bs)), data: garbage), nil),
        ]
        for (what, tail, ignored) in cases {
            try fx.restore(from: "killed")
            try append(tail, to: fx.journal)
            let r = try fx.recover()
            XCTAssertEqual(r.result.status, 0, "\(what): \(r.result.stdout)\n\(r.log)")
            if let n = ignored {
                XCTAssertTrue(r.log.contains("ignored a torn tail of \(n) bytes"), "\(what): \(r.log)")
            } else {
                XCTAssertTrue(r.log.contains("ignored a torn tail"), "\(what): \(r.log)")
            }
            try fx.assertSettled("journal + \(what), then recover", expect: [.old])
        }

        // Control: the same crafted record right after the valid prefix is applied (so the cases
        // above were ignored for being behind a bad record, not for being malformed).
        try fx.restore(from: "killed")
        try append(record0, to: fx.journal)
        XCTAssertEqual(try fx.recover().result.status, 0)
        XCTAssertEqual(try fx.blocksDifferingFromOld(), [0], "the crafted record was not applied in the valid prefix")

        try fx.restore(from: "killed")
        XCTAssertEqual(try fx.recover().result.status, 0)
        try fx.assertConverges("after the torn-tail cases", from: try fx.assertSettled("plain recover", expect: [.old]))
        fx.assertNoLeftovers("after recover (torn tails)")
    }

    /// A torn tail as a crash really leaves it: records written but not yet fsynced, whose blocks
    /// the writer has not touched (it fsyncs before it writes the replica). Cut inside the last
    /// record, or inside the first not-yet-applied one.
    func tornTail(_ layout: FaultFixture.Layout, expectAppliedBatch: Bool) throws {
        let fx = FaultFixture(h, layout)
        try fx.prepare()
        let commit = try fx.findCommitRename()
        let k = try allRecordsWrittenKill(fx, commit: commit)
        let journal = try JournalRecords(path: fx.journal)
        let touched = Set(try fx.blocksDifferingFromOld())
        if expectAppliedBatch {
            XCTAssertFalse(touched.isEmpty, "kill-at:\(k): the first batch should be in the replica already")
        } else {
            XCTAssertTrue(touched.isEmpty, "kill-at:\(k): nothing should be written yet")
        }
        // The records at the end whose blocks are untouched: the ones a crash may tear.
        var firstUntouched = journal.records.count
        while firstUntouched > 0, !touched.contains(Int(journal.records[firstUntouched - 1].blockOffset) / fx.bs) {
            firstUntouched -= 1
        }
        XCTAssertLessThan(firstUntouched, journal.records.count, "no record at the tail is unapplied")
        try fx.save(as: "killed")

        var cuts: [(String, Int)] = []
        let last = journal.records[journal.records.count - 1]
        cuts.append(("inside the last record", last.fileOffset + last.size / 2))
        if firstUntouched < journal.records.count - 1 {
            let r = journal.records[firstUntouched]
            cuts.append(("inside the first unapplied record", r.fileOffset + r.size / 2))
        }
        for (what, size) in cuts {
            try fx.restore(from: "killed")
            try truncate(fx.journal, to: size)
            let r = try fx.recover()
            XCTAssertEqual(r.result.status, 0, "\(what): \(r.result.stdout)\n\(r.log)")
            XCTAssertTrue(r.log.contains("ignored a torn tail"), "\(what): \(r.log)")
            try fx.assertSettled("kill-at:\(k), journal cut \(what), then recover", expect: [.old])
        }
        try fx.assertConverges("after the torn journal", from: .old)
        print("torn tail (\(layout.blockSize >> 10) KiB blocks): kill-at:\(k), \(journal.records.count) records, \(touched.count) blocks already written")
        fx.assertNoLeftovers("after recover (torn tail)")
    }

    func testTornLastRecordBeforeAnyBlockIsWritten() throws {
        try tornTail(.small, expectAppliedBatch: false)
    }

    /// 8 MiB blocks, two group commits: the first batch is in the replica, the second batch's
    /// records are torn; recovery must still restore the first batch.
    func testTornSecondBatchAfterTheFirstWasApplied() throws {
        try tornTail(.bigBlocks, expectAppliedBatch: true)
    }

    /// A damaged header is not a torn write (the header is renamed into place whole): recovery
    /// refuses and names the journal; the runbook in Docs/operations.md (move the journal and the
    /// map aside) lets the next pass rebuild the map and converge.
    func testDamagedJournalHeaderIsRefusedAndTheRunbookRecovers() throws {
        let fx = FaultFixture(h, .small)
        try fx.prepare()
        let commit = try fx.findCommitRename()
        _ = try halfAppliedKill(fx, commit: commit)
        let before = try AgentHarness.sha256(fx.replica)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: fx.journal))
        bytes[70] ^= 0x20  // inside the job name: the header checksum fails
        try bytes.write(to: URL(fileURLWithPath: fx.journal))

        let r = try fx.recover()
        XCTAssertEqual(r.result.status, 1, r.result.stdout)
        XCTAssertTrue(r.result.stdout.contains("corruptJournal") && r.result.stdout.contains("disk0.vzundo"), r.result.stdout)
        XCTAssertEqual(try AgentHarness.sha256(fx.replica), before, "a refused recovery touched the replica")
        XCTAssertTrue(FileManager.default.fileExists(atPath: fx.journal))

        // A pass is refused too, rather than writing over an unrecovered journal.
        let refused = try fx.pass()
        fx.assertFailed(refused, "pass beside a damaged journal", exitCodes: [5])
        XCTAssertEqual(try AgentHarness.sha256(fx.replica), before)

        let aside = h.dir + "/aside"
        try FileManager.default.createDirectory(atPath: aside, withIntermediateDirectories: true)
        for f in [fx.journal, fx.mapFile] {
            try FileManager.default.moveItem(atPath: f, toPath: aside + "/" + (f as NSString).lastPathComponent)
        }
        try fx.assertConverges("journal and map moved aside", from: nil, mapStatus: "rebuilt")
    }

    // MARK: 8. bit-flipped maps

    func testBitFlippedMapAfterACommittedPassIsNotTrusted() throws {
        let fx = FaultFixture(h, .small)
        try fx.prepare()
        for (what, offset) in [("the generation in the header", 24), ("an entry's hash", 64 + 33 * 5 + 10)] {
            try fx.restoreOld()
            var map = try Data(contentsOf: URL(fileURLWithPath: fx.mapFile))
            map[offset] ^= 0x04
            try map.write(to: URL(fileURLWithPath: fx.mapFile))
            let p = try fx.pass()
            XCTAssertEqual(p.result.status, 0, "\(what): \(p.result.stdout)")
            XCTAssertEqual(p.result.events("map-untrusted").count, 1, "\(what): \(p.result.stdout)")
            XCTAssertTrue((p.result.events("map-untrusted").first?["reason"] as? String ?? "").contains("disk0.vzmap"), "\(what)")
            let f = try XCTUnwrap(p.result.finished())
            XCTAssertEqual(f["mapStatus"] as? String, "rebuilt")
            // Rebuilt from the replica itself: exactly the changed blocks travel.
            XCTAssertEqual(f["dataBlocks"] as? Int, fx.changedDataBlocks, what)
            XCTAssertEqual(try AgentHarness.sha256(fx.replica), fx.newHash)
            XCTAssertEqual(try fx.verify().status, 0)
            try fx.noteLeftovers("bit-flipped map (\(what))")
            let again = try fx.pass()
            XCTAssertEqual(again.result.finished()?["mapStatus"] as? String, "valid")
            XCTAssertEqual(again.result.finished()?["sentBytes"] as? Int, 0)
        }
        fx.assertNoLeftovers("after a pass over a bit-flipped map")
    }

    /// The map is flipped while a pass is unfinished. A flip in the header: the commit cannot be
    /// proven, so recovery rolls back (even a pass that had committed). A flip in an entry: the
    /// header still proves the generation, so a committed pass stays. Either way the next pass
    /// does not trust the map, rebuilds it from the replica and converges.
    func testBitFlippedMapBesideAnUnfinishedPass() throws {
        let fx = FaultFixture(h, .small)
        try fx.prepare()
        let commit = try fx.findCommitRename()
        let half = try halfAppliedKill(fx, commit: commit)
        let header = 24 + 3, entry = 64 + 33 * 2 + 7  // a byte of the generation; of an entry's hash
        for (k, what, committed) in [(half, "half-applied pass", false), (commit + 1, "committed pass with its journal left", true)] {
            for (flip, offset) in [("header", header), ("entry", entry)] {
                try fx.interrupt(at: k)
                XCTAssertTrue(FileManager.default.fileExists(atPath: fx.journal), "kill-at:\(k)")
                var map = try Data(contentsOf: URL(fileURLWithPath: fx.mapFile))
                map[offset] ^= 0x80
                try map.write(to: URL(fileURLWithPath: fx.mapFile))
                let r = try fx.recover()
                let context = "\(what), bit flipped in the map's \(flip), then recover"
                XCTAssertEqual(r.result.status, 0, "\(context): \(r.result.stdout)\n\(r.log)")
                let expect: FaultFixture.State = committed && flip == "entry" ? .new : .old
                XCTAssertTrue(r.result.stdout.contains(expect == .old ? "rollBack" : "discardJournal"), "\(context): \(r.result.stdout)")
                XCTAssertEqual(try fx.replicaState(), expect, context)
                XCTAssertFalse(FileManager.default.fileExists(atPath: fx.journal), context)
                try fx.noteLeftovers(context)
                // The map is still the flipped one: verify cannot vouch for it; the next pass rebuilds it.
                XCTAssertNotEqual(try fx.verify().status, 0, context)
                try fx.assertConverges(context, from: expect, mapStatus: "rebuilt")
            }
        }
        fx.assertNoLeftovers("after recover (bit-flipped map)")
    }

    // MARK: 9. vzundo-script

    /// During a pass `vzundo-script` sits beside the replica, executable; run by hand it rolls
    /// the uncommitted pass back (or only drops the journal of a committed one) and removes
    /// itself and the journal.
    func testVzundoScriptRollsBackByHand() throws {
        let fx = FaultFixture(h, .small)
        try fx.prepare()
        let commit = try fx.findCommitRename()
        let half = try halfAppliedKill(fx, commit: commit)
        for (k, expect) in [(half, FaultFixture.State.old), (commit + 1, .new)] {
            try fx.interrupt(at: k)
            let attributes = try FileManager.default.attributesOfItem(atPath: fx.script)
            let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0
            XCTAssertEqual(mode & 0o111, 0o111, "kill-at:\(k): vzundo-script is not executable (mode \(String(mode, radix: 8)))")
            let text = try String(contentsOfFile: fx.script, encoding: .utf8)
            XCTAssertTrue(text.hasPrefix("#!/bin/sh"), text)
            XCTAssertTrue(text.contains("rollback") && text.contains(h.root) && text.contains(AgentHarness.target), text)
            XCTAssertTrue(FileManager.default.fileExists(atPath: fx.journal))

            let r = try AgentHarness.run([fx.script])
            XCTAssertEqual(r.status, 0, "kill-at:\(k): \(r.stdout) \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("rolling back disk disk0"), r.stdout)
            XCTAssertFalse(FileManager.default.fileExists(atPath: fx.journal), "kill-at:\(k): the journal is still there")
            XCTAssertFalse(FileManager.default.fileExists(atPath: fx.script), "kill-at:\(k): the script did not remove itself")
            let state = try fx.assertSettled("kill-at:\(k), then vzundo-script", expect: [expect])
            try fx.assertConverges("kill-at:\(k), vzundo-script", from: state)
        }
        fx.assertNoLeftovers("after vzundo-script")
    }
}
