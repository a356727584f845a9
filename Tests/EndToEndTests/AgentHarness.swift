import Foundation
import VZTestSupport
import XCTest

/// Runs the real `vzrepl-source` / `vzrepl-target` executables in a temp directory and reads
/// their JSON-lines events. The binaries come from $VZREPL_BIN (set by `make test`), else from
/// the folder of the test bundle, where `swift test` builds them.
final class AgentHarness {
    static var binDirectory: String {
        if let b = ProcessInfo.processInfo.environment["VZREPL_BIN"], !b.isEmpty { return b }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    }
    static var source: String { binDirectory + "/vzrepl-source" }
    static var target: String { binDirectory + "/vzrepl-target" }

    let dir: String
    var root: String { dir + "/root" }

    init(_ name: String = #function) throws {
        dir = NSTemporaryDirectory() + "vzrepl-e2e-\(name.filter { $0.isLetter || $0.isNumber })-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir + "/root", withIntermediateDirectories: true)
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: dir) }

    struct Result {
        var status: Int32
        var output: Data
        var stdout: String { String(decoding: output, as: UTF8.self) }
        var stderr: String
        var events: [[String: Any]] {
            stdout.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }
        func events(_ name: String) -> [[String: Any]] { events.filter { $0["event"] as? String == name } }
        func finished(_ disk: String = "disk0") -> [String: Any]? {
            events("disk-finished").first { $0["disk"] as? String == disk }
        }
    }

    /// Runs `argv` to its end. With `timeout`, a process still running after that many seconds
    /// is killed (SIGKILL), so a hang fails the test instead of the suite.
    @discardableResult
    static func run(_ argv: [String], environment: [String: String] = [:], stdin: Data? = nil,
                    timeout: Double? = nil) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        if let timeout {
            let pid = p.processIdentifier
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout) { [weak p] in
                if let p, p.isRunning, p.processIdentifier == pid { kill(pid, SIGKILL) }
            }
        }
        if let stdin { inp.fileHandleForWriting.write(stdin) }
        try? inp.fileHandleForWriting.close()
        // Drain both pipes concurrently so neither fills up.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let g = DispatchGroup()
        g.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); g.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        g.wait()
        p.waitUntilExit()
        let errData = errBox.data
        return Result(status: p.terminationStatus, output: outData,
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Writes a job file for the exec transport and returns its path.
    func writeJob(job: String = "vm1", disks: [(String, String)], blockSize: Int = 65536, whitespace: Bool = true,
                  mode: String = "differential", extraTargetArgs: [String] = [], extra: [String: Any] = [:]) throws -> String {
        let command = [AgentHarness.target, "serve", "--stdio", "--root", root, "--log-file", dir + "/target.log"] + extraTargetArgs
        var obj: [String: Any] = [
            "job": job, "mode": mode, "blockSize": blockSize, "whitespace": whitespace,
            "target": ["transport": "exec", "command": command, "idleTimeoutSeconds": 20],
            "disks": disks.map { ["name": $0.0, "source": $0.1] },
        ]
        for (k, v) in extra { obj[k] = v }
        let path = dir + "/job-\(job).json"
        try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted]).write(to: URL(fileURLWithPath: path))
        return path
    }

    func replicate(_ jobPath: String, environment: [String: String] = [:], timeout: Double? = nil) throws -> Result {
        try AgentHarness.run([AgentHarness.source, "replicate", "--job", jobPath, "--log-file", dir + "/source.log"],
                             environment: environment, timeout: timeout)
    }

    // MARK: disk images

    static func randomBytes(_ n: Int, seed: UInt64) -> Data {
        var g = SplitMix64(seed: seed)
        var d = Data(count: n)
        d.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in 0..<words.count { words[i] = g.next() }
        }
        return d
    }

    static func textBytes(_ n: Int, seed: Int) -> Data {
        var s = ""
        var i = seed
        while s.utf8.count < n { s += "line \(i) of the guest's log: status ok, \(i * 7919 % 1000) items\n"; i += 1 }
        return Data(s.utf8.prefix(n))
    }

    /// Writes `data` into `path` at `offset` without truncating.
    static func write(_ data: Data, to path: String, at offset: UInt64) throws {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seek(toOffset: offset)
        try h.write(contentsOf: data)
        try h.close()
    }

    /// A sparse image of `size` bytes.
    static func makeImage(_ path: String, size: UInt64) throws {
        FileManager.default.createFile(atPath: path, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.truncate(atOffset: size)
        try h.close()
    }

    static func filesEqual(_ a: String, _ b: String) throws -> Bool {
        try run(["/usr/bin/cmp", "-s", a, b]).status == 0
    }

    static func sha256(_ path: String) throws -> String {
        let r = try run(["/usr/bin/sha256sum", path])
        return String(r.stdout.prefix(64))
    }
}
