import CVZShims
import Glibc
import VZCore

/// A directory held open by descriptor, inside which files are named by a single component. The
/// target reaches everything through a `Directory` opened beneath the datastore root with
/// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so no name from the wire and no symlink
/// planted in the datastore can make it open a file outside the root.
public final class Directory: @unchecked Sendable {
    public let fd: Int32
    public let path: String

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { Glibc.close(fd) }

    /// Opens the datastore root itself (a path from the operator, trusted).
    public static func openRoot(_ path: String) throws -> Directory {
        let (fd, e) = Syscall.retrying { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { throw Syscall.error("open datastore root", path, e, kind: .replicaIO) }
        return Directory(fd: fd, path: path)
    }

    /// One path component, never "." or "..": what reaches here was built from validated names.
    private func checked(_ name: String) throws -> String {
        guard !name.isEmpty, name.utf8.count <= 255, name != ".", name != "..",
              !name.contains("/"), !name.utf8.contains(0) else {
            throw VZError(.pathOutsideRoot, "refusing file name '\(name)' under \(path): not a single path component")
        }
        return name
    }

    /// Opens (and with `create`, first makes) the sub-directory `name`, never through a symlink.
    public func subdirectory(_ name: String, create: Bool) throws -> Directory {
        let name = try checked(name)
        if create {
            let (r, e) = Syscall.retrying { mkdirat(fd, name, 0o750) }
            if r != 0 && e != EEXIST { throw Syscall.error("mkdir", "\(path)/\(name)", e, kind: .replicaIO) }
            if r == 0 { try sync() }
        }
        let (sub, e) = Syscall.retrying { vz_openat_beneath(fd, name, O_RDONLY | O_DIRECTORY, 0) }
        guard sub >= 0 else { throw Syscall.error("open directory", "\(path)/\(name)", e, kind: e == ELOOP || e == EXDEV ? .pathOutsideRoot : .replicaIO) }
        return Directory(fd: sub, path: "\(path)/\(name)")
    }

    public func open(_ name: String, flags: Int32, mode: mode_t = 0o640) throws -> PosixFile {
        guard let f = try open(name, flags: flags, mode: mode, missingIsNil: false) else {
            throw VZError(.internal, "open \(path)/\(name): no file and no error")
        }
        return f
    }

    /// nil when the file does not exist.
    public func openIfExists(_ name: String, flags: Int32) throws -> PosixFile? {
        try open(name, flags: flags, mode: 0, missingIsNil: true)
    }

    private func open(_ name: String, flags: Int32, mode: mode_t, missingIsNil: Bool) throws -> PosixFile? {
        let name = try checked(name)
        let (f, e) = Syscall.retrying { vz_openat_beneath(fd, name, flags, mode) }
        if f < 0 && e == ENOENT && missingIsNil { return nil }
        guard f >= 0 else { throw Syscall.error("open", "\(path)/\(name)", e, kind: e == ELOOP || e == EXDEV ? .pathOutsideRoot : .replicaIO) }
        return PosixFile(fd: f, path: "\(path)/\(name)", errorKind: .replicaIO)
    }

    public func exists(_ name: String) -> Bool {
        var st = stat()
        return fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// Reads a whole small file, refusing one larger than `maxSize` (never an unbounded allocation).
    public func readFile(_ name: String, maxSize: Int) throws -> [UInt8]? {
        guard let f = try openIfExists(name, flags: O_RDONLY) else { return nil }
        let size = try f.size()
        guard size <= UInt64(maxSize) else {
            throw VZError(.replicaIO, "\(f.path): \(size) bytes, more than the \(maxSize) this file may have")
        }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        try bytes.withUnsafeMutableBytes { try f.read(at: 0, into: $0) }
        return bytes
    }

    /// Durably replaces `name` with `bytes`: temp file, write, fsync, rename, fsync the directory.
    public func writeAtomically(_ name: String, _ bytes: [UInt8], mode: mode_t = 0o640) throws {
        let temp = ".\(name).tmp"
        let f = try open(temp, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        try f.write(at: 0, bytes)
        try f.sync()
        f.close()
        try rename(temp, to: name)
        try sync()
    }

    public func rename(_ from: String, to: String) throws {
        let injected = FaultInjector.shared.check(.rename)
        if injected != 0 { throw Syscall.error("rename \(from) ->", "\(path)/\(to)", injected, kind: .replicaIO) }
        let (from, to) = (try checked(from), try checked(to))
        let (r, e) = Syscall.retrying { renameat(fd, from, fd, to) }
        guard r == 0 else { throw Syscall.error("rename \(from) ->", "\(path)/\(to)", e, kind: .replicaIO) }
        DiskActivity.counter.add(1)
    }

    /// Removes `name`; a missing file is not an error (removal is idempotent for recovery).
    /// Returns whether there was a file to remove.
    @discardableResult
    public func remove(_ name: String) throws -> Bool {
        let name = try checked(name)
        guard exists(name) else { return false }
        let injected = FaultInjector.shared.check(.unlink)
        if injected != 0 { throw Syscall.error("unlink", "\(path)/\(name)", injected, kind: .replicaIO) }
        let (r, e) = Syscall.retrying { unlinkat(fd, name, 0) }
        guard r == 0 || e == ENOENT else { throw Syscall.error("unlink", "\(path)/\(name)", e, kind: .replicaIO) }
        DiskActivity.counter.add(1)
        return r == 0
    }

    public func sync() throws {
        let injected = FaultInjector.shared.check(.fsync)
        if injected != 0 { throw Syscall.error("fsync directory", path, injected, kind: .replicaIO) }
        let (r, e) = Syscall.retrying { fsync(fd) }
        guard r == 0 else { throw Syscall.error("fsync directory", path, e, kind: .replicaIO) }
        DiskActivity.counter.add(1)
    }

    /// Names of the entries (not "." and ".."), sorted.
    public func entries() throws -> [String] {
        let dupfd = dup(fd)
        guard dupfd >= 0, let dir = fdopendir(dupfd) else { throw Syscall.error("opendir", path, errno, kind: .replicaIO) }
        defer { closedir(dir) }
        rewinddir(dir)
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Free bytes on the file system holding this directory (for the preflight space check).
    public func freeBytes() throws -> UInt64 {
        var s = statvfs()
        guard fstatvfs(fd, &s) == 0 else { throw Syscall.error("fstatvfs", path, errno, kind: .replicaIO) }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }
}
