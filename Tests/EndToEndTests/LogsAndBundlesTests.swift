import Foundation
import VZCore
import VZTestSupport
import XCTest

/// Issue 11, first half: both agents' logs are logfmt that share the pass id, errors carry kind
/// and hint on both sides, a peer cannot forge a log line, no secret reaches a log, an event or a
/// bundle, each bundle holds what Docs/operations.md lists, and the metrics file parses with
/// prometheus_client's own parser.
final class LogsAndBundlesTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    var logs: String { h.dir + "/logs" }

    /// A job whose target agent logs into `logs` (with `--debug`), with `env` for the target only.
    func writeJob(env: [String] = [], targetArgs: [String] = ["--debug"], disks: [(String, String)], extra: [String: Any] = [:]) throws -> String {
        let command = ["/usr/bin/env"] + env + [AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-dir", logs] + targetArgs
        var obj: [String: Any] = ["job": "vm1", "blockSize": 65536,
                                  "target": ["transport": "exec", "command": command, "idleTimeoutSeconds": 20],
                                  "disks": disks.map { ["name": $0.0, "source": $0.1] }]
        for (k, v) in extra { obj[k] = v }
        let path = h.dir + "/job.json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
        return path
    }

    func replicate(_ job: String, _ args: [String] = []) throws -> AgentHarness.Result {
        try AgentHarness.run([AgentHarness.source, "replicate", "--job", job, "--log-dir", logs] + args, timeout: 120)
    }

    /// Every line of a log file, parsed; a line that is not logfmt fails the test.
    func parsedLog(_ agent: String, file: StaticString = #filePath, line: UInt = #line) throws -> [[String: String]] {
        let text = try String(contentsOfFile: "\(logs)/\(agent).log", encoding: .utf8)
        XCTAssertTrue(text.hasSuffix("\n"), file: file, line: line)
        return try text.split(separator: "\n").map { l in
            do { return try LogfmtParser.fields(String(l)) } catch {
                XCTFail("\(agent).log: \(error)", file: file, line: line)
                throw error
            }
        }
    }

    func disk(_ size: Int = 16 * 65536, seed: UInt64 = 1) throws -> String {
        let src = h.dir + "/disk0.raw"
        try AgentHarness.makeImage(src, size: UInt64(size))
        try AgentHarness.write(AgentHarness.randomBytes(4 * 65536, seed: seed), to: src, at: 65536)
        return src
    }

    // MARK: logs

    func testBothSidesLogLogfmtAndShareThePassId() throws {
        let job = try writeJob(disks: [("disk0", try disk())])
        let r = try replicate(job, ["--verbose"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let passId = try XCTUnwrap(r.events("pass-started").first?["passId"] as? String)
        XCTAssertNotNil(PassIdentifier.bytes(of: passId), passId)

        let source = try parsedLog("vzrepl-source"), target = try parsedLog("vzrepl-target")
        for (name, lines) in [("source", source), ("target", target)] {
            XCTAssertFalse(lines.isEmpty, name)
            for l in lines {
                XCTAssertNotNil(l["ts"]?.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression), "\(name): \(l)")
                for k in ["level", "subsystem", "msg"] { XCTAssertNotNil(l[k], "\(name): \(k) missing in \(l)") }
            }
        }
        // Every source line of the pass and every target line once hello arrived carry the id.
        XCTAssertTrue(source.allSatisfy { $0["pass"] == passId }, "\(source)")
        let afterHello = target.drop { $0["msg"] != "session started" }
        XCTAssertFalse(afterHello.isEmpty, "\(target)")
        XCTAssertTrue(afterHello.allSatisfy { $0["pass"] == passId }, "\(afterHello.filter { $0["pass"] != passId })")
        XCTAssertTrue(afterHello.contains { $0["subsystem"] == "vzrepl.journal" }, "the journal's lines carry the pass too")
        XCTAssertTrue(afterHello.contains { $0["msg"]?.hasPrefix("pass committed") ?? false && $0["disk"] == "disk0" && $0["job"] == "vm1" })
        // --debug: the protocol frames, summarised.
        XCTAssertTrue(target.contains { $0["level"] == "trace" && $0["msg"] == "frame" && $0["type"] == "hello" && $0["direction"] == "received" })
        XCTAssertTrue(target.contains { $0["msg"] == "frames since the last summary" && $0["received.blockData"] == "4" }, "\(target)")
        XCTAssertFalse(source.contains { $0["level"] == "trace" }, "--verbose is debug, not trace")
        // The undo journal recorded the same id: status shows it as the last pass's.
        let status = try AgentHarness.run([AgentHarness.target, "status", "--root", h.root, "--json"])
        let s = try XCTUnwrap((try JSONSerialization.jsonObject(with: status.output) as? [[String: Any]])?.first)
        XCTAssertEqual((s["lastPass"] as? [String: Any])?["passId"] as? String, passId)
    }

    /// A log directory that cannot be written: the agent says so in its first line (logfmt, on
    /// stderr) and carries on logging to stderr; the command still succeeds.
    func testAnUnwritableLogDirectoryFallsBackToStderr() throws {
        let r = try AgentHarness.run([AgentHarness.target, "recover", "--root", h.root, "--log-dir", "/proc/vzrepl-no-such-dir"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try r.stderr.split(separator: "\n").map { try LogfmtParser.fields(String($0)) }
        XCTAssertEqual(lines.first?["msg"], "cannot open the log file; logging to stderr only", r.stderr)
        XCTAssertEqual(lines.first?["file"], "/proc/vzrepl-no-such-dir/vzrepl-target.log")
        XCTAssertEqual(lines.first?["level"], "warning")
    }

    /// A version-2 target (simulated by the source seeing a `VZREPL/2` banner) gets no pass id,
    /// and a v3 hello to it would have been refused; covered in MessageTests. Here: the log of a
    /// source talking to a v2 peer says so.
    func testAVersionTwoTargetIsToldNoPassId() throws {
        // A fake version-2 target: its banner, then it refuses the job with an error frame.
        let script = h.dir + "/v2-target.bin"
        var bytes = Array("VZREPL/2 vzrepl-target 0.0.9\n".utf8)
        bytes += Message.helloAck(targetVersion: "0.0.9").encodedFrame()
        bytes += Message.error(kind: "targetRefused", message: "stop here").encodedFrame()
        try Data(bytes).write(to: URL(fileURLWithPath: script))
        let capture = h.dir + "/hello.bin"
        let job = try writeFakeTargetJob(script: script, capture: capture)
        let r = try replicate(job)
        XCTAssertEqual(r.status, 5, r.stdout)
        let hello = try Data(contentsOf: URL(fileURLWithPath: capture))
        let line = hello.firstIndex(of: 0x0A).map { hello.index(after: $0) } ?? 0
        var decoder = FrameDecoder()
        decoder.append(Array(hello[line...]))
        guard case let .hello(job: _, sourceVersion: _, passId: passId)? = try decoder.nextFrame().map({ try Message.decode($0) }) else {
            return XCTFail("no hello captured")
        }
        XCTAssertEqual(passId, "", "a version-2 target must not get the trailing pass id")
        XCTAssertTrue(try parsedLog("vzrepl-source").contains { $0["msg"]?.contains("speaks protocol 2") ?? false })
    }

    /// A target that is a shell script replaying `script` and capturing what the source sends.
    func writeFakeTargetJob(script: String, capture: String) throws -> String {
        let command = ["/bin/sh", "-c", "cat \(script); exec cat > \(capture)"]
        let obj: [String: Any] = ["job": "vm1", "blockSize": 65536,
                                  "target": ["transport": "exec", "command": command, "idleTimeoutSeconds": 5],
                                  "disks": [["name": "disk0", "source": try disk()]]]
        let path = h.dir + "/job-fake.json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// ENOSPC injected into the target's third write: both agents log an error line with the kind
    /// and the kind's hint from the one table, for the same pass.
    func testInjectedFailureLogsKindAndHintOnBothSides() throws {
        let job = try writeJob(env: ["VZREPL_FAULT=enospc-write:3+"], disks: [("disk0", try disk())])
        let r = try replicate(job)
        XCTAssertEqual(r.status, 5, r.stdout + r.stderr)
        let error = try XCTUnwrap(r.events("error").first)
        XCTAssertEqual(error["kind"] as? String, "noSpace")
        XCTAssertEqual(error["hint"] as? String, VZError.Kind.noSpace.hint)
        let passId = try XCTUnwrap(r.events("pass-started").first?["passId"] as? String)
        for agent in ["vzrepl-source", "vzrepl-target"] {
            let errors = try parsedLog(agent).filter { $0["level"] == "error" || $0["level"] == "critical" }
            XCTAssertFalse(errors.isEmpty, "\(agent): no error line")
            for e in errors {
                let kind = try XCTUnwrap(e["kind"].flatMap(VZError.Kind.init(rawValue:)), "\(agent): \(e)")
                XCTAssertEqual(e["hint"], kind.hint, "\(agent): \(e)")
                XCTAssertEqual(e["pass"], passId, "\(agent): \(e)")
            }
            XCTAssertTrue(errors.contains { $0["kind"] == "noSpace" }, "\(agent): \(errors)")
        }
    }

    /// Regression guard: the target's error message is the peer's text; with a newline and a
    /// fake field in it, it still lands inside one quoted value of one line of the source log.
    func testPeerErrorWithANewlineCannotForgeASourceLogLine() throws {
        let forged = "ts=2026-01-01T00:00:00.000Z level=error subsystem=vzrepl.source msg=forged kind=internal"
        let script = h.dir + "/hostile-target.bin"
        var bytes = Array("VZREPL/3 vzrepl-target 9\n".utf8)
        bytes += Message.error(kind: "noSpace", message: "disk full\n\(forged)\r\n\u{1B}[2J\u{2028}\(forged)").encodedFrame()
        try Data(bytes).write(to: URL(fileURLWithPath: script))
        let r = try replicate(try writeFakeTargetJob(script: script, capture: h.dir + "/capture.bin"))
        XCTAssertNotEqual(r.status, 0)
        let raw = try String(contentsOfFile: "\(logs)/vzrepl-source.log", encoding: .utf8)
        let lines = try parsedLog("vzrepl-source")
        XCTAssertFalse(lines.contains { $0["msg"] == "forged" }, raw)
        XCTAssertFalse(raw.split(separator: "\n").contains { $0.hasPrefix(forged) }, raw)
        let failed = try XCTUnwrap(lines.first { $0["msg"] == "pass failed" }, raw)
        XCTAssertEqual(failed["kind"], "noSpace")
        XCTAssertTrue(failed["error"]?.contains("disk full\n\(forged)\r\n\u{1B}[2J\u{2028}\(forged)") ?? false, "\(failed)")
        for l in raw.split(separator: "\n") + r.stderr.split(separator: "\n") {
            XCTAssertTrue(l.hasPrefix("ts="), "a line that does not start with ts=: \(l)")
        }
    }

    // MARK: secrets and bundles

    /// The private key (and its public half's comment, a stand-in for anything the key file
    /// holds) never reaches a log, an event or either bundle; a secret-looking job field is
    /// redacted in the source bundle.
    func testNoSecretInLogsEventsOrBundles() throws {
        let key = h.dir + "/id_ed25519"
        let gen = try AgentHarness.run(["/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "comment-secret-7f3a", "-f", key])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let keyText = try String(contentsOfFile: key, encoding: .utf8)
        let secretLines = keyText.split(separator: "\n").filter { !$0.hasPrefix("-----") }.map(String.init)
        XCTAssertFalse(secretLines.isEmpty)
        // An ssh job to a port nothing listens on: the key is loaded, the connection refused.
        let port = 1 + Int.random(in: 40000...50000)
        let obj: [String: Any] = ["job": "vm1", "blockSize": 65536,
                                  "target": ["transport": "ssh", "host": "127.0.0.1", "port": port, "user": "vzrepl", "identity": key,
                                             "hostKeySHA256": "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", "connectTimeoutSeconds": 5],
                                  "disks": [["name": "disk0", "source": try disk()]]]
        let job = h.dir + "/job-ssh.json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: job))
        let r = try replicate(job, ["--debug"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertFalse(r.events("error").isEmpty, r.stdout)

        let bundle = h.dir + "/source.tar.gz"
        let d = try AgentHarness.run([AgentHarness.source, "diagnose", "--job", job, "--log-dir", logs, "--output", bundle])
        XCTAssertEqual(d.status, 0, d.stderr)
        let t = try AgentHarness.run([AgentHarness.target, "diagnose", "--root", h.root, "--log-dir", logs, "--output", h.dir + "/target.tar.gz"])
        XCTAssertEqual(t.status, 0, t.stderr)
        var everything = r.stdout + r.stderr + (try String(contentsOfFile: "\(logs)/vzrepl-source.log", encoding: .utf8))
        everything += try bundleText(bundle) + bundleText(h.dir + "/target.tar.gz")
        for secret in secretLines + ["comment-secret-7f3a", "PRIVATE KEY"] {
            XCTAssertFalse(everything.contains(secret), "a secret leaked: \(secret)")
        }
        XCTAssertTrue(everything.contains(key), "the key's path (not secret) is named")
    }

    /// Every file of a bundle, extracted with the system tar, concatenated.
    func bundleText(_ path: String) throws -> String {
        let out = h.dir + "/x-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let x = try AgentHarness.run(["/bin/tar", "-xzf", path, "-C", out])
        XCTAssertEqual(x.status, 0, x.stderr)
        var text = ""
        for case let f as String in FileManager.default.enumerator(atPath: out)! {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: out + "/" + f, isDirectory: &isDir), !isDir.boolValue {
                text += String(decoding: try Data(contentsOf: URL(fileURLWithPath: out + "/" + f)), as: UTF8.self)
            }
        }
        return text
    }

    func listing(_ path: String) throws -> Set<String> {
        let r = try AgentHarness.run(["/bin/tar", "tzf", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        return Set(r.stdout.split(separator: "\n").map(String.init))
    }

    /// A pass killed mid-way leaves a pending journal and the rollback script; an ABM pass with
    /// --keep-temp leaves the active-block filter. Each bundle lists what operations.md says.
    func testEachBundleContainsWhatIsListed() throws {
        let src = try disk()
        XCTAssertEqual(try replicate(try writeJob(disks: [("disk0", src)])).status, 0)
        try AgentHarness.write(AgentHarness.randomBytes(4 * 65536, seed: 9), to: src, at: 65536)
        let work = h.dir + "/work"
        let killed = try replicate(try writeJob(env: ["VZREPL_FAULT=kill-at:20"], disks: [("disk0", src)],
                                                extra: ["abm": true, "workDir": work]), ["--keep-temp"])
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: h.root + "/vm1/disk0.vzundo"), "the kill left a pending journal")

        let target = h.dir + "/out/target.tar.gz"
        XCTAssertEqual(try AgentHarness.run([AgentHarness.target, "diagnose", "--root", h.root, "--log-dir", logs, "--output", target]).status, 0)
        let t = try listing(target)
        for f in ["MANIFEST.txt", "versions.txt", "sshd-t.txt", "df.txt", "free-space.txt", "status.json", "logs/vzrepl-target.log",
                  "datastore/vm1/listing.txt", "datastore/vm1/disk0.txt", "datastore/vm1/vzundo-script"] {
            XCTAssertTrue(t.contains("vzrepl-target-diagnose/" + f), "target bundle lacks \(f): \(t.sorted())")
        }
        let diskText = try bundleText(target)
        for part in ["[disk0.vzmap]", "generation 1", "[disk0.vzundo]", "PENDING: an uncommitted pass", "startGeneration 1",
                     "[disk0.vzcid]", "[disk0.vzpass]", "$ sshd -t", "\"pending\" : true", "vzrepl-target 0.1.0 (protocol 3)"] {
            XCTAssertTrue(diskText.contains(part), "target bundle lacks '\(part)'")
        }
        XCTAssertFalse(t.contains { $0.hasSuffix("-flat.vmdk") || $0.hasSuffix(".vzmap") }, "no replica data or map in a bundle")

        let source = h.dir + "/source.tar.gz"
        XCTAssertEqual(try AgentHarness.run([AgentHarness.source, "diagnose", "--job", h.dir + "/job.json", "--log-dir", logs,
                                             "--output", source]).status, 0)
        let s = try listing(source)
        for f in ["MANIFEST.txt", "versions.txt", "sshd-t.txt", "df.txt", "job.json", "check-job.txt", "sources.txt",
                  "logs/vzrepl-source.log", "workdir/listing.txt", "workdir/disk0.vmdk-abbt.vztemp.txt"] {
            XCTAssertTrue(s.contains("vzrepl-source-diagnose/" + f), "source bundle lacks \(f): \(s.sorted())")
        }
        let sourceText = try bundleText(source)
        XCTAssertTrue(sourceText.contains("active-block filter: capacity \(16 * 65536)"), sourceText)
        XCTAssertTrue(sourceText.contains("valid job 'vm1'"), sourceText)
        // Written atomically: no temp file left beside the output.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: h.dir + "/out"), ["target.tar.gz"])
    }

    // MARK: metrics

    /// The metrics file parses with prometheus_client's parser (Debian python3-prometheus-client)
    /// and says what the events say; a failed pass rewrites it with success 0 and its kind.
    func testMetricsFileParsesWithPrometheusClient() throws {
        let metrics = h.dir + "/vzrepl.prom"
        let job = try writeJob(disks: [("disk0", try disk())])
        let r = try replicate(job, ["--metrics-file", metrics])
        XCTAssertEqual(r.status, 0, r.stderr)
        var m = try parseMetrics(metrics)
        let finished = try XCTUnwrap(r.finished())
        XCTAssertEqual(m["vzrepl_pass_success{job=vm1}"], 1)
        XCTAssertEqual(m["vzrepl_pass_exit_code{job=vm1}"], 0)
        XCTAssertEqual(m["vzrepl_pass_disks_committed{job=vm1}"], 1)
        XCTAssertEqual(m["vzrepl_disk_sent_bytes{disk=disk0,job=vm1}"], (finished["sentBytes"] as? NSNumber)?.doubleValue)
        XCTAssertEqual(m["vzrepl_disk_changed_bytes{disk=disk0,job=vm1}"], Double(4 * 65536))
        XCTAssertEqual(m["vzrepl_disk_generation{disk=disk0,job=vm1}"], 1)
        let passId = try XCTUnwrap(r.events("pass-started").first?["passId"] as? String)
        XCTAssertEqual(m["vzrepl_pass_info{job=vm1,kind=,pass=\(passId)}"], 1)

        let bad = try writeJob(env: ["VZREPL_FAULT=enospc-write:3+"], disks: [("disk0", try disk(seed: 5))])
        XCTAssertEqual(try replicate(bad, ["--metrics-file", metrics]).status, 5)
        m = try parseMetrics(metrics)
        XCTAssertEqual(m["vzrepl_pass_success{job=vm1}"], 0)
        XCTAssertEqual(m["vzrepl_pass_exit_code{job=vm1}"], 5)
        XCTAssertTrue(m.keys.contains { $0.hasPrefix("vzrepl_pass_info{job=vm1,kind=noSpace,") }, "\(m.keys)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: h.dir).filter { $0.contains(".prom") }, ["vzrepl.prom"], "no temp file left")
    }

    /// "name{k=v,...}" -> value, as prometheus_client's text parser reads the file.
    func parseMetrics(_ path: String) throws -> [String: Double] {
        let py = """
        import sys, json
        from prometheus_client.parser import text_string_to_metric_families
        out = {}
        for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
            assert fam.type == "gauge", fam
            assert fam.documentation, fam
            for s in fam.samples:
                key = s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
                assert key not in out, key
                out[key] = s.value
        print(json.dumps(out))
        """
        let r = try AgentHarness.run(["/usr/bin/python3", "-c", py, path])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONSerialization.jsonObject(with: r.output) as? [String: Double] ?? [:]
    }
}
