import Foundation
import Glibc
import VZCore
import VZPlatform

/// An exclusive flock on a job's directory itself, held while the job's disk set record
/// (`vzdisks`) is read, compared and written, and by `add-disk` and `remove-disk`: two sessions
/// of one job (parallel disks) never write the record at once, and never read it half made.
/// Held only for those few milliseconds, never for a pass (each disk has its own `DiskLock`).
/// The kernel drops it when the holder dies. No file of its own: the directory's descriptor is
/// locked, so nothing is left behind.
final class JobLock {
    private let directory: Directory

    private init(directory: Directory) { self.directory = directory }

    /// Takes the lock, waiting up to `wait` seconds.
    static func acquire(_ directory: Directory, job: String, wait: Double) throws -> JobLock {
        let deadline = Date().addingTimeInterval(wait)
        while true {
            let (r, e) = Syscall.retrying { flock(directory.fd, LOCK_EX | LOCK_NB) }
            if r == 0 { return JobLock(directory: directory) }
            guard e == EWOULDBLOCK else { throw Syscall.error("flock", directory.path, e, kind: .replicaIO) }
            if Date() >= deadline {
                throw VZError(.locked, "job '\(job)': another process holds the job's lock (\(directory.path)) for more than \(wait) s; if a `vzrepl-target` command is stuck, stop it and try again")
            }
            usleep(20_000)
        }
    }

    func release() { _ = Syscall.retrying { flock(directory.fd, LOCK_UN) } }
}
