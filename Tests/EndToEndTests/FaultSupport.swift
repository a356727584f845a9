import Foundation
import XCTest

/// Shared machinery of FaultTests and RecoveryTests (issue 4, "Proof"): one disk with an OLD
/// state (the last committed pass) and a NEW state (the source now), passes with a fault injected
/// into the target only, and the invariants every scenario checks once the dust has settled:
///
/// - the replica's SHA-256 is exactly OLD or NEW, and the map's generation says which;
/// - `vzrepl-target verify` agrees (the map describes the replica);
/// - no working file is left (`DISK.vzundo`, `vzundo-script`, `.*.tmp`);
/// - the next normal pass converges, re-sending at most the blocks the interrupted pass changed.
final class FaultFixture {
    enum State: String { case old, new }

    /// How a region of the disk is filled.
    enum Content {
        case random(UInt64)
        case text(Int)
        case zeros
        /// `bytes` random bytes at `at` inside the first block of the region (the block changes).
        case patch(at: Int, bytes: Int, seed: UInt64)
    }

    struct Region {
        var block: Int
        var count: Int
        var content: Content
        init(_ block: Int, _ count: Int, _ content: Content) { self.block = block; self.count = count; self.content = content }
    }

    struct Layout {
        var blockSize: Int
        var blocks: Int
        var old: [Region]
        var new: [Region]

        /// 4 MiB of 64 KiB blocks. The change overwrites data (and part of a text block), turns
        /// data into zeros, writes into a hole and over an explicit zero block: 7 changed blocks.
        static let small = Layout(blockSize: 65536, blocks: 64,
                                  old: [Region(0, 16, .random(11)), Region(20, 4, .text(3)), Region(50, 2, .zeros)],
                                  new: [Region(2, 2, .random(21)), Region(21, 1, .patch(at: 1000, bytes: 100, seed: 26)),
                                        Region(8, 2, .zeros), Region(30, 1, .random(23)), Region(50, 1, .random(25))])

        /// 64 MiB of 64 KiB blocks with 48 MiB changed: three 16 MiB group commits, about a second
        /// per pass — long enough to interrupt from outside.
        static let large = Layout(blockSize: 65536, blocks: 1024,
                                  old: [Region(0, 640, .random(31))],
                                  new: [Region(0, 16, .zeros), Region(128, 768, .random(32))])

        /// 24 MiB of 8 MiB blocks: the 16 MiB group commit covers two blocks, so the pass protects
        /// and writes two batches (data turned to zeros and a hole filled; then data turned to
        /// zeros again) with few durable operations and only one block of data on the wire.
        static let bigBlocks = Layout(blockSize: 8 << 20, blocks: 3,
                                      old: [Region(0, 1, .random(41)), Region(2, 1, .random(42))],
                                      new: [Region(0, 1, .zeros), Region(1, 1, .random(52)), Region(2, 1, .zeros)])
    }

    struct Pass {
        var result: AgentHarness.Result
        /// The target's exit status as its parent shell saw it (137: SIGKILL), nil if unknown.
        var targetStatus: Int32?
        /// What this pass's target logged.
        var targetLog: String
        var errorKind: String? { result.events("error").first?["kind"] as? String }
        var errorMessage: String { result.events("error").first?["message"] as? String ?? "" }
    }

    let h: AgentHarness
    let layout: Layout
    let job = "vm1", disk = "disk0"
    var bs: Int { layout.blockSize }
    var src: String { h.dir + "/source.raw" }
    var oldImage: String { h.dir + "/source-old.raw" }
    var jobDir: String { h.root + "/" + job }
    var replica: String { jobDir + "/\(disk)-flat.vmdk" }
    var journal: String { jobDir + "/\(disk).vzundo" }
    var mapFile: String { jobDir + "/\(disk).vzmap" }
    var script: String { jobDir + "/vzundo-script" }
    var statusFile: String { h.dir + "/target-status" }
    var snapshot: String { h.dir + "/root-old" }

