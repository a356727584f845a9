import Foundation
import Glibc

/// Where an agent's log lines go: stderr (through `Console`, which keeps them out of a live
/// progress display), and the log file when one could be opened. The file is
/// appended to by every agent process at once (several `serve` sessions share
/// vzrepl-target.log), each line in one `write`, and kept under a size cap by the agents
/// themselves: a line that would take the file past `maxBytes` first renames it to `FILE.1`
/// (replacing the one before) and starts a new one. Before each line the sink checks that its
/// descriptor is still the file at the path — another process, or logrotate, may have renamed
/// it — and reopens the path if not, so no process keeps writing into a rotated file.
public final class LogSink: @unchecked Sendable {
    /// 64 MiB: a night of debug logging fits; `--log-max-mib` changes it, 0 turns the cap off
    /// (logrotate alone then).
    public static let defaultMaxBytes: UInt64 = 64 << 20

    private let lock = NSLock()
    private var fd: Int32 = -1
    public let filePath: String?
    public let maxBytes: UInt64
    /// Why the file could not be opened, if it could not.
    public private(set) var openProblem: String?
    private let toStderr: Bool

    public init(filePath: String?, maxBytes: UInt64 = LogSink.defaultMaxBytes, toStderr: Bool = true) {
        self.filePath = filePath
        self.maxBytes = maxBytes
        self.toStderr = toStderr
        if let p = filePath {
            let dir = (p as NSString).deletingLastPathComponent
            if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            if !reopen() { openProblem = "\(p): \(String(cString: strerror(errno)))" }
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// O_APPEND: lines of concurrent processes never overwrite each other. Close-on-exec: a
    /// spawned target agent must not inherit our log.
    @discardableResult
    private func reopen() -> Bool {
        guard let p = filePath else { return false }
        if fd >= 0 { close(fd); fd = -1 }
        fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640)
        return fd >= 0
    }

    /// `important`: a warning or worse, shown on the terminal even above a live progress display.
    func write(_ line: String, important: Bool = true) {
        lock.lock()
        defer { lock.unlock() }
        let bytes = Array(line.utf8)
        if toStderr { Console.shared.log(line, important: important, inFile: fd >= 0) }
        guard fd >= 0, let p = filePath else { return }
        var mine = stat(), atPath = stat()
        if fstat(fd, &mine) != 0 || lstat(p, &atPath) != 0 || mine.st_ino != atPath.st_ino || mine.st_dev != atPath.st_dev {
            guard reopen(), fstat(fd, &mine) == 0 else { return }
        }
        if maxBytes > 0, mine.st_size > 0, UInt64(mine.st_size) + UInt64(bytes.count) > maxBytes {
            // Only the process that still has the file at the path open renames it, under an
            // flock of that file: two processes deciding at once rotate once, not twice.
            _ = flock(fd, LOCK_EX)
            if lstat(p, &atPath) == 0, atPath.st_ino == mine.st_ino, atPath.st_dev == mine.st_dev { _ = rename(p, p + ".1") }
            _ = flock(fd, LOCK_UN)
            guard reopen() else { return }
        }
        Syscall.writeBestEffort(fd, bytes)
    }

}
