import Foundation
import XCTest

/// Issue 4, "Proof": the replica ends exactly at the last committed pass (OLD) or at the new one
/// (NEW), whatever stops a pass — a kill of the target at every durable operation, a killed
/// source, a cut transport, a full datastore, ENOSPC and EIO on any write or fsync. Every
/// scenario checks the replica's hash, the map against the replica (`verify`), that no working
/// file is left, and that the next pass converges re-sending only what the interrupted pass
/// changed. The fault reaches only the target (FaultFixture.targetCommand), via VZREPL_FAULT.
final class FaultTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    // MARK: 1. kill the target at every durable operation

    struct SweepSummary {
        var lastOperation = 0
        var lastRolledBack = 0
        var firstCommitted: Int?
        var sawHalfApplied = false
        var sawCompleteButUncommitted = false
        var sawCommittedWithJournal = false
        /// Killed after the commit rename but before the pass record (DISK.vzpass) was replaced.
        var sawCommittedWithOldPassRecord = false
    }

    /// Interleaving: the writer thread's replica writes and the submitting thread's journal
    /// writes and fsyncs are counted in whatever order they happen, so which operation is the
    /// k-th can differ between runs. The sweep does not depend on it: every operation before the
    /// commit rename is counted before it (the writer is joined before the commit), so the
    /// boundary (`firstCommitted == lastRolledBack + 1`) is the same for every interleaving, and
    /// each invariant below holds for whatever state a kill leaves. ApplyPathPowerLossTests forces
    /// both extreme interleavings in process and checks the undo invariant at every write.
    ///
    /// `kill-at:k` for k = 1, 2, ... until the pass completes: after each kill the source fails,
    /// `recover` settles the disk, the invariants hold, and the next pass converges (with
    /// `convergeEach` false, only the first time each kind of state is met, to save time).
    func killSweep(_ fx: FaultFixture, convergeEach: Bool = true) throws -> SweepSummary {
        var s = SweepSummary()
        var kinds = Set<String>()
        var k = 1
        while true {
            try fx.restoreOld()
            let p = try fx.pass(fault: "kill-at:\(k)")
            if p.result.status == 0 {
                // k is past the pass's last durable operation: the pass ran to its end.
                XCTAssertEqual(p.targetStatus, 0, "kill-at:\(k)")
                try fx.assertSettled("kill-at:\(k) (never reached)", expect: [.new])
                break
            }
            XCTAssertEqual(p.targetStatus, 137, "kill-at:\(k): the target was not killed: \(p.result.stdout)")
            fx.assertFailed(p, "kill-at:\(k)")
            s.lastOperation = k

            // The state the kill left, before recovery.
            let before = try fx.replicaState()
            let committed = try fx.mapGeneration() == fx.oldGeneration + 1
            let journal = FileManager.default.fileExists(atPath: fx.journal)
            // status: the pass record never claims a generation the map does not have; a record
            // of the pass before is reported as such, not as the map's.
            let last = try fx.statusLastPass()
            XCTAssertEqual(last.pending, journal, "kill-at:\(k): status pending")
            if let g = last.generation {
                XCTAssertEqual(g, try fx.mapGeneration(), "kill-at:\(k): status reports a last pass of another generation than the map's")
            }
            if committed && last.generation == nil {
                XCTAssertTrue(last.note?.contains("describes generation \(fx.oldGeneration)") ?? false, "kill-at:\(k): \(last.note ?? "no note")")
                s.sawCommittedWithOldPassRecord = true
            }
            if !committed { XCTAssertEqual(last.generation, fx.oldGeneration, "kill-at:\(k): the pass record of the old pass is kept") }
            if committed {
                XCTAssertEqual(before, .new, "kill-at:\(k): the map was committed before the replica held the new state")
                if journal { s.sawCommittedWithJournal = true }
            } else {
                if before == nil { s.sawHalfApplied = true }
                if before == .new { s.sawCompleteButUncommitted = true }
                if before != .old {
                    XCTAssertTrue(journal, "kill-at:\(k): the replica was changed but there is no journal to undo it")
                }
            }

            let rec = try fx.recover()
            XCTAssertEqual(rec.result.status, 0, "kill-at:\(k): recover: \(rec.result.stdout)\n\(rec.log)")
            let state = try fx.assertSettled("kill-at:\(k), then recover", expect: committed ? [.new] : [.old])
            if committed {
                s.firstCommitted = s.firstCommitted ?? k
            } else {
                XCTAssertNil(s.firstCommitted, "kill-at:\(k) rolled back, but kill-at:\(s.firstCommitted ?? 0) had committed: the commit point is not sharp")
                s.lastRolledBack = k
            }
            let kind = "\(before.map(\.rawValue) ?? "mixed")/\(committed)/\(journal)"
            if convergeEach || kinds.insert(kind).inserted {
                try fx.assertConverges("kill-at:\(k)", from: state)
            }
            k += 1
            if k > 400 { XCTFail("the pass never completed"); break }
        }
        // The sweep went through the states that matter.
        XCTAssertTrue(s.sawHalfApplied, "no kill left a half-applied replica")
        XCTAssertTrue(s.sawCompleteButUncommitted, "no kill left a fully written but uncommitted replica")
        XCTAssertTrue(s.sawCommittedWithJournal, "no kill fell between the commit rename and the journal's removal")
        XCTAssertTrue(s.sawCommittedWithOldPassRecord, "no kill fell between the commit rename and the pass record")
        XCTAssertNotNil(s.firstCommitted)
        XCTAssertEqual(s.firstCommitted, s.lastRolledBack + 1)
        return s
    }

    /// 4 MiB of 64 KiB blocks, one group commit. K = 35 when this was written (kills 1...27
    /// roll back, 28...35 are after the commit rename).
    ///
    func testKillTheTargetAtEveryDurableOperation() throws {
        let started = Date()
        let fx = FaultFixture(h, .small)
        try fx.prepare()
        let s = try killSweep(fx)
        print("kill sweep (small): K = \(s.lastOperation), rolled back for k <= \(s.lastRolledBack), committed for k >= \(s.firstCommitted ?? -1), \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        XCTAssertGreaterThanOrEqual(s.lastOperation, fx.changedBlocks, "fewer durable operations than changed blocks")
        fx.assertNoLeftovers("after recover (kill sweep, small disk)")
    }

    /// 8 MiB blocks: the pass protects and writes two batches (two group commits), so kills fall
    /// between a batch already written to the replica and the next batch's records. K = 29 when
    func testKillTheTargetAtEveryDurableOperationAcrossTwoGroupCommits() throws {
        let started = Date()
        let fx = FaultFixture(h, .bigBlocks)
        try fx.prepare()
        let s = try killSweep(fx, convergeEach: false)
        print("kill sweep (8 MiB blocks, two batches): K = \(s.lastOperation), rolled back for k <= \(s.lastRolledBack), committed for k >= \(s.firstCommitted ?? -1), \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        fx.assertNoLeftovers("after recover (kill sweep, 8 MiB blocks)")
    }

    // MARK: 3. kill the source mid-pass

    func testKilledSourceMidPassIsRolledBackByTheTarget() throws {
        let fx = FaultFixture(h, .large)
        try fx.prepare()
        let log = fx.nextLogPath("target")
        let job = try fx.writeJob(log: log)
        try? FileManager.default.removeItem(atPath: fx.statusFile)

        let source = Process()
        source.executableURL = URL(fileURLWithPath: AgentHarness.source)
        source.arguments = ["replicate", "--job", job, "--log-file", h.dir + "/source.log"]
        source.standardOutput = FileHandle.nullDevice
        source.standardError = FileHandle.nullDevice
        try source.run()
        // The first group commit's records take ~17.8 MB of journal; past 24 MB the target is
        // recording the second batch, so the first one is in the replica already.
        var journalSize: UInt64 = 0
        let deadline = Date().addingTimeInterval(60)
        while source.isRunning, Date() < deadline {
            journalSize = ((try? FileManager.default.attributesOfItem(atPath: fx.journal))?[.size] as? UInt64) ?? 0
            if journalSize > 24_000_000 { break }
            usleep(1000)
        }
        kill(source.processIdentifier, SIGKILL)
        source.waitUntilExit()
        XCTAssertEqual(source.terminationReason, .uncaughtSignal, "the source finished before it could be killed (journal \(journalSize) bytes)")
        XCTAssertGreaterThan(journalSize, 24_000_000)

        // The target sees the end of its input and rolls back by itself; no `recover` here.
        var status: Int32?
        let waitUntil = Date().addingTimeInterval(60)
        while status == nil, Date() < waitUntil { usleep(10_000); status = fx.readTargetStatus() }
        XCTAssertEqual(status, 1, "the target should fail the pass (not crash, not succeed)")
        let targetLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertTrue(targetLog.contains("after the failure: rollBack"), targetLog)
        XCTAssertTrue(targetLog.contains("rolled back"), targetLog)

        let state = try fx.assertSettled("source killed mid-pass", expect: [.old])
        fx.assertNoLeftovers("after the target's own rollback (source killed)")
        try fx.assertConverges("source killed mid-pass", from: state)
    }

    // MARK: 4. cut the transport mid-frame

    func testTransportCutMidFrameIsRolledBackByTheTarget() throws {
        let fx = FaultFixture(h, .large)
        try fx.prepare()
        // 20 MiB and a bit: the first 16 MiB group commit is applied, the stream ends inside a frame.
        let p = try fx.pass(stdinLimit: (20 << 20) + 12345)
        fx.assertFailed(p, "stream cut at 20 MiB + 12345 bytes")
        XCTAssertEqual(p.targetStatus, 1, "the target should fail the pass, not crash: \(p.targetLog)")
        XCTAssertTrue(p.targetLog.contains("after the failure: rollBack"), p.targetLog)
        let restored = p.targetLog.components(separatedBy: "\n").first { $0.contains("rolled back") } ?? ""
        XCTAssertTrue(restored.contains("blocks of data") && !restored.contains(": 0 blocks of data and 0 zero blocks"),
                      "the cut came before anything was applied: \(restored)")

        let state = try fx.assertSettled("transport cut mid-frame", expect: [.old])
        fx.assertNoLeftovers("after the target's own rollback (transport cut)")
        try fx.assertConverges("transport cut mid-frame", from: state)
    }

    // MARK: 5. ENOSPC

    /// A real full file system: tmpfs datastores in a private mount namespace, all passes and
    /// checks in one shell inside it (the mounts vanish with it). An 8 MiB datastore cannot hold
    /// even the pass's reserve (refused before the pass); a 26 MiB one holds the seed but not a
    /// pass that rewrites the whole disk (refused before any block is written); grown to 64 MiB
    /// the same pass converges.
    func testFullDatastoreOnTmpfs() throws {
        let bs = 65536
        let old = h.dir + "/old.raw", new = h.dir + "/new.raw"
        try AgentHarness.makeImage(old, size: UInt64(64 * bs))
        try AgentHarness.write(AgentHarness.randomBytes(64 * bs, seed: 61), to: old, at: 0)
        try AgentHarness.makeImage(new, size: UInt64(64 * bs))
        try AgentHarness.write(AgentHarness.randomBytes(64 * bs, seed: 62), to: new, at: 0)
        let store = h.dir + "/store", tiny = h.dir + "/tiny", out = h.dir + "/out"
        for d in [store, tiny, out] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }

        func job(_ name: String, root: String, source: String) throws -> String {
            let obj: [String: Any] = [
                "job": "vm1", "mode": "differential", "blockSize": bs, "whitespace": true,
                "target": ["transport": "exec",
                           "command": [AgentHarness.target, "serve", "--stdio", "--root", root, "--log-file", "\(out)/\(name).target.log"],
                           "idleTimeoutSeconds": 30],
                "disks": [["name": "disk0", "source": source]],
            ]
            let path = "\(h.dir)/\(name).json"
            try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
            return path
        }
        let q: (String) -> String = { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let src = q(AgentHarness.source), tgt = q(AgentHarness.target), o = q(out)
        func step(_ name: String, _ jobPath: String, _ root: String) -> String {
            """
            \(src) replicate --job \(q(jobPath)) --log-file \(o)/source.log > \(o)/\(name).jsonl 2>/dev/null; echo $? > \(o)/\(name).status
            sha256sum \(q(root))/vm1/disk0-flat.vmdk | cut -c1-64 > \(o)/\(name).sha
            ls -a \(q(root))/vm1 > \(o)/\(name).ls
            \(tgt) verify --root \(q(root)) --job vm1 --disk disk0 > \(o)/\(name).verify; echo $? > \(o)/\(name).verifystatus
            """
        }
        let script = """
            mount -t tmpfs -o size=8m tmpfs \(q(tiny)) || exit 90
            mount -t tmpfs -o size=26m tmpfs \(q(store)) || exit 91
            \(step("tiny", try job("tiny", root: tiny, source: old), tiny))
            \(step("seed", try job("seed", root: store, source: old), store))
            \(step("full", try job("full", root: store, source: new), store))
            mount -o remount,size=64m \(q(store)) || exit 92
            \(step("grown", try job("grown", root: store, source: new), store))
            """
        let r = try AgentHarness.run(["/usr/bin/unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script])
        XCTAssertEqual(r.status, 0, "unshare: \(r.stderr)")
        func read(_ f: String) -> String {
            ((try? String(contentsOfFile: "\(out)/\(f)", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func events(_ name: String) -> AgentHarness.Result {
            AgentHarness.Result(status: Int32(read("\(name).status")) ?? -1, output: Data(read("\(name).jsonl").utf8), stderr: "")
        }
        func working(_ name: String) -> [String] {
            read("\(name).ls").split(separator: "\n").map(String.init)
                .filter { $0.hasSuffix(".vzundo") || $0 == "vzundo-script" || ($0.hasPrefix(".") && $0.hasSuffix(".tmp") && $0 != ".") }
        }
        let oldHash = try AgentHarness.sha256(old), newHash = try AgentHarness.sha256(new)

        // Too small for the pass's reserve: refused before the pass, nothing to undo.
        let tinyRun = events("tiny")
        XCTAssertEqual(tinyRun.status, 5, tinyRun.stdout)
        XCTAssertEqual(tinyRun.events("error").first?["kind"] as? String, "noSpace", tinyRun.stdout)
        XCTAssertTrue((tinyRun.events("error").first?["message"] as? String ?? "").contains("free"), tinyRun.stdout)
        XCTAssertEqual(working("tiny"), [], "working files on the 8 MiB datastore")
        XCTAssertFalse(read("tiny.ls").contains("disk0.vzmap"), "a refused seed must not commit a map")

        // The seed fits.
        XCTAssertEqual(read("seed.status"), "0", read("seed.jsonl"))
        XCTAssertEqual(read("seed.sha"), oldHash)

        // A pass rewriting the whole disk does not: refused with noSpace, replica untouched.
        let full = events("full")
        XCTAssertEqual(full.status, 5, full.stdout)
        let e = full.events("error").first
        XCTAssertEqual(e?["kind"] as? String, "noSpace", full.stdout)
        XCTAssertTrue((e?["message"] as? String ?? "").contains("free"), "\(String(describing: e))")
        XCTAssertNil(full.finished())
        XCTAssertEqual(read("full.sha"), oldHash, "the refused pass changed the replica")
        XCTAssertEqual(read("full.verifystatus"), "0", read("full.verify"))
        XCTAssertEqual(working("full"), [], "working files after the refused pass")

        // With room, the same pass converges.
        let grown = events("grown")
        XCTAssertEqual(grown.status, 0, grown.stdout)
        XCTAssertEqual(read("grown.sha"), newHash)
        XCTAssertEqual(read("grown.verifystatus"), "0", read("grown.verify"))
        XCTAssertEqual(grown.finished()?["dataBlocks"] as? Int, 64)
        XCTAssertEqual(working("grown"), [])
    }

    // MARK: 5b, 6. ENOSPC and EIO injected at every write / fsync

    /// `RULE:N` (or `RULE:N+`: N and every later call) for N = 1, 2, ... until the pass no
    /// longer meets the fault. Each failed pass: exit 5 with the error kind, never success; with
    /// a single failure the target rolls back by itself (checked before `recover`); with `+`
    /// even its rollback may fail, and `recover` must finish the job. After `recover` the
    /// invariants hold and the next pass converges.
    func errorSweep(_ rule: String, andLater: Bool, kind: String, errnoText: String) throws -> Int {
        let started = Date()
        let fx = FaultFixture(h, .small)
        try fx.prepare()
        var n = 1
        var failedAfterCommit = 0
        var kinds = Set<String>()
        while true {
            try fx.restoreOld()
            let spec = "\(rule):\(n)\(andLater ? "+" : "")"
            let p = try fx.pass(fault: spec)
            if p.result.status == 0 {
                XCTAssertEqual(p.targetStatus, 0, spec)
                try fx.assertSettled("\(spec) (never reached)", expect: [.new])
                break
            }
            fx.assertFailed(p, spec, exitCodes: [5])
            XCTAssertEqual(p.errorKind, kind, "\(spec): \(p.result.stdout)")
            XCTAssertTrue(p.errorMessage.contains(errnoText), "\(spec): the message does not say \(errnoText): \(p.errorMessage)")
            XCTAssertEqual(p.targetStatus, 1, "\(spec): the target should fail the pass, not crash")
            let committed = try fx.mapGeneration() == fx.oldGeneration + 1
            if committed { failedAfterCommit += 1 }
            if !andLater {
                // A single failure: the target's own rollback settles the disk, no `recover` needed.
                try fx.assertSettled("\(spec), the target's own rollback", expect: committed ? [.new] : [.old])
            } else if !FileManager.default.fileExists(atPath: fx.journal) {
                // The rollback succeeded, or nothing needed undoing.
                XCTAssertNotNil(try fx.replicaState(), "\(spec): no journal left, but the replica is neither old nor new")
            }
            let rec = try fx.recover()
            XCTAssertEqual(rec.result.status, 0, "\(spec): recover: \(rec.result.stdout)\n\(rec.log)")
            let state = try fx.assertSettled("\(spec), then recover", expect: committed ? [.new] : [.old])
            // With "+", the states after recovery are those of the single-failure sweeps; the
            // convergence from each is checked the first time it is met.
            let kind = "\(state.map(\.rawValue) ?? "?")/\(p.targetLog.contains("rollback failed"))"
            if !andLater || kinds.insert(kind).inserted {
                try fx.assertConverges(spec, from: state)
            }
            n += 1
            if n > 200 { XCTFail("the pass never completed"); break }
        }
        // Failures after the commit rename (the CID, the cleanup) still fail the pass, but the
        // replica is the new state, as the map says.
        XCTAssertGreaterThan(n, 2)
        print("\(rule)\(andLater ? "+" : "") sweep: \(n - 1) calls failed one by one (\(failedAfterCommit) after the commit), \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        fx.assertNoLeftovers("after a failed pass (\(rule)\(andLater ? "+" : ""))")
        return n - 1
    }

    func testENOSPCAtEveryWrite() throws {
        _ = try errorSweep("enospc-write", andLater: false, kind: "noSpace", errnoText: "No space left on device")
    }

    func testEIOAtEveryWrite() throws {
        _ = try errorSweep("eio-write", andLater: false, kind: "replicaIO", errnoText: "Input/output error")
    }

    /// Every write from the N-th on fails, including those of the target's own rollback.
    func testEIOAtEveryWriteAndAllLaterOnes() throws {
        _ = try errorSweep("eio-write", andLater: true, kind: "replicaIO", errnoText: "Input/output error")
    }

    /// Includes eio-fsync:1. An fsync failure is final: the pass fails, never retries and goes on.
    func testEIOAtEveryFsync() throws {
        _ = try errorSweep("eio-fsync", andLater: false, kind: "replicaIO", errnoText: "Input/output error")
    }

    /// The writeback a batch starts early (sync_file_range) is a hint, but its I/O error is the
    /// replica's: the pass fails and rolls back as for a failed write.
    func testEIOAtEveryWritebackStart() throws {
        _ = try errorSweep("eio-writeback", andLater: false, kind: "replicaIO", errnoText: "Input/output error")
    }

    func testEIOAtEveryFsyncAndAllLaterOnes() throws {
        _ = try errorSweep("eio-fsync", andLater: true, kind: "replicaIO", errnoText: "Input/output error")
    }
}
