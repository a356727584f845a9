import Foundation
import Glibc
import VZCore

/// A support bundle (`vzrepl-source diagnose`, `vzrepl-target diagnose`): named text files packed
/// with the system `tar` and gzip into one `.tar.gz`, written atomically (a temp file beside the
/// output, fsynced, renamed, the directory fsynced), so a half-written bundle never takes the
/// output's name. Entries are collected in memory (bounded: logs are taken from their end, see
/// `tail`) and staged in a private temp directory that is removed afterwards.
///
/// What goes in is the caller's: it must never hand in key material (Docs/operations.md,
/// "Support bundles"). As a last guard, `add` drops any entry holding a PEM private-key block.
public struct SupportBundle {
    /// The folder every entry sits in inside the archive.
    public let folder: String
    public private(set) var entries: [(name: String, bytes: [UInt8])] = []
    /// One line per entry that was left out or could not be collected, for `MANIFEST.txt`.
    public private(set) var notes: [String] = []

    public init(folder: String) { self.folder = folder }

    public mutating func add(_ name: String, _ text: String) { add(name, Array(text.utf8)) }

    public mutating func add(_ name: String, _ bytes: [UInt8]) {
        if SupportBundle.holdsPrivateKey(bytes) {
            note("\(name): left out, it holds a private key block")
            return
        }
        entries.append((name, bytes))
    }

    public mutating func note(_ line: String) { notes.append(line) }

    static func holdsPrivateKey(_ bytes: [UInt8]) -> Bool {
        let text = String(decoding: bytes, as: UTF8.self)
        return text.contains("PRIVATE KEY-----") || text.contains("PuTTY-User-Key-File")
    }

    /// The last `maxBytes` of a file, starting at a line boundary; nil when it cannot be read.
    public static func tail(_ path: String, maxBytes: Int) -> [UInt8]? {
        guard let f = try? PosixFile.open(path, flags: O_RDONLY, errorKind: .internal), let size = try? f.size() else { return nil }
        let start = size > UInt64(maxBytes) ? size - UInt64(maxBytes) : 0
        var buffer = [UInt8](repeating: 0, count: Int(size - start))
        guard (try? buffer.withUnsafeMutableBytes { try f.read(at: start, into: $0) }) != nil else { return nil }
        if start > 0, let nl = buffer.firstIndex(of: 0x0A) { buffer.removeSubrange(...nl) }
        return buffer
    }

    /// Runs a command (argv[0] looked up in PATH) with a time limit; its exit status, stdout and
    /// stderr as text. A command that is missing or fails says so in the text: a bundle is
    /// collected as far as it can be.
    public static func run(_ argv: [String], timeout: Double = 20) -> String {
        let p = Process()
        // sshd lives in /usr/sbin, which a service user's PATH may lack.
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["PATH=\(path)"] + argv
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        do { try p.run() } catch { return "$ \(argv.joined(separator: " "))\ncannot run: \(error)\n" }
        let done = DispatchSemaphore(value: 0)
        final class Box: @unchecked Sendable { var data = Data() }
        let box = Box()
        DispatchQueue.global().async {
            box.data = out.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }
        var timedOut = false
        if done.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            kill(p.processIdentifier, SIGKILL)
            done.wait()
        }
        p.waitUntilExit()
        var text = "$ \(argv.joined(separator: " "))\n" + String(decoding: box.data.prefix(1 << 20), as: UTF8.self)
        if !text.hasSuffix("\n") { text += "\n" }
        text += timedOut ? "(stopped after \(Int(timeout)) s)\n" : "(exit status \(p.terminationStatus))\n"
        return text
    }

    /// Packs the entries (and `MANIFEST.txt`) into `outputPath` atomically.
    public func write(to outputPath: String) throws {
        let outDir = (outputPath as NSString).deletingLastPathComponent
        let outName = (outputPath as NSString).lastPathComponent
        guard !outName.isEmpty else { throw VZError(.badArgument, "--output '\(outputPath)' names no file") }
        let directory = try Directory.openCreating(outDir.isEmpty ? FileManager.default.currentDirectoryPath
                                                   : (outDir.hasPrefix("/") ? outDir : FileManager.default.currentDirectoryPath + "/" + outDir),
                                                   errorKind: .badArgument)
        var template = Array((NSTemporaryDirectory() + "/vzrepl-bundle.XXXXXX").utf8CString)
        guard let staged = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }).map({ String(cString: $0) }) else {
            throw VZError(.internal, "cannot make a temporary directory for the bundle: \(String(cString: strerror(errno)))")
        }
        defer { try? FileManager.default.removeItem(atPath: staged) }
        var manifest = "vzrepl support bundle, \(ISO8601DateFormatter().string(from: Date()))\n\nfiles:\n"
        for e in entries { manifest += "  \(e.name) (\(e.bytes.count) bytes)\n" }
        if !notes.isEmpty { manifest += "\nnot collected:\n" + notes.map { "  \($0)\n" }.joined() }
        for e in entries + [("MANIFEST.txt", Array(manifest.utf8))] {
            let path = "\(staged)/\(folder)/\(e.0)"
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: path, contents: Data(e.1), attributes: [.posixPermissions: 0o600]) else {
                throw VZError(.internal, "cannot stage \(path) for the bundle")
            }
        }
        let temp = Directory.temporaryName(for: outName)
        let tempPath = "\(directory.path)/\(temp)"
        let tar = SupportBundle.run(["tar", "-czf", tempPath, "-C", staged, folder], timeout: 300)
        guard tar.hasSuffix("(exit status 0)\n") else {
            _ = try? directory.remove(temp)
            throw VZError(.internal, "tar failed: \(tar)")
        }
        let f = try directory.open(temp, flags: O_RDONLY)
        try f.sync()
        f.close()
        try directory.rename(temp, to: outName)
        try directory.sync()
    }

    /// The agent's version, the protocol, the kernel and the OS.
    public static func versions(agent: String, version: String) -> String {
        var u = utsname()
        uname(&u)
        func field<T>(_ v: T) -> String { withUnsafeBytes(of: v) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }
        var text = "\(VZVersion.banner(agent: agent))\nagent version \(version)\n"
        text += "kernel: \(field(u.sysname)) \(field(u.release)) \(field(u.version)) \(field(u.machine))\n"
        if let os = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8) {
            text += os.split(separator: "\n").filter { $0.hasPrefix("PRETTY_NAME=") || $0.hasPrefix("VERSION_ID=") }.joined(separator: "\n") + "\n"
        }
        return text
    }

    /// The log file and the one rotated before it, each from its end.
    public static func addLogs(_ b: inout SupportBundle, logFile: String, maxBytes: Int) {
        for path in [logFile, logFile + ".1"] {
            let name = "logs/" + (path as NSString).lastPathComponent
            if let bytes = SupportBundle.tail(path, maxBytes: maxBytes) { b.add(name, bytes) } else { b.note("\(path): not readable or missing") }
        }
    }

}
