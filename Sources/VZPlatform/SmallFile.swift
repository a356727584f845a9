import Glibc
import VZCore

/// A small configuration file read whole, never more than its limit: the size is checked before
/// anything is read (a 2 GiB sparse file costs nothing), at most limit + 1 bytes are read (a file
/// that grows meanwhile is still refused), and only a regular file is read at all (a FIFO would
/// block, `/dev/zero` would never end).
public enum SmallFile {
    /// The bytes of `path`. `what` names the file in errors ("job file"); every error is of
    /// `errorKind` and names the path.
    public static func read(_ path: String, maxSize: Int, what: String, errorKind: VZError.Kind) throws -> [UInt8] {
        let file = try PosixFile.openForInspection(path, errorKind: errorKind)
        defer { file.close() }
        let st = try file.status()
        guard st.isRegularFile else {
            throw VZError(errorKind, "\(path): \(st.typeDescription), not a \(what) (only a regular file is read)")
        }
        func tooLarge(_ size: String) -> VZError {
            VZError(errorKind, "\(path): \(size), larger than the \(maxSize) bytes a \(what) may have")
        }
        guard st.size <= UInt64(maxSize) else { throw tooLarge("\(st.size) bytes") }
        try file.clearNonBlocking()
        var bytes = [UInt8](repeating: 0, count: maxSize + 1)
        var done = 0
        while done < bytes.count {
            let (n, e) = bytes.withUnsafeMutableBytes { buf in
                Syscall.retrying { pread(file.fd, buf.baseAddress! + done, buf.count - done, off_t(done)) }
            }
            if n < 0 { throw Syscall.error("pread at offset \(done) of", path, e, kind: errorKind) }
            if n == 0 { break }
            done += n
        }
        guard done <= maxSize else { throw tooLarge("more than \(maxSize) bytes (it grew while being read)") }
        bytes.removeSubrange(done...)
        return bytes
    }
}
