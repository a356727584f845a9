import CVZShims
import Glibc
import VZCore

/// Every system call of vzrepl's file I/O goes through here: EINTR is retried in one place, the
/// failure becomes a `VZError` naming the call, the file and errno, and the test-only fault
/// injector (`FaultInjector`) gets its chance to kill the process or fail the call.
public enum Syscall {
    public static func errnoDescription(_ code: Int32) -> String {
        String(cString: strerror(code)) + " (errno \(code))"
    }

    /// Runs `body` until it does not fail with EINTR. `body` returns -1 and sets errno on failure.
    @inline(__always)
    public static func retrying<T: FixedWidthInteger>(_ body: () -> T) -> (T, Int32) {
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
}
