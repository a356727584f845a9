import Foundation
import VZTestSupport
import XCTest

/// Issue 9, hardware changes of the disk set, over the exec transport with the real agents: the
/// target records the job's disks at the first pass (`vzdisks`), a job that adds or drops a disk
/// fails with exit 3 (`hardwareChanged`) before anything is written, `add-disk` / `remove-disk`
/// reconfigure it; concurrent sessions of one job never tear the record; an older (protocol 2)
/// source is still served, without the check.
final class DiskSetTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    var jobDir: String { h.root + "/vm1" }

    func disk(_ name: String, mib: Int = 1, seed: UInt64) throws -> String {
        let path = h.dir + "/\(name).raw"
        try AgentHarness.makeImage(path, size: UInt64(mib) << 20)
        try AgentHarness.write(AgentHarness.randomBytes(256 << 10, seed: seed), to: path, at: 0)
        return path
    }

    /// Every file under the root with its SHA-256 (a directory: "dir"), to prove nothing changed.
    func snapshot() throws -> [String: String] {
        var out: [String: String] = [:]
        let e = FileManager.default.enumerator(atPath: h.root)
        while let rel = e?.nextObject() as? String {
            var isDir: ObjCBool = false
            FileManager.default.fileExists(atPath: h.root + "/" + rel, isDirectory: &isDir)
            out[rel] = isDir.boolValue ? "dir" : try AgentHarness.sha256(h.root + "/" + rel)
        }
        return out
    }

    /// `vzdisks` read by hand from Docs/formats.md §6 (not by DiskSetFile): the names, after the
    /// magic, version and CRC are checked.
    func recordedDisks(file: StaticString = #filePath, line: UInt = #line) throws -> [String]? {
        guard let d = FileManager.default.contents(atPath: jobDir + "/vzdisks") else { return nil }
        let b = [UInt8](d)
        XCTAssertEqual(Array(b[0..<8]), Array("VZDSKSET".utf8), file: file, line: line)
        XCTAssertEqual(Array(b[8..<12]), [1, 0, 0, 0], file: file, line: line)
        let n = Int(b[12]) | Int(b[13]) << 8
        var at = 16, names: [String] = []
        for _ in 0..<n {
            let len = Int(b[at])
            names.append(String(decoding: b[at + 1..<at + 1 + len], as: UTF8.self))
            at += 1 + len
        }
        XCTAssertEqual(at + 4, b.count, "record length", file: file, line: line)
        let crc = b[at..<at + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        XCTAssertEqual(crc, crc32c(Array(b[0..<at])), "record CRC", file: file, line: line)
        return names
    }

    /// CRC-32C (Castagnoli), bit by bit: the oracle of the record's checksum.
    func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        }
        return ~c
    }

    func target(_ args: [String]) throws -> AgentHarness.Result {
        try AgentHarness.run([AgentHarness.target] + args + ["--log-file", h.dir + "/cmd.log"])
    }

    func testAnAddedDiskIsRefusedUntilAddDiskThenSeeded() throws {
        let d0 = try disk("d0", seed: 1), d1 = try disk("d1", mib: 2, seed: 2)
        let one = try h.writeJob(disks: [("disk0", d0)])
        XCTAssertEqual(try h.replicate(one).status, 0)
        XCTAssertEqual(try recordedDisks(), ["disk0"])

        // The job gains disk1: refused before anything is written, naming it and what to do.
        let before = try snapshot()
        let two = try h.writeJob(disks: [("disk0", d0), ("disk1", d1)])
        let r = try h.replicate(two)
        XCTAssertEqual(r.status, 3, r.stdout)
        let e = try XCTUnwrap(r.events("error").first, r.stdout)
        XCTAssertEqual(e["kind"] as? String, "hardwareChanged")
        let message = e["message"] as? String ?? ""
        for part in ["'disk1' (\(2 << 20) bytes)", "vzrepl-target add-disk --root \(h.root) --job vm1 --disk disk1", "hardware changed", "Nothing was written"] {
            XCTAssertTrue(message.contains(part), "'\(message)' lacks '\(part)'")
        }
        XCTAssertTrue(r.events("disk-started").isEmpty, r.stdout)
        XCTAssertEqual(try snapshot(), before, "a refused pass changed the datastore")

        // add-disk records it (twice is fine); the next pass seeds it and keeps disk0.
        let add = try target(["add-disk", "--root", h.root, "--job", "vm1", "--disk", "disk1"])
        XCTAssertEqual(add.status, 0, add.stdout + add.stderr)
        XCTAssertTrue(add.stdout.contains("added to the job's disk set (disk0, disk1)"), add.stdout)
        XCTAssertEqual(try recordedDisks(), ["disk0", "disk1"])
        let again = try target(["add-disk", "--root", h.root, "--job", "vm1", "--disk", "disk1"])
        XCTAssertEqual(again.status, 0)
        XCTAssertTrue(again.stdout.contains("already in the job's disk set"), again.stdout)
        let seeded = try h.replicate(two)
        XCTAssertEqual(seeded.status, 0, seeded.stdout)
        XCTAssertEqual(seeded.events("disk-started").first { $0["disk"] as? String == "disk1" }?["mapStatus"] as? String, "created")
        XCTAssertEqual(seeded.finished("disk0")?["dataBlocks"] as? Int, 0, "disk0 was unchanged")
        XCTAssertTrue(try AgentHarness.filesEqual(d1, jobDir + "/disk1-flat.vmdk"))
        XCTAssertTrue(try AgentHarness.filesEqual(d0, jobDir + "/disk0-flat.vmdk"))
    }

    /// A disk that grew is refused for the whole session before any disk is opened: with disk1
    /// grown, disk0 (first in the pass, and changed) must not commit, serially or with two
    /// parallel sessions; `resize` then lets the pass through for both.
    func testAGrownLaterDiskFailsThePassBeforeAnEarlierDiskCommits() throws {
        let d0 = try disk("d0", seed: 11), d1 = try disk("d1", seed: 12)
        let job = try h.writeJob(disks: [("disk0", d0), ("disk1", d1)])
        XCTAssertEqual(try h.replicate(job).status, 0)
        func generation(_ disk: String) throws -> Int? {
            let r = try AgentHarness.run([AgentHarness.target, "status", "--root", h.root, "--json"])
            let rows = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] ?? []
            return rows.first { $0["disk"] as? String == disk }?["generation"] as? Int
        }
        let gen0 = try XCTUnwrap(try generation("disk0"))

        // disk0 changes (a pass would commit it), disk1 grows to 2 MiB.
        try AgentHarness.write(AgentHarness.randomBytes(64 << 10, seed: 13), to: d0, at: 0)
        let h1 = try FileHandle(forWritingTo: URL(fileURLWithPath: d1))
        try h1.truncate(atOffset: 2 << 20)
        try h1.close()
        let before = try snapshot()
        for parallel in [1, 2] {
            let r = try h.replicate(try h.writeJob(disks: [("disk0", d0), ("disk1", d1)], extra: ["parallelDisks": parallel]))
            XCTAssertEqual(r.status, 3, "parallelDisks \(parallel): \(r.stdout)")
            let e = try XCTUnwrap(r.events("error").first, r.stdout)
            XCTAssertEqual(e["kind"] as? String, "hardwareChanged")
            let message = e["message"] as? String ?? ""
            for part in ["disk 'disk1' has \(2 << 20) bytes on the source", "holds \(1 << 20) bytes", "hardware changed",
                         "vzrepl-target resize --root \(h.root) --job vm1 --disk disk1 --capacity \(2 << 20)", "Nothing was written"] {
                XCTAssertTrue(message.contains(part), "'\(message)' lacks '\(part)'")
            }
            XCTAssertFalse(message.contains("disk0"), message)
            XCTAssertTrue(r.events("disk-finished").isEmpty, r.stdout)
            XCTAssertEqual(try snapshot(), before, "parallelDisks \(parallel): a refused pass changed the datastore (disk0 committed?)")
            XCTAssertEqual(try generation("disk0"), gen0)
        }

        let rs = try target(["resize", "--root", h.root, "--job", "vm1", "--disk", "disk1", "--capacity", "\(2 << 20)"])
        XCTAssertEqual(rs.status, 0, rs.stdout + rs.stderr)
        let ok = try h.replicate(job)
        XCTAssertEqual(ok.status, 0, ok.stdout)
        XCTAssertEqual(try generation("disk0"), gen0 + 1)
        XCTAssertTrue(try AgentHarness.filesEqual(d0, jobDir + "/disk0-flat.vmdk"))
        XCTAssertTrue(try AgentHarness.filesEqual(d1, jobDir + "/disk1-flat.vmdk"))

        // A disk that shrank cannot be followed by resize: refused the same way, with the way out.
        let h0 = try FileHandle(forWritingTo: URL(fileURLWithPath: d0))
        try h0.truncate(atOffset: 512 << 10)
        try h0.close()
        let after = try snapshot()
        let shrunk = try h.replicate(job)
        XCTAssertEqual(shrunk.status, 3, shrunk.stdout)
        let m = shrunk.events("error").first?["message"] as? String ?? ""
        XCTAssertTrue(m.contains("disk 'disk0' has \(512 << 10) bytes on the source") && m.contains("holds \(1 << 20) bytes")
                      && m.contains("shrinking a replica is refused") && m.contains("vzrepl-target remove-disk --root \(h.root) --job vm1 --disk disk0"), m)
        XCTAssertEqual(try snapshot(), after)
    }

    /// The set check compares committed replicas only: an unfinished seed (a data file that
    /// holds nothing, no map) of another size is what the disk's own session removes and seeds
    /// again, so it does not fail the pass as resized.
    func testAnUnfinishedSeedOfAnotherSizeIsNotAResize() throws {
        let d0 = try disk("d0", seed: 31), d1 = try disk("d1", seed: 32)
        let job = try h.writeJob(disks: [("disk0", d0), ("disk1", d1)])
        XCTAssertEqual(try h.replicate(job).status, 0)
        for name in ["disk1.vzmap", "disk1.vzcid", "disk1.vzpass", "disk1-flat.vmdk"] {
            try? FileManager.default.removeItem(atPath: jobDir + "/" + name)
        }
        try AgentHarness.makeImage(jobDir + "/disk1-flat.vmdk", size: 1 << 20)  // all holes
        let h1 = try FileHandle(forWritingTo: URL(fileURLWithPath: d1))
        try h1.truncate(atOffset: 2 << 20)
        try h1.close()
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stdout)
        XCTAssertTrue(try AgentHarness.filesEqual(d1, jobDir + "/disk1-flat.vmdk"))
        XCTAssertTrue(try AgentHarness.filesEqual(d0, jobDir + "/disk0-flat.vmdk"))
    }

    /// `status` shows each job's recorded disk set: the names, a disk of the set with no replica
    /// yet (after add-disk), no record, and a damaged record (reported, not a crash).
    func testStatusShowsTheDiskSetAndADamagedRecord() throws {
        let d0 = try disk("d0", seed: 21)
        XCTAssertEqual(try h.replicate(try h.writeJob(disks: [("disk0", d0)])).status, 0)
        XCTAssertEqual(try target(["add-disk", "--root", h.root, "--job", "vm1", "--disk", "disk1"]).status, 0)
        func status() throws -> (rows: [[String: Any]], text: String) {
            let j = try AgentHarness.run([AgentHarness.target, "status", "--root", h.root, "--json"])
            XCTAssertEqual(j.status, 0, j.stderr)
            let rows = try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [[String: Any]] ?? []
            let t = try AgentHarness.run([AgentHarness.target, "status", "--root", h.root])
            XCTAssertEqual(t.status, 0, t.stderr)
            return (rows, t.stdout)
        }
        func row(_ rows: [[String: Any]], _ disk: String) -> [String: Any] { rows.first { $0["disk"] as? String == disk } ?? [:] }

        var (rows, text) = try status()
        XCTAssertEqual(rows.count, 2, "\(rows)")
        XCTAssertEqual(row(rows, "disk0")["replica"] as? Bool, true)
        XCTAssertEqual(row(rows, "disk0")["capacityBytes"] as? Int, 1 << 20)
        XCTAssertEqual(row(rows, "disk1")["replica"] as? Bool, false)
        XCTAssertNil(row(rows, "disk1")["capacityBytes"])
        for r in rows {
            XCTAssertEqual(r["diskSetStatus"] as? String, "recorded")
            XCTAssertEqual(r["diskSet"] as? [String], ["disk0", "disk1"])
            XCTAssertEqual(r["inDiskSet"] as? Bool, true)
        }
        XCTAssertTrue(text.contains("vm1: disk set (vzdisks): disk0, disk1; no replica yet: disk1"), text)

        // A damaged record: shown as such, with what to do; the replica rows are still there.
        try Data("VZDSKSET garbage".utf8).write(to: URL(fileURLWithPath: jobDir + "/vzdisks"))
        (rows, text) = try status()
        XCTAssertEqual(rows.map { $0["disk"] as? String }, ["disk0"])
        XCTAssertEqual(rows.first?["diskSetStatus"] as? String, "damaged")
        XCTAssertTrue(rows.first?["diskSet"] is NSNull, "\(rows)")
        XCTAssertTrue(rows.first?["inDiskSet"] is NSNull, "\(rows)")
        let reason = rows.first?["diskSetReason"] as? String ?? ""
        XCTAssertTrue(reason.contains(jobDir + "/vzdisks") && reason.contains("damaged") && reason.contains("rm "), reason)
        XCTAssertTrue(text.contains("vm1: disk set record damaged: ") && text.contains("rm \(jobDir)/vzdisks"), text)

        // No record: said so.
        try FileManager.default.removeItem(atPath: jobDir + "/vzdisks")
        (rows, text) = try status()
        XCTAssertEqual(rows.first?["diskSetStatus"] as? String, "none")
        XCTAssertTrue(text.contains("vm1: no disk set record"), text)
    }

    func testARemovedDiskIsRefusedUntilRemoveDiskDeletesItsReplica() throws {
        let d0 = try disk("d0", seed: 3), d1 = try disk("d1", seed: 4)
        let two = try h.writeJob(disks: [("disk0", d0), ("disk1", d1)])
        XCTAssertEqual(try h.replicate(two).status, 0)
        XCTAssertEqual(try recordedDisks(), ["disk0", "disk1"])

        let before = try snapshot()
        let one = try h.writeJob(disks: [("disk0", d0)])
        let r = try h.replicate(one)
        XCTAssertEqual(r.status, 3, r.stdout)
        let e = try XCTUnwrap(r.events("error").first)
        XCTAssertEqual(e["kind"] as? String, "hardwareChanged")
        let message = e["message"] as? String ?? ""
        for part in ["no longer has disk 'disk1'", "vzrepl-target remove-disk --root \(h.root) --job vm1 --disk disk1", "deletes the replica"] {
            XCTAssertTrue(message.contains(part), "'\(message)' lacks '\(part)'")
        }
        XCTAssertEqual(try snapshot(), before)

        // Added and removed at once: both named.
        let d2 = try disk("d2", seed: 5)
        let swapped = try h.replicate(try h.writeJob(disks: [("disk0", d0), ("disk2", d2)]))
        XCTAssertEqual(swapped.status, 3)
        let both = swapped.events("error").first?["message"] as? String ?? ""
        XCTAssertTrue(both.contains("adds disk 'disk2'") && both.contains("no longer has disk 'disk1'"), both)
        XCTAssertEqual(try snapshot(), before)

        let rm = try target(["remove-disk", "--root", h.root, "--job", "vm1", "--disk", "disk1"])
        XCTAssertEqual(rm.status, 0, rm.stdout + rm.stderr)
        XCTAssertTrue(rm.stdout.contains("disk1.vmdk") && rm.stdout.contains("disk1-flat.vmdk"), rm.stdout)
        let left = try FileManager.default.contentsOfDirectory(atPath: jobDir).sorted()
        XCTAssertEqual(left.filter { $0.hasPrefix("disk1") }, [], "\(left)")
        XCTAssertEqual(try recordedDisks(), ["disk0"])
        let ok = try h.replicate(try h.writeJob(disks: [("disk0", d0)]))
        XCTAssertEqual(ok.status, 0, ok.stdout)
        let nothing = try target(["remove-disk", "--root", h.root, "--job", "vm1", "--disk", "disk1"])
        XCTAssertEqual(nothing.status, 0)
        XCTAssertTrue(nothing.stdout.contains("nothing to do"), nothing.stdout)
        // add-disk of a job that never ran.
        let none = try target(["add-disk", "--root", h.root, "--job", "vm9", "--disk", "disk0"])
        XCTAssertEqual(none.status, 1)
        XCTAssertTrue(none.stdout.contains("first pass records all of its disks"), none.stdout)
    }

    func testHelpOfTheNewCommandsSaysWhatTheyDo() throws {
        func help(_ command: String) throws -> String {
            let r = try AgentHarness.run([AgentHarness.target, command, "--help"])
            return r.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ")
        }
        let add = try help("add-disk")
        XCTAssertTrue(add.contains("Record a disk added to a job's VM, so the next pass seeds its replica"), add)
        XCTAssertTrue(add.contains("--disk"), add)
        let rm = try help("remove-disk")
        XCTAssertTrue(rm.contains("Delete the replica of a disk removed from a job's VM"), rm)
        XCTAssertTrue(rm.contains("Copy the replica away first"), rm)
    }

    /// A damaged record fails the pass with a message saying what to do; removing it lets the
    /// next pass compare with the replicas and record the set again. A job from before records
    /// (replicas, no vzdisks) is adopted the same way.
    func testDamagedOrMissingRecordIsHandled() throws {
        let d0 = try disk("d0", seed: 6)
        let one = try h.writeJob(disks: [("disk0", d0)])
        XCTAssertEqual(try h.replicate(one).status, 0)
        var b = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: jobDir + "/vzdisks")))
        b[17] ^= 1
        try Data(b).write(to: URL(fileURLWithPath: jobDir + "/vzdisks"))
        let r = try h.replicate(one)
        XCTAssertEqual(r.status, 5, r.stdout)
        XCTAssertEqual(r.events("error").first?["kind"] as? String, "corruptMap")
        XCTAssertTrue((r.events("error").first?["message"] as? String ?? "").contains("Remove it (rm \(jobDir)/vzdisks)"), r.stdout)
        try FileManager.default.removeItem(atPath: jobDir + "/vzdisks")
        // Without a record, a job with another disk than the replicas present is still refused.
        let d1 = try disk("d1", seed: 7)
        let two = try h.replicate(try h.writeJob(disks: [("disk0", d0), ("disk1", d1)]))
        XCTAssertEqual(two.status, 3, two.stdout)
        XCTAssertTrue((two.events("error").first?["message"] as? String ?? "").contains("the disks job 'vm1' has replicas of (disk0)"), two.stdout)
        XCTAssertNil(try recordedDisks())
        XCTAssertEqual(try h.replicate(try h.writeJob(disks: [("disk0", d0)])).status, 0)
        XCTAssertEqual(try recordedDisks(), ["disk0"])
    }

    /// Eight sessions of one job at once, each sending the same disk set first (as parallel
    /// disks will): all accepted, one whole record, no temp file left; then against a record of
    /// another set, all refused. Sessions are spoken by SpecClient's bytes (Docs/protocol.md).
    func testConcurrentSessionsOfAJobNeverTearTheRecord() throws {
        func diskSet(_ names: [String]) -> [UInt8] {
            SpecClient.frame(20, SpecClient.u16(names.count) + names.flatMap { SpecClient.string($0) + SpecClient.u64(1 << 20) })
        }
        func sessions(_ names: [String]) throws -> [AgentHarness.Result] {
            let input = Data(Array("VZREPL/3 spec-client 0\n".utf8) + SpecClient.hello(job: "vm1") + diskSet(names) + SpecClient.bye)
            var results = [AgentHarness.Result?](repeating: nil, count: 8)
            let lock = NSLock()
            DispatchQueue.concurrentPerform(iterations: 8) { i in
                let r = try? AgentHarness.run([AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/t\(i).log",
                                               "--lock-wait", "30"], stdin: input, timeout: 60)
                lock.lock(); results[i] = r; lock.unlock()
            }
            return try results.map { try XCTUnwrap($0) }
        }
        let names = (0..<40).map { "disk\($0)" }
        for r in try sessions(names) { XCTAssertEqual(r.status, 0, r.stderr) }
        XCTAssertEqual(try recordedDisks(), names.sorted())
        XCTAssertFalse(FileManager.default.fileExists(atPath: jobDir + "/.vzdisks.tmp"))
        for r in try sessions(names + ["extra"]) {
            XCTAssertEqual(r.status, 1)
            let error = SpecClient.replies(r.output).frames.compactMap(\.error).first
            XCTAssertEqual(error?.kind, "hardwareChanged", r.stderr)
        }
        XCTAssertEqual(try recordedDisks(), names.sorted())
    }

    /// A protocol-2 source (no diskSet, no diskChain) is still served: a disk the record does not
    /// hold is not detected (documented), and its `.vzcid` says the chain is not known.
    func testAVersion2SourceIsServedWithoutTheCheck() throws {
        let d0 = try disk("d0", seed: 8)
        XCTAssertEqual(try h.replicate(try h.writeJob(disks: [("disk0", d0)])).status, 0)
        let bs: UInt32 = 65536, block = [UInt8](repeating: 0x5A, count: Int(bs))
        let sha = try sha256(block)
        var input = Array("VZREPL/2 spec-client 0\n".utf8) + SpecClient.hello(job: "vm1")
        input += SpecClient.openDisk("disk7", capacity: UInt64(bs), blockSize: bs)
        input += SpecClient.rawBlock(offset: 0, data: block, sha256: sha) + SpecClient.commitDisk(scanned: UInt64(bs)) + SpecClient.bye
        let r = try AgentHarness.run([AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/v2.log"],
                                     stdin: Data(input), timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(SpecClient.replies(r.output).frames.map(\.type), [2, 4, 5, 9])
        XCTAssertEqual(try recordedDisks(), ["disk0"], "a protocol-2 session does not change the record")
        let rec = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: jobDir + "/disk7.vzcid")))
        XCTAssertEqual(rec.count, 38)
        XCTAssertEqual(Array(rec[28..<34]), [0, 0, 0, 0, 0, 0], "flags 0 (chain not known), no links")
        let log = try String(contentsOfFile: h.dir + "/v2.log", encoding: .utf8)
        XCTAssertTrue(log.contains("it sends no disk set"), log)
    }

    func sha256(_ bytes: [UInt8]) throws -> [UInt8] {
        let path = h.dir + "/sha-input"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let hex = try AgentHarness.sha256(path)
        return stride(from: 0, to: 64, by: 2).map { UInt8(hex.dropFirst($0).prefix(2), radix: 16)! }
    }

    /// The record joins the kill sweep: kill the target at every durable operation of a job's
    /// first pass (the record is written first, then the seed); after each kill `recover`
    /// leaves no temp file, the record is absent or whole (never torn) with the job's disks, and
    /// the next pass succeeds. The sweep stops once the first disk has committed (from there on
    /// it is the seed's own sweep, FaultTests). Then an fsync error at each of the record's
    /// fsyncs fails the pass.
    func testKillAtEveryDurableOperationOfTheFirstPassKeepsTheRecordWhole() throws {
        let d0 = try disk("d0", mib: 1, seed: 9)
        let d1 = try disk("d1", mib: 1, seed: 10)
        func job(fault: String?) throws -> String {
            var command = [AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/target.log"]
            if let fault { command = ["/usr/bin/env", "VZREPL_FAULT=\(fault)"] + command }
            let obj: [String: Any] = ["job": "vm1", "blockSize": 65536,
                                      "target": ["transport": "exec", "command": command, "idleTimeoutSeconds": 20],
                                      "disks": [["name": "disk0", "source": d0], ["name": "disk1", "source": d1]]]
            let path = h.dir + "/job-fault.json"
            try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
            return path
        }
        func reset() throws {
            try? FileManager.default.removeItem(atPath: h.root)
            try FileManager.default.createDirectory(atPath: h.root, withIntermediateDirectories: true)
        }
        var k = 1, sawRecordOnly = false, sawNoRecord = false
        while k < 400 {
            try reset()
            let p = try h.replicate(try job(fault: "kill-at:\(k)"))
            if p.status == 0 { break }
            XCTAssertTrue([4, 5].contains(p.status), "kill-at:\(k): \(p.stdout)")
            let reachedCommit = FileManager.default.fileExists(atPath: jobDir + "/disk0.vzmap")
            let record = try recordedDisks()
            if let record {
                XCTAssertEqual(record, ["disk0", "disk1"], "kill-at:\(k)")
                if !FileManager.default.fileExists(atPath: jobDir + "/disk0-flat.vmdk") { sawRecordOnly = true }
            } else {
                sawNoRecord = true
            }
            let rec = try AgentHarness.run([AgentHarness.target, "recover", "--root", h.root, "--log-file", h.dir + "/recover.log"])
            XCTAssertEqual(rec.status, 0, "kill-at:\(k): \(rec.stdout)")
            let temps = ((try? FileManager.default.contentsOfDirectory(atPath: jobDir)) ?? []).filter { $0.hasSuffix(".tmp") }
            XCTAssertEqual(temps, [], "kill-at:\(k): left after recover")
            let next = try h.replicate(try job(fault: nil))
            XCTAssertEqual(next.status, 0, "kill-at:\(k): the next pass: \(next.stdout)")
            XCTAssertEqual(try recordedDisks(), ["disk0", "disk1"], "kill-at:\(k)")
            XCTAssertTrue(try AgentHarness.filesEqual(d1, jobDir + "/disk1-flat.vmdk"), "kill-at:\(k)")
            k += 1
            if reachedCommit { break }
        }
        XCTAssertTrue(sawNoRecord, "no kill fell before the record")
        XCTAssertTrue(sawRecordOnly, "no kill fell between the record and the first replica")
        XCTAssertGreaterThan(k, 10)
        print("first-pass kill sweep: \(k - 1) durable operations")

        // fsync 1 is the root's (the job folder is new); 2 and 3 are the record's file and folder.
        for n in 1...3 {
            try reset()
            let p = try h.replicate(try job(fault: "eio-fsync:\(n)"))
            XCTAssertEqual(p.status, 5, "eio-fsync:\(n): \(p.stdout)")
            XCTAssertEqual(p.events("error").first?["kind"] as? String, "replicaIO", "eio-fsync:\(n)")
            XCTAssertTrue(p.events("disk-started").isEmpty, "eio-fsync:\(n): a disk was opened after a failed record")
            XCTAssertEqual(try h.replicate(try job(fault: nil)).status, 0, "eio-fsync:\(n): the next pass")
        }
    }
}
