import Foundation
import Glibc
import VZCore
import VZPlatform

/// The `exec` transport: spawns the target agent (`vzrepl-target serve --stdio ...`) and speaks
/// the protocol over its stdin/stdout. Its stderr comes through a pipe that a thread passes on to
/// our stderr (so its log lines reach the operator beside the source's) while keeping the last
/// line, which is what says why an agent could not start ("error while loading shared
/// libraries: ...").
///
/// The child runs in a process group of its own, so a wrapper script and what it started end
/// together when we have to stop them; and `close()` never waits without limit: see there.
public final class ChildProcessTransport: ByteStream {
    /// After SIGTERM, how long the child has before SIGKILL.
    public static let terminateGrace = 5.0

    public let pid: pid_t
    public let executable: String
    /// How long `close()` waits for the child to exit by itself once its stdin is closed.
    public let exitGrace: Double
    private let stream: FileDescriptorStream
    private let stderrTail: StderrTail
    private let lock = NSLock()
    private var exit: PeerExit?
    private var closed = false

    /// `exitGrace`: nil means the idle timeout (else 30 s).
    public init(command: [String], idleTimeout: Double?, exitGrace: Double? = nil) throws {
        guard let exe = command.first else { throw VZError(.badArgument, "exec transport: empty command") }
        executable = exe
        self.exitGrace = exitGrace ?? idleTimeout ?? 30
        var toChild: [Int32] = [-1, -1], fromChild: [Int32] = [-1, -1], errors: [Int32] = [-1, -1]
        let (r1, e1) = Syscall.retrying { pipe(&toChild) }, (r2, e2) = Syscall.retrying { pipe(&fromChild) }, (r3, e3) = Syscall.retrying { pipe(&errors) }
        guard r1 == 0, r2 == 0, r3 == 0 else {
            let e = [e1, e2, e3].first { $0 != 0 } ?? EIO
            for fd in toChild + fromChild + errors where fd >= 0 { Syscall.close(fd) }
            throw VZError(.transport, "exec transport: pipe: \(Syscall.errnoDescription(e))")
        }
        // Close-on-exec so the child inherits only the dup2'ed stdio, not our pipe ends.
        for fd in toChild + fromChild + errors { _ = Syscall.retrying { fcntl(fd, F_SETFD, FD_CLOEXEC) } }
        // 1 MiB pipes instead of 64 KiB: a block crosses in one or two writes, not sixteen.
        let F_SETPIPE_SZ: Int32 = 1031
        for fd in [toChild[1], fromChild[1]] { _ = Syscall.retrying { fcntl(fd, F_SETPIPE_SZ, Int32(1 << 20)) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, exe, &actions, &attributes, argv, environ)
        Syscall.close(toChild[0]); Syscall.close(fromChild[1]); Syscall.close(errors[1])
        guard rc == 0 else {
            Syscall.close(toChild[1]); Syscall.close(fromChild[0]); Syscall.close(errors[0])
            // Not there, not executable, not a program: nothing a retry can change.
            let permanent = [ENOENT, EACCES, ENOEXEC, ENOTDIR, ELOOP, ENAMETOOLONG, EISDIR, EPERM].contains(rc)
            throw VZError(permanent ? .targetUnavailable : .transport,
                          "exec transport: cannot start the target agent '\(exe)': \(Syscall.errnoDescription(rc))")
        }
        self.pid = pid
        stderrTail = StderrTail(fd: errors[0])
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
    /// back an unfinished pass, if there was one). Bounded: after `exitGrace` seconds its process
    /// group gets SIGTERM, `terminateGrace` seconds later SIGKILL; a child that had already gone
    /// silent (an idle timeout) gets SIGKILL at once. `peerExit` tells afterwards what was done.
    public func close() {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        let hung = stream.timedOut
        stream.close()
        if exit == nil {
            if hung {
                killGroup(SIGKILL)
                if reap(within: 10) { exit?.forcedBy = "it had stopped answering: killed with SIGKILL" }
            } else if !reap(within: exitGrace) {
                let waited = "did not exit within \(TimeoutText.seconds(exitGrace)) s after its input closed"
                killGroup(SIGTERM)
                if reap(within: ChildProcessTransport.terminateGrace) {
                    exit?.forcedBy = "\(waited): stopped with SIGTERM"
                } else {
                    killGroup(SIGKILL)
                    if reap(within: 10) { exit?.forcedBy = "\(waited): sent SIGTERM, then SIGKILL" }
                }
            }
        }
        stderrTail.finish(within: 1)
        exit?.lastStderrLine = stderrTail.lastLine
    }

    public func peerExit(waitingUpTo timeout: Double) -> PeerExit? {
        lock.lock()
        defer { lock.unlock() }
        if exit == nil && !reap(within: timeout) { return nil }
        // The last lines arrive through the pipe just after the exit.
        if !closed { stderrTail.waitForEnd(within: 0.5) }
        exit?.lastStderrLine = stderrTail.lastLine
        return exit
    }

    /// The child's exit status (or 128 + signal); waits for it without limit.
    @discardableResult
    public func waitForExit() -> Int32 {
        lock.lock()
        defer { lock.unlock() }
        _ = reap(within: .infinity)
        guard let e = exit else { return 0 }
        return e.status ?? 128 + (ChildProcessTransport.signalNumbers[e.signal ?? ""] ?? 0)
    }

    private func killGroup(_ signal: Int32) {
        // The whole group (a wrapper script's children too); the child itself if that fails.
        if Syscall.retrying({ kill(-pid, signal) }).0 != 0 { _ = Syscall.retrying { kill(pid, signal) } }
    }

    /// Reaps the child if it exits within `seconds`; lock held.
    private func reap(within seconds: Double) -> Bool {
        if exit != nil { return true }
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            var status: Int32 = 0
            let r = Syscall.retrying { waitpid(pid, &status, seconds.isInfinite ? 0 : WNOHANG) }.0
            if r == pid {
                let signal = status & 0x7f
                exit = signal != 0 ? PeerExit(signal: ChildProcessTransport.signalName(signal)) : PeerExit(status: (status >> 8) & 0xff)
                return true
            }
            if r < 0 && errno != EINTR {
                exit = PeerExit()  // reaped elsewhere: nothing more can be learnt
                return true
            }
            if Date() >= deadline { return false }
            usleep(10_000)
        }
    }

    static let signalNumbers: [String: Int32] = [
        "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "ILL": SIGILL, "TRAP": SIGTRAP, "ABRT": SIGABRT, "BUS": SIGBUS,
        "FPE": SIGFPE, "KILL": SIGKILL, "SEGV": SIGSEGV, "PIPE": SIGPIPE, "ALRM": SIGALRM, "TERM": SIGTERM,
    ]

    /// "KILL" for 9: the names SSH uses in its exit-signal message.
    static func signalName(_ n: Int32) -> String {
        signalNumbers.first { $0.value == n }?.key ?? "\(n)"
    }
}

/// Reads a child's stderr on a thread of its own, writes it through to our stderr line by line
/// as it comes (through `Console`, so a live progress display stays whole),
/// and keeps its last non-empty line (at most 2 KiB) for error messages.
final class StderrTail: @unchecked Sendable {
    private let lock = NSLock()
    private var partial: [UInt8] = []
    private var lastComplete = ""
    private var stop = false
    private let ended = DispatchSemaphore(value: 0)
    private var hasEnded = false

