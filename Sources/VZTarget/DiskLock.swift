import Foundation
import Glibc
import VZCore
import VZPlatform

/// Keeps two sessions from ever writing one replica: an exclusive flock on `DISK.vzlock`, held
/// for the whole disk session. The kernel drops it when the holder dies; a holder that is
/// stopped (SIGSTOP) keeps it, so a newer session is refused rather than racing the old one
/// when it wakes up. The file holds the holder's pid for the refusal message.
final class DiskLock {
    let file: PosixFile

    private init(file: PosixFile) { self.file = file }

    /// Takes the lock, waiting up to `wait` seconds for a holder that is finishing.
    static func acquire(directory: Directory, files: DiskFiles, wait: Double) throws -> DiskLock {
        let disk = files.disk
        let f = try directory.open(files.lock, flags: O_RDWR | O_CREAT, mode: 0o640)
        let deadline = Date().addingTimeInterval(wait)
        while true {
            let (r, e) = Syscall.retrying { flock(f.fd, LOCK_EX | LOCK_NB) }
            if r == 0 { break }
            guard e == EWOULDBLOCK else {
                throw Syscall.error("flock", f.path, e, kind: .replicaIO)
            }
            if Date() >= deadline {
                throw VZError(.locked, "disk '\(disk)' is being written by another session (\(holder(of: f))); refusing to start a second one. If that process is stuck, stop it (kill) and run the pass again: its pass rolls back")
            }
            usleep(100_000)
        }
        // Informational only (for the refusal message), never fsynced: not durable operations, so
        // the fault injector does not count them.
        let pid = Array("\(getpid())\n".utf8)
        _ = Syscall.call(nil) { ftruncate(f.fd, 0) }
        _ = pid.withUnsafeBytes { raw in Syscall.call(nil) { pwrite(f.fd, raw.baseAddress, raw.count, 0) } }
        return DiskLock(file: f)
    }

    private static func holder(of f: PosixFile) -> String {
        var buf = [UInt8](repeating: 0, count: 32)
        let n = buf.withUnsafeMutableBytes { raw in Syscall.retrying { pread(f.fd, raw.baseAddress, 32, 0) }.0 }
        guard n > 0, let pid = Int32(String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            return "holder unknown"
        }
        // /proc/PID/stat's third field is the state; T means stopped.
        if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            let state = stat[stat.index(close, offsetBy: 2)]
            return state == "T" ? "pid \(pid), which is stopped (SIGSTOP)" : "pid \(pid)"
        }
        return "pid \(pid)"
    }

    /// For a read-only session (`plan`): the lock shared, so no pass writes the disk while its
    /// map is read, and without creating or writing the lock file — nil when there is none (no
    /// pass ever ran for the disk). Waits up to `wait` seconds for a pass that holds it.
    static func acquireShared(directory: Directory, files: DiskFiles, wait: Double) throws -> DiskLock? {
        guard let f = try directory.openIfExists(files.lock, flags: O_RDONLY) else { return nil }
        let deadline = Date().addingTimeInterval(wait)
        while true {
            let (r, e) = Syscall.retrying { flock(f.fd, LOCK_SH | LOCK_NB) }
            if r == 0 { return DiskLock(file: f) }
            guard e == EWOULDBLOCK else { throw Syscall.error("flock", f.path, e, kind: .replicaIO) }
            if Date() >= deadline {
                throw VZError(.locked, "disk '\(files.disk)' is being written by another session (\(holder(of: f))); its plan can be made once that pass is over")
            }
            usleep(100_000)
        }
    }

    /// Releases the lock (closing the descriptor does it; the file stays for the next session).
    func release() {
        _ = Syscall.retrying { flock(file.fd, LOCK_UN) }
        file.close()
    }
}