    private(set) var oldHash = ""
    private(set) var newHash = ""
    /// The map generation of the OLD state (the seed commits generation 1).
    private(set) var oldGeneration: UInt64 = 0
    /// Blocks the change turns into other data (sent as data) and into zeros.
    private(set) var changedDataBlocks = 0
    private(set) var changedZeroBlocks = 0
    var changedBlocks: Int { changedDataBlocks + changedZeroBlocks }
    /// Working files found where none may be: collected, asserted once per test (`assertNoLeftovers`).
    private(set) var leftovers: [String] = []
    private var runs = 0

    init(_ h: AgentHarness, _ layout: Layout) {
        self.h = h
        self.layout = layout
    }

    // MARK: set-up

    private func fill(_ regions: [Region], into path: String) throws {
        for r in regions {
            let offset = UInt64(r.block * bs)
            switch r.content {
            case let .random(seed):
                try AgentHarness.write(AgentHarness.randomBytes(r.count * bs, seed: seed), to: path, at: offset)
            case let .text(seed):
                try AgentHarness.write(AgentHarness.textBytes(r.count * bs, seed: seed), to: path, at: offset)
            case .zeros:
                try AgentHarness.write(Data(count: r.count * bs), to: path, at: offset)
            case let .patch(at, bytes, seed):
                try AgentHarness.write(AgentHarness.randomBytes(bytes, seed: seed), to: path, at: offset + UInt64(at))
            }
        }
    }

    /// Writes the OLD source image, seeds the replica with a normal pass (the committed OLD state),
    /// keeps a copy of the datastore to restore before each interrupted pass, then writes the NEW
    /// state into the source and counts the blocks that changed.
    func prepare(file: StaticString = #filePath, line: UInt = #line) throws {
        try AgentHarness.makeImage(src, size: UInt64(bs * layout.blocks))
        try fill(layout.old, into: src)
        let seed = try pass()
        XCTAssertEqual(seed.result.status, 0, "seed pass: \(seed.result.stdout) \(seed.targetLog)", file: file, line: line)
        oldHash = try AgentHarness.sha256(replica)
        XCTAssertEqual(oldHash, try AgentHarness.sha256(src), "the seed did not copy the source", file: file, line: line)
        oldGeneration = try XCTUnwrap(mapGeneration(), file: file, line: line)
        XCTAssertEqual(try workingFiles(), [], "after the seed", file: file, line: line)
        try sh("rm -rf \(q(snapshot)) && cp -a --sparse=always \(q(h.root)) \(q(snapshot)) && cp --sparse=always \(q(src)) \(q(oldImage))")

        try fill(layout.new, into: src)
        newHash = try AgentHarness.sha256(src)
        XCTAssertNotEqual(newHash, oldHash)
        let old = try Data(contentsOf: URL(fileURLWithPath: oldImage)), new = try Data(contentsOf: URL(fileURLWithPath: src))
        for b in 0..<layout.blocks {
            let range = b * bs..<(b + 1) * bs
            guard old[range] != new[range] else { continue }
            if new[range].allSatisfy({ $0 == 0 }) { changedZeroBlocks += 1 } else { changedDataBlocks += 1 }
        }
        XCTAssertGreaterThan(changedDataBlocks, 0)
    }

    /// Puts the datastore back to the committed OLD state (as the seed left it).
    func restoreOld() throws {
        try sh("rm -rf \(q(h.root)) && cp -a --sparse=always \(q(snapshot)) \(q(h.root))")
    }

    /// Copies the datastore as it is now (e.g. right after a kill) to `name`, or back from it.
    func save(as name: String) throws {
        try sh("rm -rf \(q(h.dir + "/" + name)) && cp -a --sparse=always \(q(h.root)) \(q(h.dir + "/" + name))")
    }

    func restore(from name: String) throws {
        try sh("rm -rf \(q(h.root)) && cp -a --sparse=always \(q(h.dir + "/" + name)) \(q(h.root))")
    }

    // MARK: running the agents