    init(fd: Int32) {
        let thread = Thread { [self] in drain(fd) }
        thread.name = "vzrepl.exec-stderr"
        thread.start()
    }

    var lastLine: String? {
        lock.lock()
        defer { lock.unlock() }
        let p = String(decoding: partial, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let line = p.isEmpty ? lastComplete : p
        return line.isEmpty ? nil : line
    }

    /// Waits up to `seconds` for the end of the child's stderr.
    func waitForEnd(within seconds: Double) {
        lock.lock()
        let done = hasEnded
        lock.unlock()
        if !done, ended.wait(timeout: .now() + seconds) == .success { ended.signal() }
    }

    /// Waits up to `seconds` for the end (a grandchild may hold the pipe open), then stops reading.
    func finish(within seconds: Double) {
        waitForEnd(within: seconds)
        lock.lock()
        stop = true
        lock.unlock()
    }

    private func drain(_ fd: Int32) {
        defer {
            Syscall.close(fd)
            lock.lock(); hasEnded = true; lock.unlock()
            ended.signal()
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var pending: [UInt8] = []
        defer { if !pending.isEmpty { Console.shared.relay(String(decoding: pending, as: UTF8.self) + "\n") } }
        while true {
            lock.lock()
            let stopping = stop
            lock.unlock()
            if stopping { return }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = Syscall.retrying { poll(&p, 1, 200) }.0
            if r <= 0 { continue }
            let (n, _) = Syscall.retrying { buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
            if n <= 0 { return }
            relay(buffer[0..<n], into: &pending)
            record(buffer[0..<n])
        }
    }

    /// Whole lines to our stderr; a line longer than 64 KiB goes in pieces rather than growing.
    private func relay(_ bytes: ArraySlice<UInt8>, into pending: inout [UInt8]) {
        for b in bytes {
            pending.append(b)
            if b == 0x0A || pending.count >= 65536 {
                if b != 0x0A { pending.append(0x0A) }
                Console.shared.relay(String(decoding: pending, as: UTF8.self))
                pending.removeAll(keepingCapacity: true)
            }
        }
    }

    private func record(_ bytes: ArraySlice<UInt8>) {
        lock.lock()
        defer { lock.unlock() }
        for b in bytes {
            if b == 0x0A {
                let line = String(decoding: partial, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                if !line.isEmpty { lastComplete = line }
                partial.removeAll(keepingCapacity: true)
            } else if partial.count < 2048 {
                partial.append(b)
            }
        }
    }
}
