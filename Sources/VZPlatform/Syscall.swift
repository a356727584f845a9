import CVZShims
import Glibc
import VZCore

/// Every system call of vzrepl goes through here, as in swift-system: EINTR is retried in one
/// place, the test-only fault injector (`FaultInjector`) gets its chance to kill the process or
/// fail a call that changes a file, and a failure becomes a `VZError` naming the call, the file
/// and errno.
public enum Syscall {
    public static func errnoDescription(_ code: Int32) -> String {
        String(cString: strerror(code)) + " (errno \(code))"
    }

    /// Runs `body` (a system call that returns -1 and sets errno on failure) until it does not
    /// fail with EINTR, after the fault injector's check for `op`; returns the result and errno
    /// (0 on success). An injected failure returns -1 and its errno without calling `body`.
    @inline(__always)
    public static func call<T: FixedWidthInteger>(_ op: FaultInjector.Operation?, _ body: () -> T) -> (T, Int32) {
        if let op {
            let injected = FaultInjector.shared.check(op)
            if injected != 0 { return (-1, injected) }
        }
        while true {
            let r = body()
            if r == -1 {
                let e = errno
                if e == EINTR { continue }
                return (r, e)
            }
            return (r, 0)
        }
    }

    /// `call` for calls that change nothing on disk (poll, read of a pipe, fstat, lseek, flock).
    @inline(__always)
    public static func retrying<T: FixedWidthInteger>(_ body: () -> T) -> (T, Int32) {
        call(nil, body)
    }

    /// write(2) until all of `bytes` is written or a write fails (EINTR retried), for the
    /// diagnostic streams (logs, the terminal): a failure there has nowhere to be reported, so
    /// the rest is dropped. Not for replica or record data (PosixFile throws).
    public static func writeBestEffort(_ fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let (n, _) = retrying { Glibc.write(fd, buf.baseAddress! + done, buf.count - done) }
                if n <= 0 { return }
                done += n
            }
        }
    }

    /// close(2), never retried: on Linux the descriptor is released even when close reports
    /// EINTR, and a retry could close a descriptor another thread just opened.
    @inline(__always)
    public static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Maps errno to the error kind a caller switches on.
    public static func kind(for code: Int32, default fallback: VZError.Kind) -> VZError.Kind {
        switch code {
        case ENOSPC, EDQUOT: return .noSpace
        case EFBIG: return .noSpace
        default: return fallback
        }
    }

    public static func error(_ call: String, _ path: String, _ code: Int32, kind: VZError.Kind) -> VZError {
        var message = "\(call) \(path): \(errnoDescription(code))"
        if code == EFBIG { message += " — the file system cannot hold a file this large (ext4 stops at 16 TiB)" }
        return VZError(Syscall.kind(for: code, default: kind), message)
    }

    /// fstat, as a `VZError` naming the file on failure.
    public static func fileStatus(_ fd: Int32, path: String, kind: VZError.Kind) throws -> stat {
        var st = stat()
        let (r, e) = retrying { fstat(fd, &st) }
        guard r == 0 else { throw error("fstat", path, e, kind: kind) }
        return st
    }
}