    /// Single-quoted for sh.
    func q(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    @discardableResult
    func sh(_ script: String, file: StaticString = #filePath, line: UInt = #line) throws -> AgentHarness.Result {
        let r = try AgentHarness.run(["/bin/sh", "-c", script])
        XCTAssertEqual(r.status, 0, "sh -c \(script): \(r.stderr)", file: file, line: line)
        return r
    }

    /// The target command of a job: `vzrepl-target serve` run by a shell that sets the fault only
    /// for the target (never for the source), optionally passes only the first `stdinLimit` bytes
    /// of the source's stream, and records the target's exit status (137 after SIGKILL).
    func targetCommand(fault: String?, stdinLimit: Int?, log: String) -> [String] {
        var line = ""
        if let n = stdinLimit { line += "stdbuf -o0 head -c \(n) | " }  // unbuffered: the banners must pass at once
        if let f = fault { line += "VZREPL_FAULT=\(q(f)) " }
        line += "\"$0\" \"$@\"; echo $? > \(q(statusFile))"
        return ["/bin/sh", "-c", line, AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", log,
                "--idle-timeout", "30"]
    }

    func writeJob(fault: String? = nil, stdinLimit: Int? = nil, log: String) throws -> String {
        let obj: [String: Any] = [
            "job": job, "mode": "differential", "blockSize": bs, "whitespace": true,
            "target": ["transport": "exec", "command": targetCommand(fault: fault, stdinLimit: stdinLimit, log: log),
                       "idleTimeoutSeconds": 30],
            "disks": [["name": disk, "source": src]],
        ]
        let path = h.dir + "/job-faults.json"
        try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted]).write(to: URL(fileURLWithPath: path))
        return path
    }

    func nextLogPath(_ what: String) -> String {
        runs += 1
        return h.dir + "/\(what)-\(runs).log"
    }

    func readTargetStatus() -> Int32? {
        guard let s = try? String(contentsOfFile: statusFile, encoding: .utf8) else { return nil }
        return Int32(s.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// One pass of the job; `fault` is the target's VZREPL_FAULT.
    func pass(fault: String? = nil, stdinLimit: Int? = nil) throws -> Pass {
        let log = nextLogPath("target")
        let job = try writeJob(fault: fault, stdinLimit: stdinLimit, log: log)
        try? FileManager.default.removeItem(atPath: statusFile)
        let r = try h.replicate(job)
        // The source waits for its child (the shell), which writes the status first.
        return Pass(result: r, targetStatus: readTargetStatus(), targetLog: (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// `vzrepl-target recover --root R`, through a shell so a SIGKILL shows as status 137.
    func recover(fault: String? = nil) throws -> (result: AgentHarness.Result, log: String) {
        let log = nextLogPath("recover")
        let r = try AgentHarness.run(["/bin/sh", "-c", "\"$0\" \"$@\"; exit $?", AgentHarness.target, "recover", "--root", h.root,
                                      "--log-file", log],
                                     environment: fault.map { ["VZREPL_FAULT": $0] } ?? [:])
        return (r, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    func verify() throws -> AgentHarness.Result {
        try AgentHarness.run([AgentHarness.target, "verify", "--root", h.root, "--job", job, "--disk", disk])
    }

    // MARK: looking at the datastore

    /// The `.vzmap` header's generation (offset 24, Docs/formats.md §1), nil when there is no map.
    func mapGeneration() throws -> UInt64? {
        guard let d = FileManager.default.contents(atPath: mapFile), d.count >= 32 else { return nil }
        return d[24..<32].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// The journal's start generation (offset 32, Docs/formats.md §2), nil when there is none.
    /// What `status --json` says of the disk's last committed pass (DISK.vzpass): its
    /// generation, or nil with the note status gives instead.
    func statusLastPass() throws -> (generation: UInt64?, note: String?, pending: Bool) {
        let r = try AgentHarness.run([AgentHarness.target, "status", "--root", h.root, "--json"])
        let all = try JSONSerialization.jsonObject(with: r.output) as? [[String: Any]] ?? []
        let d = try XCTUnwrap(all.first { $0["disk"] as? String == disk }, r.stdout)
        let last = d["lastPass"] as? [String: Any]
        return ((last?["generation"] as? NSNumber)?.uint64Value, d["lastPassNote"] as? String, d["pending"] as? Bool ?? false)
    }

    func journalStartGeneration() -> UInt64? {
        guard let d = FileManager.default.contents(atPath: journal), d.count >= 40 else { return nil }
        return d[32..<40].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// Working files of a pass: `DISK.vzundo`, `vzundo-script`, `.*.tmp`.
    func workingFiles() throws -> [String] {
        guard FileManager.default.fileExists(atPath: jobDir) else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: jobDir).filter {
            $0.hasSuffix(".vzundo") || $0 == "vzundo-script" || ($0.hasPrefix(".") && $0.hasSuffix(".tmp"))
        }.sorted()
    }

    /// OLD, NEW, or nil (a mix, or anything else).
    func replicaState() throws -> State? {
        let hash = try AgentHarness.sha256(replica)
        return hash == oldHash ? .old : hash == newHash ? .new : nil
    }

    /// Indexes of the replica's blocks that differ from the OLD image.
    func blocksDifferingFromOld() throws -> [Int] {
        let old = try Data(contentsOf: URL(fileURLWithPath: oldImage)), now = try Data(contentsOf: URL(fileURLWithPath: replica))
        return (0..<layout.blocks).filter { b in old[b * bs..<(b + 1) * bs] != now[b * bs..<(b + 1) * bs] }
    }

    func noteLeftovers(_ context: String) throws {
        let left = try workingFiles()
        if !left.isEmpty { leftovers.append("\(context): \(left.joined(separator: " "))") }
    }

    // MARK: the invariants

    /// After a fault and (if the scenario runs it) recovery: the replica is exactly OLD or NEW
    /// (`expect` narrows it), the map's generation matches, verify passes, no working file is
    /// left (collected; see `assertNoLeftovers`). Returns the state found.
    @discardableResult
    func assertSettled(_ context: String, expect: Set<State> = [.old, .new], verifyMap: Bool = true,
                       file: StaticString = #filePath, line: UInt = #line) throws -> State? {
        let state = try replicaState()
        if state == nil {
            let differing = try blocksDifferingFromOld()
            XCTFail("\(context): the replica is neither the old nor the new state (blocks differing from old: \(differing))", file: file, line: line)
        }
        if let s = state {
            XCTAssertTrue(expect.contains(s), "\(context): the replica is \(s), expected \(expect.map(\.rawValue))", file: file, line: line)
            if verifyMap {
                XCTAssertEqual(try mapGeneration(), s == .old ? oldGeneration : oldGeneration + 1,
                               "\(context): the map's generation does not match the \(s) replica", file: file, line: line)
            }
        }
        if verifyMap {
            let v = try verify()
            XCTAssertEqual(v.status, 0, "\(context): verify: \(v.stdout)", file: file, line: line)
        }
        try noteLeftovers(context)
        return state
    }

    /// The next normal pass commits the NEW state, re-sending at most the blocks the interrupted
    /// pass changed (nothing when the replica is NEW already).
    func assertConverges(_ context: String, from state: State?, mapStatus: String = "valid",
                         file: StaticString = #filePath, line: UInt = #line) throws {
        let p = try pass()
        XCTAssertEqual(p.result.status, 0, "\(context): the next pass failed: \(p.result.stdout)\n\(p.targetLog)", file: file, line: line)
        XCTAssertEqual(try AgentHarness.sha256(replica), newHash, "\(context): the next pass did not converge", file: file, line: line)
        guard let f = p.result.finished() else { return XCTFail("\(context): no disk-finished: \(p.result.stdout)", file: file, line: line) }
        XCTAssertEqual(f["mapStatus"] as? String, mapStatus, "\(context)", file: file, line: line)
        let dataBlocks = f["dataBlocks"] as? Int ?? -1, sent = f["sentBytes"] as? Int ?? -1, changed = f["changedBytes"] as? Int ?? -1
        if state == .new {
            XCTAssertEqual(dataBlocks, 0, "\(context): the replica was new already, yet blocks were re-sent", file: file, line: line)
            XCTAssertEqual(sent, 0, "\(context)", file: file, line: line)
        } else {
            XCTAssertLessThanOrEqual(dataBlocks, changedDataBlocks, "\(context): re-sent more blocks than the pass changed", file: file, line: line)
            XCTAssertGreaterThanOrEqual(dataBlocks, 0, "\(context)", file: file, line: line)
            XCTAssertLessThanOrEqual(sent, changedDataBlocks * bs, "\(context): re-sent more bytes than the pass changed", file: file, line: line)
            XCTAssertLessThanOrEqual(changed, changedBlocks * bs, "\(context)", file: file, line: line)
        }
        let v = try verify()
        XCTAssertEqual(v.status, 0, "\(context): verify after the next pass: \(v.stdout)", file: file, line: line)
        XCTAssertEqual(try workingFiles(), [], "\(context): working files after a successful pass", file: file, line: line)
    }

    /// The pass was really interrupted by the fault: the source failed with an error event and
    /// never reported the disk finished.
    func assertFailed(_ p: Pass, _ context: String, exitCodes: Set<Int32> = [4, 5],
                      file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(exitCodes.contains(p.result.status), "\(context): source exit \(p.result.status), expected \(exitCodes): \(p.result.stdout)", file: file, line: line)
        XCTAssertFalse(p.result.events("error").isEmpty, "\(context): no error event: \(p.result.stdout)", file: file, line: line)
        XCTAssertNil(p.result.finished(), "\(context): a failed pass reported the disk finished", file: file, line: line)
        XCTAssertEqual(p.result.events("pass-finished").first?["ok"] as? Bool, false, "\(context)", file: file, line: line)
    }

    /// PRODUCT BUG marker: every collected leftover fails the test here, once, with the list.
    func assertNoLeftovers(_ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(leftovers.isEmpty, "working files left \(what):\n  " + leftovers.joined(separator: "\n  "), file: file, line: line)
    }

    /// The first k whose `kill-at:k` leaves the pass committed (the map at the new generation),
    /// minus one: the kill point *at* the commit rename, the last one that rolls back. Found by
    /// bisection (the outcome is monotone in k).
    func findCommitRename(file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        func committed(_ k: Int) throws -> Bool {
            try restoreOld()
            let p = try pass(fault: "kill-at:\(k)")
            let generation = try mapGeneration()
            return p.result.status == 0 || generation == oldGeneration + 1
        }
        var lo = 1, hi = 16  // lo: not committed; hi: committed
        let first = try committed(lo)
        XCTAssertFalse(first, file: file, line: line)
        while try !committed(hi) { lo = hi; hi *= 2; if hi > 4096 { XCTFail("no commit point", file: file, line: line); return 0 } }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if try committed(mid) { hi = mid } else { lo = mid }
        }
        return lo
    }

    /// Interrupts the pass with `kill-at:k` from the OLD state; checks the target really died.
    @discardableResult
    func interrupt(at k: Int, file: StaticString = #filePath, line: UInt = #line) throws -> Pass {
        try restoreOld()
        let p = try pass(fault: "kill-at:\(k)")
        XCTAssertEqual(p.targetStatus, 137, "kill-at:\(k): the target was not killed: \(p.result.stdout)", file: file, line: line)
        assertFailed(p, "kill-at:\(k)", file: file, line: line)
        return p
    }
}

/// A minimal, independent reader of `.vzundo` (Docs/formats.md §2): where each record starts,
/// its kind, block offset and length. Stops at the first record that is not whole or lacks the
/// magic. Checksums are not checked (the product's decoder does that; this only locates).
struct JournalRecords {
    struct Record {
        var fileOffset: Int
        var kind: UInt8
        var blockOffset: UInt64
        var length: Int
        var size: Int { 48 + (kind == 1 ? length : 0) }
    }

    let bytes: Data
    let records: [Record]
    var passID: [UInt8] { Array(bytes[48..<64]) }
    var validEnd: Int { records.last.map { $0.fileOffset + $0.size } ?? 200 }

    init(path: String) throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        self.bytes = bytes
        var out: [Record] = []
        var pos = 200
        func u64(_ at: Int) -> UInt64 { bytes[at..<at + 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
        func u32(_ at: Int) -> UInt32 { bytes[at..<at + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        while pos + 48 <= bytes.count, bytes[pos..<pos + 4].elementsEqual("VZUR".utf8) {
            let r = Record(fileOffset: pos, kind: bytes[pos + 4], blockOffset: u64(pos + 32), length: Int(u32(pos + 40)))
            guard pos + r.size <= bytes.count else { break }
            out.append(r)
            pos += r.size
        }
        records = out
    }
}
