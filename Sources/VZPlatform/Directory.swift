import CVZShims
import Glibc
import VZCore

/// A directory held open by descriptor, inside which files are named by a single component and
/// opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so no name from the wire or a
/// descriptor and no symlink planted beside a file can make an agent open a file outside it. The
/// target reaches everything through one opened at the datastore root; the source reads a VMDK's
/// files through one opened, read-only, at the disk's folder.
public final class Directory: @unchecked Sendable {
    /// What the directory serves: it decides the error kinds and which files `open` hands out.
    public enum Role: Sendable {
        /// The target's datastore and everything below it: a name or file that could lead
        /// outside is `.pathOutsideRoot`, a failed call `.replicaIO`; only a regular file with
        /// one link is used (a hard link could be a file outside the root).
        case datastore
        /// A source disk's folder, read-only: every error is `.sourceIO`; a regular file or a
        /// block device is read, whatever its link count (nothing is ever written through it).
        case sourceFolder
    }

    public let fd: Int32
    public let path: String
    public let role: Role

    private init(fd: Int32, path: String, role: Role) {
        self.fd = fd
        self.path = path
        self.role = role
    }

    deinit { Syscall.close(fd) }

    private var ioKind: VZError.Kind { role == .datastore ? .replicaIO : .sourceIO }
    private var refusalKind: VZError.Kind { role == .datastore ? .pathOutsideRoot : .sourceIO }

    /// Opens the datastore root itself (a path from the operator, trusted).
    public static func openRoot(_ path: String) throws -> Directory {
        try open(path, "open datastore root", kind: .replicaIO, role: .datastore)
    }

    /// Opens a source disk's folder (from the job file or a descriptor's resolved path: trusted
    /// as given), read-only.
    public static func openSourceFolder(_ path: String) throws -> Directory {
        try open(path, "open folder", kind: .sourceIO, role: .sourceFolder)
    }

