import Foundation
import Glibc
import VZCore
import VZFormats
import VZPlatform

/// `vzrepl-source diagnose`: a support bundle for a source VA (Docs/operations.md, "Support
/// bundles"): versions, the job file with its secrets redacted (`JobSecrets`) and whether it is
/// valid, the working files in the job's workDir (`.vztemp` filters decoded), what each disk's
/// source is, the recent log, `sshd -t`, and free space. The private key named by
/// `target.identity` is never read: only its mode and owner are shown (a key others can read is a
/// common mistake).
public enum SourceDiagnosis {
    public static let logTailBytes = 16 << 20

    public static func collect(jobPath: String, logFile: String, version: String) -> SupportBundle {
        var b = SupportBundle(folder: "vzrepl-source-diagnose")
        b.add("versions.txt", SupportBundle.versions(agent: SourceAgent.agentName, version: version) + SupportBundle.run(["ssh", "-V"]))
        b.add("sshd-t.txt", SupportBundle.run(["sshd", "-t"]))
        SupportBundle.addLogs(&b, logFile: logFile, maxBytes: logTailBytes)

        let bytes: [UInt8]
        do {
            bytes = try SmallFile.read(jobPath, maxSize: 1 << 20, what: "job file", errorKind: .badJobFile)
        } catch {
            b.note("job file \(jobPath): \((error as? VZError)?.message ?? "\(error)")")
            return b
        }
        // Only what parses can be redacted: an unparsable file is left out, it might hold a secret.
        if let json = try? JSONSerialization.jsonObject(with: Data(bytes)),
           let text = try? JSONSerialization.data(withJSONObject: JobSecrets.redact(json), options: [.prettyPrinted, .sortedKeys]) {
            b.add("job.json", String(decoding: text, as: UTF8.self) + "\n")
        } else {
            b.note("job.json: \(jobPath) is not JSON; left out (its secrets could not be redacted)")
        }
        let config: JobConfig
        do {
            config = try JobConfig.decode(bytes, fileName: jobPath)
            b.add("check-job.txt", "\(jobPath): valid job '\(config.job)', \(config.disks.count) disk(s), mode \(config.mode.rawValue), transport \(config.target.transport.rawValue)\n")
        } catch {
            b.add("check-job.txt", "\(jobPath): invalid: \((error as? JobFileError)?.message ?? "\(error)")\n")
            return b
        }
        var sources = ""
        for d in config.disks { sources += "\(d.name): " + describe(path: d.source) }
        for (what, path) in [("target.identity (private key; never copied)", config.target.identity), ("target.knownHosts", config.target.knownHosts)] {
            if let path { sources += "\(what): " + describe(path: path) }
        }
        b.add("sources.txt", sources)
        addWorkDir(&b, config.effectiveWorkDir, disks: config.disks.map(\.name))
        return b
    }

    /// Type, size, mode and owner of a path (not following a symlink, then following it).
    static func describe(path: String) -> String {
        var st = stat()
        guard lstat(path, &st) == 0 else { return "\(path): \(String(cString: strerror(errno)))\n" }
        var line = "\(path): " + kind(st) + " size \(st.st_size) mode \(String(st.st_mode & 0o7777, radix: 8)) uid \(st.st_uid) gid \(st.st_gid)"
        if (st.st_mode & S_IFMT) == S_IFLNK, stat(path, &st) == 0 { line += " -> " + kind(st) + " size \(st.st_size)" }
        return line + "\n"
    }

    static func kind(_ st: stat) -> String {
        switch st.st_mode & S_IFMT {
        case S_IFREG: return "file"
        case S_IFBLK: return "block device"
        case S_IFLNK: return "symlink"
        case S_IFDIR: return "directory"
        default: return "other"
        }
    }

    private static func addWorkDir(_ b: inout SupportBundle, _ workDir: String, disks: [String]) {
        b.add("df.txt", SupportBundle.run(["df", "-h", workDir]))
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: workDir) else {
            b.note("workDir \(workDir): missing or not readable")
            return
        }
        var listing = ""
        for name in names.sorted() { listing += describe(path: "\(workDir)/\(name)") }
        b.add("workdir/listing.txt", listing)
        for name in names.sorted() where name.hasSuffix(".vztemp") {
            let path = "\(workDir)/\(name)"
            var text = "\(path)\n"
            do {
                let bytes = try SmallFile.read(path, maxSize: 64 << 20, what: "working file", errorKind: .sourceIO)
                if name.hasSuffix("-abbt.vztemp") {
                    let f = try ActiveBlockFilterFile.decode(bytes, fileName: path)
                    text += "active-block filter: capacity \(f.capacity), granularity \(f.granularity), \(f.active.reduce(0) { n, _ in n + 1 }) extents, \(f.active.totalLength) active bytes\n"
                } else {
                    text += "\(bytes.count) bytes (not decoded)\n"
                }
            } catch {
                text += "error: \((error as? VZError)?.message ?? "\(error)")\n"
            }
            b.add("workdir/\(name).txt", text)
        }
    }
}
