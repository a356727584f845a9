import Foundation
import Glibc
import XCTest

/// What odd names, odd files in the datastore and hostile capacity claims did to the target
/// (the hardening issue), each against the real agents: a disk named like another disk's data
/// file, an interrupted seed, hard links and FIFOs planted in place of working files, a capacity
/// whose map would not fit in memory, and a session that rolled back other jobs first.
final class DatastoreHardeningTests: XCTestCase {
    var h: AgentHarness!
    let bs = 65536
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    var jobDir: String { h.root + "/vm1" }

    // MARK: helpers

    /// A 1 MiB source: random data in the first 256 KiB, zeros after.
    func makeSource(_ name: String = "d.raw", size: UInt64 = 1 << 20, seed: UInt64 = 1) throws -> String {
        let src = h.dir + "/" + name
        try? FileManager.default.removeItem(atPath: src)
        try AgentHarness.makeImage(src, size: size)
        try AgentHarness.write(AgentHarness.randomBytes(256 << 10, seed: seed), to: src, at: 0)
        return src
    }

    /// An exec job whose target runs with `VZREPL_FAULT=fault` (only the target), or wrapped in `wrap`.
    func job(_ src: String, disk: String = "disk0", job: String = "vm1", fault: String? = nil, wrap: [String] = []) throws -> String {
        var command = [AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/target.log"]
        if let f = fault { command = ["/usr/bin/env", "VZREPL_FAULT=\(f)"] + command }
        command = wrap + command
        let obj: [String: Any] = ["job": job, "blockSize": bs,
                                  "target": ["transport": "exec", "command": command, "idleTimeoutSeconds": 20],
                                  "disks": [["name": disk, "source": src]]]
        let path = h.dir + "/job-\(job)-\(disk).json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Regular files under the root with their SHA-256 (and the type of anything else).
    func snapshot() throws -> [String: String] {
        var out: [String: String] = [:]
        let e = FileManager.default.enumerator(atPath: h.root)
        while let rel = e?.nextObject() as? String {
            let path = h.root + "/" + rel
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFREG: out[rel] = try AgentHarness.sha256(path)
            case S_IFDIR: out[rel] = "dir"
            default: out[rel] = "other"
            }
        }
        return out
    }

    func diskFiles(_ disk: String = "disk0") throws -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: jobDir)) ?? []
        return names.filter { $0.contains(disk) }.sorted()
    }

    /// Runs `serve --stdio` on `input`; kills it after `timeout` seconds.
    func serve(_ input: [UInt8], extra: [String] = [], shellPrefix: String? = nil, timeout: Double = 20)
        throws -> (status: Int32, frames: [SpecClient.Reply], stderr: String, seconds: Double) {
        var argv = [AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/t.log",
                    "--idle-timeout", "10"] + extra
        if let prefix = shellPrefix { argv = ["/bin/bash", "-c", prefix + " exec \"$@\"", "bash"] + argv }
        let started = Date()
        let killer = DispatchWorkItem { _ = try? AgentHarness.run(["/usr/bin/pkill", "-KILL", "-f", self.h.root]) }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
        let r = try AgentHarness.run(argv, stdin: Data(input))
        killer.cancel()
        return (r.status, SpecClient.replies(r.output).frames, r.stderr, Date().timeIntervalSince(started))
    }

    func assertError(_ frames: [SpecClient.Reply], kind: String, mentions: [String], _ context: String = "",
                     file: StaticString = #filePath, line: UInt = #line) {
        guard let e = frames.last?.error else {
            return XCTFail("\(context): no error frame (got types \(frames.map(\.type)))", file: file, line: line)
        }
        XCTAssertEqual(e.kind, kind, "\(context): \(e.message)", file: file, line: line)
        for m in mentions { XCTAssertTrue(e.message.contains(m), "\(context): '\(e.message)' does not mention '\(m)'", file: file, line: line) }
    }

    // MARK: names

    /// `data-flat.vmdk` is disk `data`'s data file and would be disk `data-flat`'s descriptor.
    func testDiskNamedLikeAnotherDisksDataFileIsRefusedByCheckJobAndByTheTarget() throws {
        let src = try makeSource()
        let pair: [String: Any] = ["job": "vm1", "target": ["transport": "exec", "command": [AgentHarness.target]],
                                   "disks": [["name": "data", "source": src], ["name": "data-flat", "source": src]]]
        let path = h.dir + "/pair.json"
        try JSONSerialization.data(withJSONObject: pair).write(to: URL(fileURLWithPath: path))
        let check = try AgentHarness.run([AgentHarness.source, "check-job", "--job", path])
        XCTAssertEqual(check.status, 2, check.stdout + check.stderr)
        XCTAssertTrue(check.stderr.contains("disks[1].name") && check.stderr.contains("-flat"), check.stderr)
        let rep = try h.replicate(path)
        XCTAssertEqual(rep.status, 2, rep.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: jobDir), "a refused job created files on the target")

        // The target refuses the name from the wire, and disk data's committed replica stays as it was.
        XCTAssertEqual(try h.replicate(try job(src, disk: "data")).status, 0)
        let before = try snapshot()
        for name in ["data-flat", "DATA-FLAT", "data-delta", "data-ctk", "data.vzmap", "data-s001"] {
            let r = try serve(SpecClient.banner + SpecClient.hello(job: "vm1")
                              + SpecClient.openDisk(name, capacity: 1 << 20, blockSize: UInt32(bs)) + SpecClient.bye)
            XCTAssertNotEqual(r.status, 0, name)
            assertError(r.frames, kind: "pathOutsideRoot", mentions: ["'\(name)'"], name)
        }
        XCTAssertEqual(try snapshot().filter { !$0.key.hasSuffix(".vzlock") }, before.filter { !$0.key.hasSuffix(".vzlock") })
    }

    // MARK: an interrupted seed

    /// A kill at every durable system call of a first pass (creating the directory, the lock, the
    /// seed's data file, sizing it, its fsync, the descriptor, the rename, the journal, the
    /// blocks, the commit). After each, the disk is either uncommitted with nothing of it left
    /// (so a pass of another size seeds it) or committed; never wedged.
    func testKillAtEveryDurableCallOfASeedNeverWedgesTheDisk() throws {
        let small = try makeSource("small.raw", size: 1 << 20, seed: 3)
        let other = try makeSource("other.raw", size: 2 << 20, seed: 4)
        var k = 1
        var sawNothingLeft = 0, sawCommitted = 0
        while k < 300 {
            try? FileManager.default.removeItem(atPath: h.root)
            try FileManager.default.createDirectory(atPath: h.root, withIntermediateDirectories: true)
            let killed = try h.replicate(try job(small, fault: "kill-at:\(k)"))
            if killed.status == 0 {
                XCTAssertTrue(try AgentHarness.filesEqual(small, jobDir + "/disk0-flat.vmdk"))
                break
            }
            // Every other time, let the next session recover by itself instead of `recover`.
            if k % 2 == 1 {
                let rec = try AgentHarness.run([AgentHarness.target, "recover", "--root", h.root, "--log-file", h.dir + "/rec.log"])
                XCTAssertEqual(rec.status, 0, "kill-at:\(k): recover: \(rec.stdout)")
                let left = try diskFiles().filter { $0 != "disk0.vzlock" }
                XCTAssertTrue(left.isEmpty || left.contains("disk0.vzmap"), "kill-at:\(k): recover left \(left)")
                XCTAssertFalse(left.contains { $0.hasPrefix(".") }, "kill-at:\(k): temp files left: \(left)")
            }
            let committed = FileManager.default.fileExists(atPath: jobDir + "/disk0.vzmap")
            let next = committed ? small : other
            let r = try h.replicate(try job(next))
            XCTAssertEqual(r.status, 0, "kill-at:\(k) (committed: \(committed)): the next pass failed: \(r.stdout)")
            XCTAssertTrue(try AgentHarness.filesEqual(next, jobDir + "/disk0-flat.vmdk"), "kill-at:\(k)")
            if committed { sawCommitted += 1 } else { sawNothingLeft += 1 }
            k += 1
        }
        XCTAssertLessThan(k, 300, "the seed never completed")
        XCTAssertGreaterThan(sawNothingLeft, 5)
        XCTAssertGreaterThan(sawCommitted, 0)
    }

    /// What the old, non-atomic seed could leave: a 0-byte data file, a lone descriptor temp, a
    /// seed temp. `recover` removes all of it, and a seed then works.
    func testRecoverRemovesWhatAnUnfinishedSeedLeft() throws {
        try FileManager.default.createDirectory(atPath: jobDir, withIntermediateDirectories: true)
        for name in ["disk0-flat.vmdk", ".disk0.vmdk.tmp", ".disk0-flat.vmdk.tmp", "disk0.vmdk"] {
            FileManager.default.createFile(atPath: jobDir + "/" + name, contents: name.hasSuffix(".tmp") ? Data("x".utf8) : nil)
        }
        let rec = try AgentHarness.run([AgentHarness.target, "recover", "--root", h.root, "--log-file", h.dir + "/rec.log"])
        XCTAssertEqual(rec.status, 0, rec.stdout)
        XCTAssertEqual(try diskFiles().filter { $0 != "disk0.vzlock" }, [], rec.stdout)
        // Only a descriptor temp survived (the first file of a seed that crashed at once).
        FileManager.default.createFile(atPath: jobDir + "/.disk0.vmdk.tmp", contents: Data("x".utf8))
        XCTAssertEqual(try AgentHarness.run([AgentHarness.target, "recover", "--root", h.root, "--log-file", h.dir + "/rec.log"]).status, 0)
        XCTAssertEqual(try diskFiles().filter { $0 != "disk0.vzlock" }, [])
        // And the 0-byte data file alone no longer wedges the next pass ("resized").
        FileManager.default.createFile(atPath: jobDir + "/disk0-flat.vmdk", contents: nil)
        let src = try makeSource()
        let r = try h.replicate(try job(src))
        XCTAssertEqual(r.status, 0, r.stdout)
        XCTAssertTrue(try AgentHarness.filesEqual(src, jobDir + "/disk0-flat.vmdk"))
    }

    /// A data file the file system cannot size (EFBIG from ftruncate, injected with strace): a
    /// clear error, and no replica files left, so the next pass seeds normally.
    func testAFileSystemThatRefusesTheSizeLeavesNoReplica() throws {
        let src = try makeSource()
        let strace = ["/usr/bin/strace", "-f", "-o", "/dev/null", "-e", "trace=ftruncate", "-e", "inject=ftruncate:error=EFBIG"]
        let r = try h.replicate(try job(src, wrap: strace))
        XCTAssertEqual(r.status, 5, r.stdout)
        let message = r.events("error").first?["message"] as? String ?? ""
        XCTAssertTrue(message.contains("ftruncate") && message.contains("16 TiB"), message)
        XCTAssertEqual(try diskFiles().filter { $0 != "disk0.vzlock" }, [])
        XCTAssertEqual(try h.replicate(try job(src)).status, 0)
        XCTAssertTrue(try AgentHarness.filesEqual(src, jobDir + "/disk0-flat.vmdk"))
    }

    // MARK: planted files

    func testHardLinkedWorkingFilesAreRefusedAndTheOutsideFileIsUntouched() throws {
        let src = try makeSource()
        XCTAssertEqual(try h.replicate(try job(src)).status, 0)
        _ = try makeSource(seed: 9)  // the source changes: the next pass would write blocks
        for name in ["disk0-flat.vmdk", "disk0.vzlock", "disk0.vzmap"] {
            let outside = h.dir + "/outside-\(name)"
            let content = AgentHarness.randomBytes(1 << 20, seed: 77)
            try content.write(to: URL(fileURLWithPath: outside))
            let planted = jobDir + "/" + name
            let saved = planted + ".saved"
            try FileManager.default.moveItem(atPath: planted, toPath: saved)
            XCTAssertEqual(link(outside, planted), 0)
            let r = try h.replicate(try job(src))
            XCTAssertEqual(r.status, 5, "\(name): \(r.stdout)")
            let e = r.events("error").first
            XCTAssertEqual(e?["kind"] as? String, "pathOutsideRoot", "\(name): \(r.stdout)")
            XCTAssertTrue((e?["message"] as? String ?? "").contains(name) && (e?["message"] as? String ?? "").contains("hard links"), "\(name): \(r.stdout)")
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: outside)), content, "\(name): the outside file changed")
            try FileManager.default.removeItem(atPath: planted)
            try FileManager.default.moveItem(atPath: saved, toPath: planted)
        }
        // The descriptor is only ever replaced by a rename, never written through: a hard link to
        // it is harmless (the link is replaced, the outside file keeps its bytes).
        let outside = h.dir + "/outside-descriptor"
        let content = AgentHarness.randomBytes(4096, seed: 78)
        try content.write(to: URL(fileURLWithPath: outside))
        try FileManager.default.removeItem(atPath: jobDir + "/disk0.vmdk")
        XCTAssertEqual(link(outside, jobDir + "/disk0.vmdk"), 0)
        XCTAssertEqual(try h.replicate(try job(src)).status, 0)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: outside)), content)
        XCTAssertTrue(try AgentHarness.filesEqual(src, jobDir + "/disk0-flat.vmdk"))
    }

    /// A FIFO in place of the map or the journal blocked open() forever while keepalives kept
    /// the source waiting; now it is refused at once, naming the file.
    func testFIFOInPlaceOfAWorkingFileIsRefusedPromptly() throws {
        let src = try makeSource()
        XCTAssertEqual(try h.replicate(try job(src)).status, 0)
        for name in ["disk0.vzmap", "disk0.vzundo"] {
            let planted = jobDir + "/" + name
            let saved = planted + ".saved"
            if FileManager.default.fileExists(atPath: planted) { try FileManager.default.moveItem(atPath: planted, toPath: saved) }
            XCTAssertEqual(mkfifo(planted, 0o640), 0)
            let started = Date()
            let r = try serve(SpecClient.banner + SpecClient.hello(job: "vm1")
                              + SpecClient.openDisk("disk0", capacity: 1 << 20, blockSize: UInt32(bs)) + SpecClient.bye, timeout: 15)
            XCTAssertLessThan(Date().timeIntervalSince(started), 10, "\(name): the target hung")
            assertError(r.frames, kind: "pathOutsideRoot", mentions: [name, "FIFO"], name)
            try FileManager.default.removeItem(atPath: planted)
            if FileManager.default.fileExists(atPath: saved) { try FileManager.default.moveItem(atPath: saved, toPath: planted) }
        }
    }

    // MARK: capacity claims

    /// 16 TiB - 64 KiB at 64 KiB blocks would need an 8.8 GB map: the target used to abort
    /// (SIGABRT, no error frame) and leave a 16 TiB sparse file. Now it refuses before creating
    /// or allocating anything, also under a 2 GB address-space limit.
    func testCapacityWhoseMapWouldNotFitIsRefusedBeforeAnythingIsCreated() throws {
        for (capacity, extra) in [(UInt64(16) << 40 - 65536, [String]()), (UInt64(1) << 40, []), (UInt64(64) << 20, ["--map-memory-limit", "1000"])] {
            let r = try serve(SpecClient.banner + SpecClient.hello(job: "vm1")
                              + SpecClient.openDisk("disk0", capacity: capacity, blockSize: UInt32(bs)) + SpecClient.bye,
                              extra: extra, shellPrefix: "ulimit -v 2000000;")
            XCTAssertEqual(r.status, 1, "capacity \(capacity): \(r.stderr)")
            assertError(r.frames, kind: "targetRefused", mentions: ["\(capacity)", "map-memory-limit"], "capacity \(capacity)")
            XCTAssertEqual(try diskFiles(), [], "capacity \(capacity)")
        }
        // Within the limit, the same address-space cap still seeds.
        let src = try makeSource()
        let r = try h.replicate(try job(src, wrap: ["/bin/bash", "-c", "ulimit -v 2000000; exec \"$@\"", "bash"]))
        XCTAssertEqual(r.status, 0, r.stdout)
    }

    // MARK: one session, one disk

    /// Every session used to roll back all other jobs' unfinished passes before answering; with
    /// a short idle timeout that failed other jobs. Now a session recovers only its own disk:
    /// job A's journal is left to A's next session (or the boot unit's `recover`).
    func testASessionRecoversOnlyItsOwnDisk() throws {
        let a = try makeSource("a.raw", seed: 5)
        XCTAssertEqual(try h.replicate(try job(a, job: "jobA")).status, 0)
        _ = try makeSource("a.raw", seed: 6)
        // Kill A's pass at the first point where its journal exists.
        var k = 1
        while !FileManager.default.fileExists(atPath: h.root + "/jobA/disk0.vzundo") {
            XCTAssertNotEqual(try h.replicate(try job(a, job: "jobA", fault: "kill-at:\(k)")).status, 0, "kill-at:\(k) never killed")
            k += 1
            if k > 60 { return XCTFail("no kill left a journal") }
        }
        let journal = try AgentHarness.sha256(h.root + "/jobA/disk0.vzundo")
        let b = try makeSource("b.raw", seed: 7)
        let rb = try h.replicate(try job(b, job: "jobB"))
        XCTAssertEqual(rb.status, 0, rb.stdout)
        XCTAssertEqual(try AgentHarness.sha256(h.root + "/jobA/disk0.vzundo"), journal, "job B's session touched job A's journal")
        // A's own next pass recovers and converges.
        XCTAssertEqual(try h.replicate(try job(a, job: "jobA")).status, 0)
        XCTAssertTrue(try AgentHarness.filesEqual(a, h.root + "/jobA/disk0-flat.vmdk"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.root + "/jobA/disk0.vzundo"))
    }
}