    /// Opens a working directory given as an absolute path (from a job file, trusted), making it
    /// and any missing parents first (mode 0750), like `mkdir -p`. Errors are `errorKind`.
    public static func openCreating(_ path: String, errorKind: VZError.Kind) throws -> Directory {
        guard path.hasPrefix("/") else { throw VZError(errorKind, "\(path): not an absolute path") }
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            let (r, e) = Syscall.call(.mkdir) { mkdir(prefix, 0o750) }
            if r != 0 && e != EEXIST { throw Syscall.error("mkdir", prefix, e, kind: errorKind) }
        }
        return try open(path, "open directory", kind: errorKind, role: .datastore)
    }

    private static func open(_ path: String, _ call: String, kind: VZError.Kind, role: Role) throws -> Directory {
        let (fd, e) = Syscall.retrying { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { throw Syscall.error(call, path, e, kind: kind) }
        return Directory(fd: fd, path: path, role: role)
    }

    /// One path component, never "." or "..": what reaches here was built from validated names.
    private func checked(_ name: String) throws -> String {
        guard !name.isEmpty, name.utf8.count <= 255, name != ".", name != "..",
              !name.contains("/"), !name.utf8.contains(0) else {
            throw VZError(refusalKind, "refusing file name '\(name)' under \(path): not a single path component")
        }
        return name
    }

    /// A source folder is read-only: a write reaching one is a bug, not the operator's problem.
    private func checkWritable(_ what: String, _ name: String) throws {
        guard role == .datastore else {
            throw VZError(.internal, "\(what) \(path)/\(name): the folder is open read-only")
        }
    }

    /// The one confined open: `name` (already checked) beneath this directory, no symlink on the
    /// way; a symlink or a way out is a refusal, any other failure the directory's I/O error.
    private func openBeneath(_ name: String, flags: Int32, mode: mode_t,
                             fault: FaultInjector.Operation? = nil) throws -> (fd: Int32, errno: Int32) {
        let (f, e) = Syscall.call(fault) { vz_openat_beneath(fd, name, flags, mode) }
        if f < 0 && (e == ELOOP || e == EXDEV) {
            throw VZError(refusalKind, "\(path)/\(name): is a symbolic link or leads outside \(path); refusing to open it (\(Syscall.errnoDescription(e)))")
        }
        return (f, e)
    }

    /// Opens (and with `create`, first makes) the sub-directory `name`, never through a symlink.
    public func subdirectory(_ name: String, create: Bool) throws -> Directory {
        let name = try checked(name)
        if create {
            try checkWritable("mkdir", name)
            let (r, e) = Syscall.call(.mkdir) { mkdirat(fd, name, 0o750) }
            if r != 0 && e != EEXIST { throw Syscall.error("mkdir", "\(path)/\(name)", e, kind: ioKind) }
            if r == 0 { try sync() }
        }
        let (sub, e) = try openBeneath(name, flags: O_RDONLY | O_DIRECTORY, mode: 0)
        guard sub >= 0 else { throw Syscall.error("open directory", "\(path)/\(name)", e, kind: ioKind) }
        return Directory(fd: sub, path: "\(path)/\(name)", role: role)
    }

    /// Opens the directory `relativePath` below this one (plain components, no "." or ".."), one
    /// component at a time, none a symlink. For a VMDK chain's link in another folder of a
    /// datastore the job maps.
    public func subdirectory(atPath relativePath: String) throws -> Directory {
        guard !relativePath.isEmpty, !relativePath.hasPrefix("/") else {
            throw VZError(refusalKind, "refusing folder '\(relativePath)' under \(path): not a folder below it")
        }
        return try relativePath.split(separator: "/").reduce(self) { try $0.subdirectory(String($1), create: false) }
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

    /// Every file is opened non-blocking (a FIFO planted in place of a file must not block the
    /// agent in open()), then checked with fstat against what the role allows (see `Role`).
    /// O_TRUNC is applied only after that check.
    private func open(_ name: String, flags: Int32, mode: mode_t, missingIsNil: Bool) throws -> PosixFile? {
        let name = try checked(name)
        let full = "\(path)/\(name)"
        if flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC) != 0 { try checkWritable("open", name) }
        let openFlags = (flags & ~O_TRUNC) | O_NONBLOCK
        let (f, e) = try openBeneath(name, flags: openFlags, mode: mode, fault: flags & O_CREAT != 0 ? .create : nil)
        if f < 0 && e == ENOENT && missingIsNil { return nil }
        if f < 0 && e == ENXIO && role == .datastore {
            throw VZError(.pathOutsideRoot, "\(full): is not a regular file (a FIFO or device); refusing to use it as a working file — remove it")
        }
        guard f >= 0 else { throw Syscall.error("open", full, e, kind: ioKind) }
        let file = PosixFile(fd: f, path: full, errorKind: ioKind)
        let st = try file.status()
        switch role {
        case .datastore:
            guard st.isRegularFile else {
                throw VZError(.pathOutsideRoot, "\(full): is \(st.typeDescription), not a regular file; refusing to use it as a working file — remove it")
            }
            guard st.linkCount == 1 else {
                throw VZError(.pathOutsideRoot, "\(full): has \(st.linkCount) hard links, so it may be a file outside the datastore root; refusing to write through it — remove it (the other links keep their data)")
            }
        case .sourceFolder:
            guard st.isRegularFile || st.isBlockDevice else {
                throw VZError(.sourceIO, "\(full) is \(st.typeDescription), not a disk file")
            }
        }
        let (r, e2) = Syscall.retrying { fcntl(f, F_SETFL, openFlags & ~O_NONBLOCK & ~O_CREAT & ~O_EXCL) }
        guard r >= 0 else { throw Syscall.error("fcntl(F_SETFL)", full, e2, kind: ioKind) }
        if flags & O_TRUNC != 0 { try file.truncate(to: 0) }
        return file
    }

    public func exists(_ name: String) -> Bool {
        var st = stat()
        return Syscall.retrying { fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) }.0 == 0
    }

    /// Reads a whole small file, refusing one larger than `maxSize` (never an unbounded allocation).
    public func readFile(_ name: String, maxSize: Int) throws -> [UInt8]? {
        guard let f = try openIfExists(name, flags: O_RDONLY) else { return nil }
        let size = try f.size()
        guard size <= UInt64(maxSize) else {
            throw VZError(ioKind, "\(f.path): \(size) bytes, more than the \(maxSize) this file may have")
        }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        try bytes.withUnsafeMutableBytes { try f.read(at: 0, into: $0) }
        return bytes
    }

    /// The temp name `writeAtomically` uses for `name` (a leading dot: never a disk's own name).
    public static func temporaryName(for name: String) -> String { ".\(name).tmp" }

    /// Durably replaces `name` with `bytes`: temp file, write, fsync, rename, fsync the directory.
    public func writeAtomically(_ name: String, _ bytes: [UInt8], mode: mode_t = 0o640) throws {
        let temp = Directory.temporaryName(for: name)
        let f = try open(temp, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        try f.write(at: 0, bytes)
        try f.sync()
        f.close()
        try rename(temp, to: name)
        try sync()
    }

    public func rename(_ from: String, to: String) throws {
        let (from, to) = (try checked(from), try checked(to))
        try checkWritable("rename", from)
        let (r, e) = Syscall.call(.rename) { renameat(fd, from, fd, to) }
        guard r == 0 else { throw Syscall.error("rename \(from) ->", "\(path)/\(to)", e, kind: ioKind) }
        DiskActivity.counter.add(1)
    }

    /// Removes `name`; a missing file is not an error (removal is idempotent for recovery).
    /// Returns whether there was a file to remove.
    @discardableResult
    public func remove(_ name: String) throws -> Bool {
        let name = try checked(name)
        try checkWritable("unlink", name)
        guard exists(name) else { return false }
        let (r, e) = Syscall.call(.unlink) { unlinkat(fd, name, 0) }
        guard r == 0 || e == ENOENT else { throw Syscall.error("unlink", "\(path)/\(name)", e, kind: ioKind) }
        DiskActivity.counter.add(1)
        return r == 0
    }

    public func sync() throws {
        let (r, e) = Syscall.call(.fsync) { fsync(fd) }
        guard r == 0 else { throw Syscall.error("fsync directory", path, e, kind: ioKind) }
        DiskActivity.counter.add(1)
    }

    /// Names of the entries (not "." and ".."), sorted.
    public func entries() throws -> [String] {
        let dupfd = Syscall.retrying { dup(fd) }.0
        guard dupfd >= 0, let dir = fdopendir(dupfd) else { throw Syscall.error("opendir", path, errno, kind: ioKind) }
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
        let (r, e) = Syscall.retrying { fstatvfs(fd, &s) }
        guard r == 0 else { throw Syscall.error("fstatvfs", path, e, kind: ioKind) }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }
}
