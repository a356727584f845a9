import Glibc
import VZCore
import VZPlatform

/// The `exec` transport: spawns the target agent (`vzrepl-target serve --stdio ...`) and speaks
/// the protocol over its stdin/stdout. Its stderr is passed through, so its log lines reach the
/// operator beside the source's.
public final class ChildProcessTransport: ByteStream {
    public let pid: pid_t
    private let stream: FileDescriptorStream
    private var reaped = false

    public init(command: [String], idleTimeout: Double?) throws {
        guard let exe = command.first else { throw VZError(.badArgument, "exec transport: empty command") }
        var toChild: [Int32] = [-1, -1], fromChild: [Int32] = [-1, -1]
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else {
            throw VZError(.transport, "exec transport: pipe: \(Syscall.errnoDescription(errno))")
        }
        // Close-on-exec so the child inherits only the dup2'ed stdin/stdout, not our pipe ends.
        for fd in toChild + fromChild { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // 1 MiB pipes instead of 64 KiB: a block crosses in one or two writes, not sixteen.
        let F_SETPIPE_SZ: Int32 = 1031
        for fd in [toChild[1], fromChild[1]] { _ = fcntl(fd, F_SETPIPE_SZ, Int32(1 << 20)) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        let argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, exe, &actions, nil, argv, environ)
        Glibc.close(toChild[0]); Glibc.close(fromChild[1])
        guard rc == 0 else {
            Glibc.close(toChild[1]); Glibc.close(fromChild[0])
            throw VZError(.transport, "exec transport: cannot start '\(exe)': \(Syscall.errnoDescription(rc))")
        }
        self.pid = pid
        stream = FileDescriptorStream(readFD: fromChild[0], writeFD: toChild[1], name: "target process \(exe) (pid \(pid))",
                                      idleTimeout: idleTimeout, ownsDescriptors: true)
    }

    deinit { close() }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try stream.read(into: buffer) }
    public func read(into buffer: UnsafeMutableRawBufferPointer, timeout: Double?) throws -> Int? {
        try stream.read(into: buffer, timeout: timeout)
    }
    public func interruptRead() { stream.interruptRead() }
    public func write(_ bytes: UnsafeRawBufferPointer) throws { try stream.write(bytes) }
    public func canWriteWithoutBlocking(_ count: Int) -> Bool { stream.canWriteWithoutBlocking(count) }
    public func closeWrite() { stream.closeWrite() }

    /// Closes the pipes and waits for the child, which ends when its stdin closes (after rolling
    /// back an unfinished pass, which may take a while). A child that went silent is hung: it is
    /// killed instead of waited for.
    public func close() {
        let hung = stream.timedOut
        stream.close()
        if hung && !reaped { kill(pid, SIGKILL) }
        _ = waitForExit()
    }

    /// The child's exit status (or 128 + signal); waits for it.
    @discardableResult
    public func waitForExit() -> Int32 {
        guard !reaped else { return 0 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped = true
        let signaled = (status & 0x7f) != 0
        return signaled ? 128 + (status & 0x7f) : (status >> 8) & 0xff
    }
}
