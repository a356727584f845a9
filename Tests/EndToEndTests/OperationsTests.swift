import Foundation
import VZCore
import XCTest

/// Operating the agents (issue 11, second half), with the real executables: the bandwidth limit
/// measured on the wire, parallel disks with one failing, progress events and their rate, the
/// terminal display (through a pty), and `plan` leaving the target's root untouched while its
/// numbers match the pass that follows.
final class OperationsTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    func randomDisk(_ name: String, size: Int, seed: UInt64) throws -> String {
        let path = h.dir + "/\(name).raw"
        try AgentHarness.randomBytes(size, seed: seed).write(to: URL(fileURLWithPath: path))
        return path
    }

    func outcomes(_ r: AgentHarness.Result, _ event: String = "pass-finished") -> [String: [String: Any]] {
        let disks = r.events(event).first?["disks"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: disks.map { ($0["disk"] as? String ?? "", $0) })
    }

    static func number(_ v: Any?) -> Double { (v as? NSNumber)?.doubleValue ?? -1 }

    // MARK: throttling

    /// 12 MiB of incompressible data at 4 MiB/s: the bytes the source wrote to the wire, over the
    /// disk's time, stay within 10 % of the limit (and the limit is not much stricter than asked).
    func testAThrottledPassStaysWithinItsLimit() throws {
        let limit = 4 << 20
        let src = try randomDisk("d", size: 12 << 20, seed: 11)
        let job = try h.writeJob(disks: [("disk0", src)], blockSize: 1 << 20, extra: ["bandwidthLimit": limit])
        let r = try h.replicate(job, timeout: 60)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let f = try XCTUnwrap(r.finished(), r.stdout)
        let wire = Self.number(f["wireBytes"]), seconds = Self.number(f["seconds"])
        XCTAssertGreaterThan(wire, Double(12 << 20), "every block travels: \(f)")
        let rate = wire / seconds
        XCTAssertLessThanOrEqual(rate, 1.1 * Double(limit), "\(wire) bytes in \(seconds) s")
        XCTAssertGreaterThan(rate, 0.6 * Double(limit), "\(wire) bytes in \(seconds) s: far below the limit")
        XCTAssertEqual(r.events("pass-started").first?["bandwidthLimit"] as? Int, limit)
        XCTAssertTrue(try AgentHarness.filesEqual(src, h.root + "/vm1/disk0-flat.vmdk"))
    }

    /// The slowest limit the job file allows (64 KiB/s) and 1 MiB blocks: one block frame takes
    /// 16 s on the wire, while both sides' idle timeouts are 2 s. Pacing the frame in small
    /// pieces keeps bytes flowing, and the throttle delays no heartbeat past a peer's idle
    /// timeout: the pass completes.
    func testAThrottledPassOutlivesShortIdleTimeouts() throws {
        let src = try randomDisk("d", size: 1 << 20, seed: 12)
        var job = try h.writeJob(disks: [("disk0", src)], blockSize: 1 << 20, extraTargetArgs: ["--idle-timeout", "2"],
                                 extra: ["bandwidthLimit": 65536])
        var obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: job))) as? [String: Any])
        var target = try XCTUnwrap(obj["target"] as? [String: Any])
        target["idleTimeoutSeconds"] = 2
        obj["target"] = target
        job = h.dir + "/job-short-idle.json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: job))
        let r = try h.replicate(job, timeout: 90)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let f = try XCTUnwrap(r.finished(), r.stdout)
        XCTAssertGreaterThan(Self.number(f["seconds"]), 12, "the limit was not honoured: \(f)")
        XCTAssertTrue(try AgentHarness.filesEqual(src, h.root + "/vm1/disk0-flat.vmdk"))
    }

    // MARK: parallel disks

    /// Two disks side by side; the second's source fails mid-read (EIO injected with strace on its
    /// file only): the first commits and its replica equals its source, the pass-finished lists
    /// both outcomes, and the exit code is the failed disk's (3, sourceIO).
    func testTwoDiskJobWithOneFailingDiskCommitsTheOther() throws {
        let good = try randomDisk("good", size: 6 << 20, seed: 21)
        let bad = try randomDisk("bad", size: 6 << 20, seed: 22)
        let job = try h.writeJob(disks: [("good", good), ("bad", bad)], extra: ["parallelDisks": 2])
        let strace = ["/usr/bin/strace", "-f", "-o", "/dev/null", "-P", bad, "-e", "trace=pread64",
                      "-e", "inject=pread64:error=EIO:when=20+"]
        let r = try AgentHarness.run(strace + [AgentHarness.source, "replicate", "--job", job, "--log-file", h.dir + "/source.log"],
                                     timeout: 120)
        XCTAssertEqual(r.status, 3, r.stdout + r.stderr)
        let o = outcomes(r)
        XCTAssertEqual(o["good"]?["outcome"] as? String, "committed", r.stdout)
        XCTAssertEqual(o["bad"]?["outcome"] as? String, "failed", r.stdout)
        XCTAssertEqual(o["bad"]?["kind"] as? String, "sourceIO", r.stdout)
        XCTAssertFalse((o["bad"]?["message"] as? String ?? "").isEmpty)
        XCTAssertEqual(r.events("pass-finished").first?["disksCommitted"] as? Int, 1)
        XCTAssertEqual(r.events("error").first?["disk"] as? String, "bad")
        XCTAssertTrue(try AgentHarness.filesEqual(good, h.root + "/vm1/good-flat.vmdk"), "the good disk's replica differs from its source")
        // Both ran at once: the good disk's events and the bad one's interleave as whole lines.
        for line in r.stdout.split(separator: "\n") {
            XCTAssertNotNil(try? JSONSerialization.jsonObject(with: Data(line.utf8)), "not a whole JSON line: \(line)")
        }
        // The failed disk rolled back alone: no journal is left, and the next pass seeds it.
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.root + "/vm1/bad.vzundo"))
        let again = try h.replicate(job, timeout: 120)
        XCTAssertEqual(again.status, 0, again.stdout)
        XCTAssertTrue(try AgentHarness.filesEqual(bad, h.root + "/vm1/bad-flat.vmdk"))
        XCTAssertEqual(again.finished("good")?["changedBytes"] as? Int, 0, "the committed disk stayed committed")
    }

    /// Memory is bounded per disk: four 32 MiB disks side by side take at most a few blocks in
    /// flight each (`4 × workers + 4` of 1 MiB, plus their frames) more than one disk at a time —
    /// far less than the 128 MiB of data. Peak RSS from GNU time.
    func testParallelDisksKeepMemoryBoundedPerDisk() throws {
        let disks = try (0..<4).map { ("d\($0)", try randomDisk("m\($0)", size: 32 << 20, seed: 90 + UInt64($0))) }
        func peakKiB(parallel: Int) throws -> Double {
            try? FileManager.default.removeItem(atPath: h.root + "/vm1")
            let job = try h.writeJob(disks: disks, blockSize: 1 << 20, extra: ["parallelDisks": parallel])
            let r = try AgentHarness.run(["/usr/bin/time", "-f", "peak-rss-kib %M", AgentHarness.source, "replicate", "--job", job,
                                          "--log-file", h.dir + "/source.log", "--log-level", "error"], timeout: 120)
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            let line = r.stderr.split(separator: "\n").last { $0.hasPrefix("peak-rss-kib ") } ?? ""
            return Double(line.dropFirst("peak-rss-kib ".count)) ?? -1
        }
        let one = try peakKiB(parallel: 1), four = try peakKiB(parallel: 4)
        XCTAssertGreaterThan(one, 0)
        XCTAssertLessThan(four - one, 3 * 24 * 1024, "4 disks at once: \(four) KiB, one at a time: \(one) KiB")
        for (name, path) in disks { XCTAssertTrue(try AgentHarness.filesEqual(path, h.root + "/vm1/\(name)-flat.vmdk")) }
    }

    /// One disk at a time (the default): after the first fails the second is not started.
    func testAfterAFailureNoNewDiskStarts() throws {
        let first = try randomDisk("first", size: 2 << 20, seed: 31)
        let second = try randomDisk("second", size: 2 << 20, seed: 32)
        let job = try h.writeJob(disks: [("first", first), ("second", second)])
        let strace = ["/usr/bin/strace", "-f", "-o", "/dev/null", "-P", first, "-e", "trace=pread64",
                      "-e", "inject=pread64:error=EIO:when=8+"]
        let r = try AgentHarness.run(strace + [AgentHarness.source, "replicate", "--job", job, "--log-file", h.dir + "/source.log"],
                                     timeout: 120)
        XCTAssertEqual(r.status, 3, r.stdout)
        let o = outcomes(r)
        XCTAssertEqual(o["first"]?["outcome"] as? String, "failed")
        XCTAssertEqual(o["second"]?["outcome"] as? String, "skipped")
        XCTAssertEqual(r.events("pass-finished").first?["ok"] as? Bool, false)
    }

    // MARK: progress

    /// A slow source (every read delayed) and, on the second pass, a target that rebuilds its map
    /// by hashing slowly: disk-progress carries its fields, at most about once a second, the map
    /// phase shows the target's step, and pass-started names the target's versions.
    func testProgressEventsCarryTheirFieldsAndStayWithinTheirRate() throws {
        let src = try randomDisk("d", size: 8 << 20, seed: 41)
        func job(targetFault: String?) throws -> String {
            var command = [AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/target.log"]
            if let f = targetFault { command = ["/usr/bin/env", "VZREPL_FAULT=\(f)"] + command }
            let obj: [String: Any] = ["job": "vm1", "blockSize": 65536,
                                      "target": ["transport": "exec", "command": command, "idleTimeoutSeconds": 20],
                                      "disks": [["name": "disk0", "source": src]]]
            let path = h.dir + "/job.json"
            try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
            return path
        }
        let r = try h.replicate(try job(targetFault: nil), environment: ["VZREPL_FAULT": "delay-read:40"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let started = try XCTUnwrap(r.events("pass-started").first)
        XCTAssertEqual(started["targetVersion"] as? String, "0.1.0", "\(started)")
        XCTAssertEqual(started["targetProtocolVersion"] as? Int, 3, "\(started)")
        XCTAssertEqual(r.events.first?["event"] as? String, "pass-started")
        let progress = r.events("disk-progress")
        XCTAssertGreaterThanOrEqual(progress.count, 2, r.stdout)
        let phases: Set<String> = ["map", "scan", "send", "commit", "waiting-for-lock", "recover"]
        for p in progress {
            for key in ["phase", "bytesDone", "bytesTotal", "bytesPerSecond", "etaSeconds", "percent", "capacityBytes"] {
                XCTAssertNotNil(p[key], "\(key) missing: \(p)")
            }
            XCTAssertTrue(phases.contains(p["phase"] as? String ?? ""), "\(p)")
            XCTAssertLessThanOrEqual(Self.number(p["bytesDone"]), Self.number(p["bytesTotal"]))
        }
        XCTAssertTrue(progress.contains { $0["phase"] as? String == "send" && Self.number($0["bytesPerSecond"]) > 0 && Self.number($0["etaSeconds"]) >= 0 },
                      "no send event with a rate and an ETA: \(progress)")
        try assertSpacedAtLeastASecond(progress)

        // Second pass: the map is gone, the target hashes its replica slowly: at 120 ms a read
        // the rebuild takes about 7 s (at 60 ms it took 3-4 s, sometimes only 2 events at 1/s).
        try FileManager.default.removeItem(atPath: h.root + "/vm1/disk0.vzmap")
        let r2 = try h.replicate(try job(targetFault: "delay-read:120"), timeout: 120)
        XCTAssertEqual(r2.status, 0, r2.stdout + r2.stderr)
        let mapSteps = r2.events("disk-progress").filter { $0["phase"] as? String == "map" && $0["stepBytesTotal"] != nil }
        XCTAssertFalse(mapSteps.isEmpty, "no map progress while the target rebuilt its map: \(r2.stdout)")
        XCTAssertEqual(Self.number(mapSteps.last?["stepBytesTotal"]), Double(8 << 20))
        try assertSpacedAtLeastASecond(r2.events("disk-progress"))
        // And they keep coming all through the rebuild (about once a second), not once at its end.
        XCTAssertGreaterThanOrEqual(mapSteps.count, 3, "\(mapSteps)")
        XCTAssertGreaterThan(Self.number(mapSteps.last?["stepBytesDone"]), Self.number(mapSteps.first?["stepBytesDone"]), "\(mapSteps)")
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let times = mapSteps.compactMap { ($0["time"] as? String).flatMap(f.date(from:)) }
        for (a, b) in zip(times, times.dropFirst()) {
            XCTAssertLessThanOrEqual(b.timeIntervalSince(a), 3, "a silence of \(b.timeIntervalSince(a)) s while the target rebuilt its map")
        }
    }

    /// Another holder of the disk's lock (flock(1) on DISK.vzlock) for ~3 s: the target waits
    /// (`--lock-wait`) and says so in its heartbeats; the source's events show `waiting-for-lock`,
    /// and the pass goes on once the lock is free.
    func testWaitingForTheDiskLockShowsInProgress() throws {
        let src = try randomDisk("d", size: 1 << 20, seed: 45)
        let job = try h.writeJob(disks: [("disk0", src)], extraTargetArgs: ["--lock-wait", "20"])
        XCTAssertEqual(try h.replicate(job).status, 0)
        let lock = h.root + "/vm1/disk0.vzlock"
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        holder.arguments = [lock, "sleep", "3"]
        try holder.run()
        defer { holder.waitUntilExit() }
        Thread.sleep(forTimeInterval: 0.3)
        let r = try h.replicate(job, timeout: 60)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let waiting = r.events("disk-progress").filter { $0["phase"] as? String == "waiting-for-lock" }
        XCTAssertGreaterThanOrEqual(waiting.count, 2, "waiting-for-lock progress all along the wait: \(r.stdout)")
        XCTAssertEqual(waiting.first?["etaSeconds"] as? NSNull, NSNull())
    }

    private func assertSpacedAtLeastASecond(_ events: [[String: Any]], file: StaticString = #filePath, line: UInt = #line) throws {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let times = events.compactMap { ($0["time"] as? String).flatMap(f.date(from:)) }
        for (a, b) in zip(times, times.dropFirst()) {
            XCTAssertGreaterThanOrEqual(b.timeIntervalSince(a), 0.95, "two disk-progress events \(b.timeIntervalSince(a)) s apart", file: file, line: line)
        }
    }

    /// stdout a terminal (a pty), stderr a file: no JSON on stdout, a progress line per disk on
    /// stderr; with --json, JSON lines on the terminal.
    func testATerminalGetsProgressLinesOnStderrUnlessJSON() throws {
        let src = try randomDisk("d", size: 8 << 20, seed: 51)
        let job = try h.writeJob(disks: [("disk0", src), ("disk1", src)], extra: ["parallelDisks": 2])
        let script = """
        import os, pty, subprocess, sys
        master, slave = pty.openpty()
        err = open(sys.argv[1], "wb")
        p = subprocess.Popen(sys.argv[2:], stdout=slave, stderr=err, stdin=subprocess.DEVNULL, env=dict(os.environ, VZREPL_FAULT="delay-read:40"))
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        sys.stdout.buffer.write(out)
        sys.exit(p.wait())
        """
        func run(_ extra: [String]) throws -> (AgentHarness.Result, String) {
            let errPath = h.dir + "/stderr-\(extra.count).txt"
            let r = try AgentHarness.run(["/usr/bin/python3", "-c", script, errPath, AgentHarness.source, "replicate", "--job", job,
                                          "--log-file", h.dir + "/source.log", "--log-level", "error"] + extra, timeout: 120)
            return (r, (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
        }
        let (tty, stderr) = try run([])
        XCTAssertEqual(tty.status, 0, tty.stdout + stderr)
        XCTAssertFalse(tty.stdout.contains("\"event\""), "JSON on the terminal: \(tty.stdout)")
        XCTAssertTrue(stderr.contains("disk0: committed generation 1"), stderr)
        XCTAssertTrue(stderr.contains("disk1: committed generation 1"), stderr)
        XCTAssertTrue(stderr.contains("pass finished"), stderr)
        XCTAssertTrue(stderr.contains("/s ETA "), "no live progress line with a rate and an ETA: \(stderr)")
        XCTAssertTrue(stderr.contains("\u{1B}[2K"), "lines are redrawn in place")

        let (json, stderr2) = try run(["--json"])
        XCTAssertEqual(json.status, 0, json.stdout + stderr2)
        XCTAssertTrue(json.stdout.contains("\"event\":\"pass-finished\""), json.stdout)
        XCTAssertFalse(stderr2.contains("pass finished"), stderr2)
    }

    /// A person at a terminal, both agents logging at info, the target's stderr relayed (exec),
    /// and one of two disks failing mid-pass (EIO injected with strace): while the live lines are
    /// shown, no log line lands inside one of them and the info lines stay in the log files, but
    /// the source's error line about the failing disk is printed on the terminal, above them.
    func testLogLinesDoNotBreakUpTheLiveProgressLines() throws {
        let good = try randomDisk("good", size: 6 << 20, seed: 55)
        let bad = try randomDisk("bad", size: 6 << 20, seed: 56)
        let job = try h.writeJob(disks: [("good", good), ("bad", bad)], extra: ["parallelDisks": 2])
        let script = """
        import os, pty, subprocess, sys
        master, slave = pty.openpty()
        err = open(sys.argv[1], "wb")
        p = subprocess.Popen(sys.argv[2:], stdout=slave, stderr=err, stdin=subprocess.DEVNULL, env=dict(os.environ, VZREPL_FAULT="delay-read:40"))
        os.close(slave)
        while True:
            try:
                if not os.read(master, 65536):
                    break
            except OSError:
                break
        sys.exit(p.wait())
        """
        let errPath = h.dir + "/stderr.txt"
        let strace = ["/usr/bin/strace", "-f", "-o", "/dev/null", "-P", bad, "-e", "trace=pread64",
                      "-e", "inject=pread64:error=EIO:when=20+"]
        let r = try AgentHarness.run(["/usr/bin/python3", "-c", script, errPath] + strace
                                     + [AgentHarness.source, "replicate", "--job", job, "--log-file", h.dir + "/source.log"], timeout: 120)
        let terminal = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        XCTAssertEqual(r.status, 3, terminal)
        let escape = try NSRegularExpression(pattern: "\u{1B}\\[[0-9]*[A-Za-z]|\r")
        let lines = terminal.split(separator: "\n").map { l -> String in
            let s = String(l)
            return escape.stringByReplacingMatches(in: s, range: NSRange(s.startIndex..., in: s), withTemplate: "")
        }
        let firstLive = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("good: ") || $0.hasPrefix("bad: ") }, terminal)
        let end = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("pass failed") }, terminal)
        for line in lines {
            if line.contains("ts=") { XCTAssertTrue(line.hasPrefix("ts="), "a log line inside another line: \(line)") }
            if line.hasPrefix("good: ") || line.hasPrefix("bad: ") { XCTAssertFalse(line.contains("level="), line) }
        }
        let during = lines[firstLive..<end]
        XCTAssertFalse(during.contains { $0.contains("level=info") }, "info lines on the terminal during the pass: \(terminal)")
        XCTAssertTrue(during.contains { $0.hasPrefix("ts=") && $0.contains("level=error") && $0.contains("disk=bad") && $0.contains("kind=sourceIO") },
                      "the failing disk's error is not on the terminal: \(terminal)")
        XCTAssertTrue(lines.contains("good: committed generation 1") || lines.contains { $0.hasPrefix("good: committed generation 1") }, terminal)
        // The quiet lines are in the logs all the same: both agents', of this pass.
        let sourceLog = try String(contentsOfFile: h.dir + "/source.log", encoding: .utf8)
        let targetLog = try String(contentsOfFile: h.dir + "/target.log", encoding: .utf8)
        XCTAssertTrue(sourceLog.contains("level=info") && sourceLog.contains("level=error"), sourceLog)
        XCTAssertTrue(targetLog.contains("level=info"), targetLog)
    }

    // MARK: plan

    /// Every file and directory under the root: contents' SHA-256, size, mode and mtime (to the
    /// nanosecond), so "untouched" means byte for byte and not even rewritten in place.
    func snapshot(_ root: String) throws -> [String: String] {
        var out: [String: String] = [:]
        let paths = [""] + (FileManager.default.subpaths(atPath: root) ?? [])
        for p in paths {
            let full = p.isEmpty ? root : root + "/" + p
            var st = stat()
            guard lstat(full, &st) == 0 else { continue }
            var entry = "mode \(st.st_mode) size \(st.st_size) mtime \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
            if st.st_mode & S_IFMT == S_IFREG { entry += " sha256 " + (try AgentHarness.sha256(full)) }
            out[p] = entry
        }
        return out
    }

    /// A seeded disk, then changes on the source (new data, zeroed blocks): `plan` reports them
    /// and leaves the target's root exactly as it was — no replica, journal, map or lock file
    /// created or rewritten — and the real pass that follows sends exactly what the plan said.
    func testPlanLeavesTheTargetUntouchedAndMatchesThePass() throws {
        let src = try randomDisk("d", size: 8 << 20, seed: 61)
        let job = try h.writeJob(disks: [("disk0", src)])

        // Before any pass: a plan creates nothing at all, not even the job's directory.
        let empty = try snapshot(h.root)
        let fresh = try AgentHarness.run([AgentHarness.source, "plan", "--job", job, "--log-file", h.dir + "/source.log"], timeout: 60)
        XCTAssertEqual(fresh.status, 0, fresh.stdout + fresh.stderr)
        XCTAssertEqual(try snapshot(h.root), empty)
        let seedPlan = try XCTUnwrap(fresh.events("disk-plan").first, fresh.stdout)
        XCTAssertEqual(seedPlan["mapStatus"] as? String, "created")
        XCTAssertEqual(seedPlan["dataBlocks"] as? Int, 128)

        XCTAssertEqual(try h.replicate(job).status, 0)
        // Changes: 3 blocks of new data, 5 blocks zeroed (one run), the rest unchanged.
        try AgentHarness.write(AgentHarness.randomBytes(3 * 65536, seed: 62), to: src, at: 10 * 65536)
        try AgentHarness.write(Data(count: 5 * 65536), to: src, at: 40 * 65536)
        // Leave a lock file the pass left, and time for an mtime to move if anything is rewritten.
        Thread.sleep(forTimeInterval: 0.05)
        let before = try snapshot(h.root)
        XCTAssertNotNil(before["vm1/disk0.vzlock"], "the seed left its lock file: \(before.keys.sorted())")
        let p = try AgentHarness.run([AgentHarness.source, "plan", "--job", job, "--log-file", h.dir + "/source.log"], timeout: 60)
        XCTAssertEqual(p.status, 0, p.stdout + p.stderr)
        XCTAssertEqual(try snapshot(h.root), before, "plan changed the target's root")
        XCTAssertEqual(p.events.first?["event"] as? String, "plan-started")
        XCTAssertEqual(p.events("plan-started").first?["targetProtocolVersion"] as? Int, 3)
        XCTAssertEqual(outcomes(p, "plan-finished")["disk0"]?["outcome"] as? String, "planned")
        let plan = try XCTUnwrap(p.events("disk-plan").first, p.stdout)
        XCTAssertEqual(plan["mapStatus"] as? String, "valid")
        XCTAssertEqual(plan["generation"] as? Int, 1)
        XCTAssertEqual(plan["dataBlocks"] as? Int, 3)
        XCTAssertEqual(plan["zeroBytes"] as? Int, 5 * 65536)
        let send = plan["sendExtents"] as? [[Any]] ?? []
        XCTAssertEqual(send.count, 2, "\(send)")
        XCTAssertEqual(send.first?[0] as? Int, 10 * 65536)
        XCTAssertEqual(send.first?[1] as? Int, 3 * 65536)
        XCTAssertEqual(send.first?[2] as? String, "data")
        XCTAssertEqual(send.last?[2] as? String, "zero")

        // The pass sends what the plan said.
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stdout)
        let f = try XCTUnwrap(r.finished(), r.stdout)
        for key in ["dataBlocks", "sentBytes", "zeroBytes", "changedBytes", "scannedBytes", "activeBytes"] {
            XCTAssertEqual(Self.number(plan[key]), Self.number(f[key]), "\(key): plan \(plan[key] ?? "-"), pass \(f[key] ?? "-")")
        }
        XCTAssertTrue(try AgentHarness.filesEqual(src, h.root + "/vm1/disk0-flat.vmdk"))

        // With the map gone the target hashes its replica to plan (read-only) and still writes
        // nothing: no new map, no temp file.
        try FileManager.default.removeItem(atPath: h.root + "/vm1/disk0.vzmap")
        let withoutMap = try snapshot(h.root)
        let rebuilt = try AgentHarness.run([AgentHarness.source, "plan", "--job", job, "--log-file", h.dir + "/source.log"], timeout: 60)
        XCTAssertEqual(rebuilt.status, 0, rebuilt.stdout + rebuilt.stderr)
        XCTAssertEqual(rebuilt.events("disk-plan").first?["mapStatus"] as? String, "rebuilt")
        XCTAssertEqual(rebuilt.events("disk-plan").first?["dataBlocks"] as? Int, 0, "the replica equals the source")
        XCTAssertEqual(try snapshot(h.root), withoutMap, "plan changed the target's root")
    }

    /// A target of protocol version 2 has no read-only mode: `plan` refuses it by name before it
    /// opens any disk (versionMismatch, exit 4), and ends the session cleanly. (A stand-in target
    /// that answers hello like a version-2 agent and records what it was sent.)
    func testPlanAgainstAVersionTwoTargetIsAVersionMismatch() throws {
        let src = try randomDisk("d", size: 1 << 20, seed: 81)
        let received = h.dir + "/received.bin"
        let fake = """
        import sys
        ack = b"\\x05\\x000.0.9"
        sys.stdout.buffer.write(b"VZREPL/2 vzrepl-target 0.0.9\\n" + b"\\x56\\x5a\\x02\\x00" + len(ack).to_bytes(4, "little") + ack)
        sys.stdout.buffer.flush()
        open(sys.argv[1], "wb").write(sys.stdin.buffer.read())
        """
        let obj: [String: Any] = ["job": "vm1", "target": ["transport": "exec", "command": ["/usr/bin/python3", "-c", fake, received],
                                                           "idleTimeoutSeconds": 10],
                                  "disks": [["name": "disk0", "source": src]]]
        let job = h.dir + "/job-v2.json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: job))
        let r = try AgentHarness.run([AgentHarness.source, "plan", "--job", job, "--log-file", h.dir + "/source.log"], timeout: 60)
        XCTAssertEqual(r.status, 4, r.stdout + r.stderr)
        let e = try XCTUnwrap(r.events("error").first, r.stdout)
        XCTAssertEqual(e["kind"] as? String, "versionMismatch")
        XCTAssertTrue((e["message"] as? String ?? "").contains("protocol version 2"), "\(e)")
        XCTAssertTrue(r.events("disk-plan").isEmpty)
        // What the stand-in got: the banner, hello and bye — no openDisk.
        var bytes = [UInt8]((try? Data(contentsOf: URL(fileURLWithPath: received))) ?? Data())
        bytes.removeFirst((bytes.firstIndex(of: 0x0A) ?? 0) + 1)
        var dec = FrameDecoder()
        dec.append(bytes)
        var types: [Message.MessageType] = []
        while let f = try dec.nextFrame() { types.append(try Message.decode(f).type) }
        XCTAssertEqual(types.filter { $0 != .keepalive }, [.hello, .bye])
    }

    /// The target refuses a block for a disk opened read-only, and writes nothing.
    func testTheTargetRefusesAWriteToAReadOnlyDisk() throws {
        let src = try randomDisk("d", size: 1 << 20, seed: 71)
        XCTAssertEqual(try h.replicate(try h.writeJob(disks: [("disk0", src)])).status, 0)
        let before = try snapshot(h.root)
        var bytes = Array("VZREPL/3 test-client 0\n".utf8)
        let frames: [[UInt8]] = [
            Message.hello(job: "vm1", sourceVersion: "test").encodedFrame(),
            Message.openDisk(.init(disk: "disk0", capacity: 1 << 20, blockSize: 65536, mode: .differential, readOnly: true)).encodedFrame(),
            Message.zeroExtent(Extent(offset: 0, length: 65536)).encodedFrame(),
        ]
        for f in frames { bytes += f }
        let r = try AgentHarness.run([AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/t.log",
                                      "--idle-timeout", "10"], stdin: Data(bytes), timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        var out = [UInt8](r.output)
        out.removeFirst((out.firstIndex(of: 0x0A) ?? 0) + 1)
        var dec = FrameDecoder()
        dec.append(out)
        var messages: [Message] = []
        while let f = try dec.nextFrame() { messages.append(try Message.decode(f)) }
        guard case let .error(kind, message)? = messages.last else { return XCTFail("no error frame: \(messages)") }
        XCTAssertEqual(kind, "protocolViolation")
        XCTAssertTrue(message.contains("opened read-only"), message)
        XCTAssertEqual(try snapshot(h.root), before)
    }
}
