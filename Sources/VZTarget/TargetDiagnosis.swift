import Foundation
import Glibc
import VZCore
import VZFormats
import VZPlatform

/// `vzrepl-target diagnose`: what a field engineer needs about a target VA, in one support bundle
/// (Docs/operations.md, "Support bundles"): versions, `status`, every working file of every disk
/// decoded (the `.vzmap` header, a pending `.vzundo`'s header, `vzundo-script`, `.vzcid`,
/// `.vzpass`, leftover temp files), a listing of each job directory, the recent log, `sshd -t`,
/// and free space. Replica data and block maps are not included; nothing under the root holds a
/// secret, and no key file is read (sshd's host keys are named by `sshd -t`'s errors at most).
public enum TargetDiagnosis {
    /// Of each log file, at most its last this many bytes.
    public static let logTailBytes = 16 << 20

    public static func collect(rootPath: String, logFile: String, version: String) -> SupportBundle {
        var b = SupportBundle(folder: "vzrepl-target-diagnose")
        b.add("versions.txt", SupportBundle.versions(agent: "vzrepl-target", version: version)
              + SupportBundle.run(["ssh", "-V"]) + SupportBundle.run(["sshd", "-V"]))
        b.add("sshd-t.txt", SupportBundle.run(["sshd", "-t"]))
        b.add("df.txt", SupportBundle.run(["df", "-h", rootPath]) + SupportBundle.run(["df", "-i", rootPath]))
        SupportBundle.addLogs(&b, logFile: logFile, maxBytes: logTailBytes)
        do {
            let disks = try ReplicaInspector.status(rootPath: rootPath)
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .prettyPrinted]
            b.add("status.json", String(decoding: try enc.encode(disks), as: UTF8.self))
        } catch {
            b.note("status.json: \((error as? VZError)?.message ?? "\(error)")")
        }
        do {
            let root = try Directory.openRoot(rootPath)
            b.add("free-space.txt", "\(rootPath): \(try root.freeBytes()) bytes available\n")
            for job in try root.entries().sorted() where NameRules.problem(with: job) == nil {
                guard let dir = try? root.subdirectory(job, create: false) else { continue }
                addJob(&b, job: job, dir: dir)
            }
        } catch {
            b.note("\(rootPath): \((error as? VZError)?.message ?? "\(error)")")
        }
        return b
    }

    private static func addJob(_ b: inout SupportBundle, job: String, dir: Directory) {
        let names = (try? dir.entries().sorted()) ?? []
        var listing = ""
        for name in names {
            var st = stat()
            if fstatat(dir.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                let kind = (st.st_mode & S_IFMT) == S_IFREG ? "file" : (st.st_mode & S_IFMT) == S_IFLNK ? "SYMLINK" : (st.st_mode & S_IFMT) == S_IFDIR ? "dir" : "other"
                listing += "\(kind) mode \(String(st.st_mode & 0o7777, radix: 8)) links \(st.st_nlink) size \(st.st_size) allocated \(st.st_blocks * 512) mtime \(st.st_mtim.tv_sec) \(name)\n"
            } else {
                listing += "? \(name): \(String(cString: strerror(errno)))\n"
            }
        }
        b.add("datastore/\(job)/listing.txt", listing)
        for disk in DiskFiles.disks(in: names) {
            b.add("datastore/\(job)/\(disk).txt", describe(disk: disk, dir: dir))
        }
        if names.contains(RollbackScript.fileName), let script = try? dir.readFile(RollbackScript.fileName, maxSize: 1 << 20) {
            b.add("datastore/\(job)/\(RollbackScript.fileName)", script)
        }
    }

    /// Every working file of one disk, decoded; a damaged one says why.
    static func describe(disk: String, dir: Directory) -> String {
        let files = DiskFiles(disk: disk)
        var out = "disk \(disk) in \(dir.path)\n"
        func section(_ title: String, _ body: () throws -> String) {
            out += "\n[\(title)]\n"
            do { out += try body() } catch { out += "error: \((error as? VZError)?.message ?? "\(error)")\n" }
        }
        section(files.map) {
            let (h, note) = try MapStore.readHeader(directory: dir, files: files)
            guard let h else { return note + "\n" }
            return "generation \(h.generation)\nblockSize \(h.blockSize)\ncapacity \(h.capacity)\nentryCount \(h.entryCount)\ncreated \(h.createdUnixSeconds) (\(Date(timeIntervalSince1970: Double(h.createdUnixSeconds))))\n"
        }
        section(files.journal) {
            guard let h = try Rollback.readJournalHeader(directory: dir, disk: disk) else { return "none (no pass pending)\n" }
            let size = (try? dir.openIfExists(files.journal, flags: O_RDONLY)?.size()) ?? nil
            return "PENDING: an uncommitted pass\njob \(h.job)\ndisk \(h.disk)\nstartGeneration \(h.startGeneration)\npass \(PassIdentifier.string(of: h.passID.bytes))\n"
                + "blockSize \(h.blockSize)\ncapacity \(h.capacity)\ncreated \(h.createdUnixSeconds)\nsize \(size.map { "\($0)" } ?? "?") bytes\n"
        }
        section(files.cidRecord) {
            guard let bytes = try dir.readFile(files.cidRecord, maxSize: CIDRecordFile.maxSize + 1) else { return "none\n" }
            let r = try CIDRecordFile.decode(bytes, fileName: "\(dir.path)/\(files.cidRecord)")
            let chain = r.chain.map { links in links.isEmpty ? "none (not a VMDK)\n"
                : links.map { "link \($0.file) CID \(String(format: "%08x", $0.cid)) parentCID \(String(format: "%08x", $0.parentCID))\n" }.joined() }
                ?? "not recorded\n"
            return "cid \(String(format: "%08x", r.cid))\npreviousCID \(String(format: "%08x", r.previousCID))\ngeneration \(r.generation)\nchain \(chain)"
        }
        section(files.passRecord) {
            guard let bytes = try dir.readFile(files.passRecord, maxSize: PassRecordFile.size + 1) else { return "none\n" }
            let r = try PassRecordFile.decode(bytes, fileName: "\(dir.path)/\(files.passRecord)")
            return "generation \(r.generation)\npass \(r.passIdString ?? "-")\nstarted \(r.startedUnixMillis)\ncommitted \(r.committedUnixMillis)\n"
                + "scannedBytes \(r.scannedBytes)\nchangedBytes \(r.changedBytes)\nzeroBytes \(r.zeroBytes)\n"
        }
        section("descriptor \(files.descriptor)") {
            guard let bytes = try dir.readFile(files.descriptor, maxSize: 64 << 10) else { return "none\n" }
            return String(decoding: bytes, as: UTF8.self) + "\n"
        }
        section("temporary files") {
            let left = files.temporaries.filter { dir.exists($0) }
            return left.isEmpty ? "none\n" : left.map { "\($0) (left by an interrupted step; recovery removes it)\n" }.joined()
        }
        return out
    }
}
