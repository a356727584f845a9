import Foundation
import Glibc
import VZCore
import VZPlatform

/// A `ByteStream` over two file descriptors: stdin/stdout of `vzrepl-target serve --stdio`, or
/// the pipes to a spawned child. Every wait is a poll() with the idle timeout, in both directions:
/// a peer that stops sending fails a read, and a peer that stops reading fails a write, after
/// `idleTimeout` seconds in which no byte moved, instead of hanging the pass.
///
/// Writes never block inside write(): the write descriptor is non-blocking, and a full pipe means
/// poll for POLLOUT (up to the idle timeout) and write the rest. O_NONBLOCK is a flag of the open
/// file description, which a process shares with everyone who inherited the descriptor — for
/// stdout that may be the shell that started us, which would then see EAGAIN on its own writes.
/// So the flag is only ever set on a description that is ours alone:
/// - descriptors we own (the pipes we made for a child): set on them directly;
/// - a stdout that is a pipe (what sshd gives a forced command; checked on Debian 12's
///   OpenSSH): reopened through /proc/self/fd/1, which makes a second, private description of
///   the same pipe, and the flag set there; fd 1 itself is left as it was;
/// - a stdout that is a socket: each write is a send() with MSG_DONTWAIT, no flag at all;
/// - anything else (a terminal, a file): written as before, poll then write; a terminal is a
///   person, a file never blocks.
public final class FileDescriptorStream: ByteStream {
    private enum WriteMode { case nonBlocking, socket, blocking }

    private var readFD: Int32
    private var writeFD: Int32
    private let ownsDescriptors: Bool
    /// The write descriptor is our private reopen of a borrowed one: closed by closeWrite.
    private var ownsWriteFD: Bool
    private let writeMode: WriteMode
    public let name: String
    public var idleTimeout: Double?
    /// Set once a read or write gave up on a silent peer.
    public private(set) var timedOut = false
    /// interruptRead() writes here; reads poll it beside the read descriptor.
    private var interruptPipe: [Int32] = [-1, -1]
    private let stateLock = NSLock()
    private var interrupted = false
    private var closed = false

    public init(readFD: Int32, writeFD: Int32, name: String, idleTimeout: Double? = nil, ownsDescriptors: Bool) {
        self.readFD = readFD
        self.name = name
        self.idleTimeout = idleTimeout
        self.ownsDescriptors = ownsDescriptors
        (self.writeFD, writeMode, ownsWriteFD) = FileDescriptorStream.prepareWriting(writeFD, owned: ownsDescriptors)
        if Syscall.retrying({ pipe(&interruptPipe) }).0 == 0 {
            for fd in interruptPipe {
                _ = Syscall.retrying { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
                _ = Syscall.retrying { fcntl(fd, F_SETFD, FD_CLOEXEC) }
            }
        }
        // A closed pipe must be an error from write(), not a SIGPIPE that kills the agent.
        signal(SIGPIPE, SIG_IGN)
    }

    deinit { close() }

    /// Picks how to write `fd` without ever blocking in write() (see the type's comment).
    private static func prepareWriting(_ fd: Int32, owned: Bool) -> (Int32, WriteMode, Bool) {
        guard fd >= 0 else { return (fd, .blocking, false) }
        if owned {
            _ = Syscall.retrying { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
            return (fd, .nonBlocking, false)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return (fd, .blocking, false) }
        switch st.st_mode & S_IFMT {
        case S_IFIFO:
            let (own, _) = Syscall.retrying { open("/proc/self/fd/\(fd)", O_WRONLY | O_NONBLOCK | O_CLOEXEC) }
            return own >= 0 ? (own, .nonBlocking, true) : (fd, .blocking, false)
        case S_IFSOCK:
            return (fd, .socket, false)
        default:
            return (fd, .blocking, false)
        }
    }

    private static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    private static func milliseconds(_ seconds: Double?) -> Int32 {
        guard let s = seconds else { return -1 }
        return Int32(Swift.max(0, Swift.min((s * 1000).rounded(.up), Double(Int32.max))))
    }

    private func idleError(_ what: String) -> VZError {
        timedOut = true
        let detail = what == "read" ? "the peer is gone or stalled" : "the peer is not reading: gone or stalled"
        return VZError(.timeout, "\(name): nothing could be \(what) for \(TimeoutText.seconds(idleTimeout ?? 0)) s (idle timeout); \(detail)")
    }

    // MARK: reading

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try read(into: buffer, timeout: nil) ?? 0
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, timeout: Double?) throws -> Int? {
        guard readFD >= 0 else { return 0 }
        let start = FileDescriptorStream.now()
        while true {
            try checkInterrupted()
            let elapsed = FileDescriptorStream.now() - start
            var wait = idleTimeout.map { $0 - elapsed }
            var callersDeadline = false
            if let t = timeout, wait == nil || t - elapsed < wait! {
                wait = t - elapsed
                callersDeadline = true
            }
            var fds = [pollfd(fd: readFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: interruptPipe[0], events: Int16(POLLIN), revents: 0)]
            let (r, e) = Syscall.retrying { poll(&fds, 2, FileDescriptorStream.milliseconds(wait)) }
            if r < 0 { throw VZError(.transport, "\(name): poll: \(Syscall.errnoDescription(e))") }
            if fds[1].revents != 0 { try checkInterrupted() }
            if fds[0].revents != 0 { break }
            if r == 0 {
                if callersDeadline { return nil }
                throw idleError("read")
            }
        }
        let (n, e) = Syscall.retrying { Glibc.read(readFD, buffer.baseAddress, buffer.count) }
        if n < 0 {
            if e == ECONNRESET { return 0 }
            throw VZError(.connectionLost, "\(name): read: \(Syscall.errnoDescription(e))")
        }
        return n
    }

    public func interruptRead() {
        stateLock.lock()
        defer { stateLock.unlock() }
        guard !closed else { return }
        interrupted = true
        var one: UInt8 = 1
        _ = Glibc.write(interruptPipe[1], &one, 1)
    }

    private func checkInterrupted() throws {
        stateLock.lock()
        defer { stateLock.unlock() }
        if interrupted { throw VZError(.internal, "\(name): read interrupted: the session is ending") }
    }

    // MARK: writing

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        var lastProgress = FileDescriptorStream.now()
        while done < bytes.count {
            guard writeFD >= 0 else { throw VZError(.connectionLost, "\(name): write after close") }
            if writeMode == .blocking { try waitWritable(since: lastProgress) }
            let p = bytes.baseAddress! + done, count = bytes.count - done
            let (n, e): (Int, Int32) = writeMode == .socket
                ? Syscall.retrying { send(writeFD, p, count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                : Syscall.retrying { Glibc.write(writeFD, p, count) }
            if n > 0 {
                done += n
                lastProgress = FileDescriptorStream.now()
                continue
            }
            if n < 0 && e != EAGAIN && e != EWOULDBLOCK {
                if e == EPIPE || e == ECONNRESET {
                    throw VZError(.connectionLost, "\(name): the peer closed the connection (\(Syscall.errnoDescription(e)))")
                }
                throw VZError(.connectionLost, "\(name): write: \(Syscall.errnoDescription(e))")
            }
            try waitWritable(since: lastProgress)
        }
    }

    /// Waits for POLLOUT until `since` + the idle timeout. An error or hang-up on the descriptor
    /// counts as writable: the write that follows reports it.
    private func waitWritable(since: Double) throws {
        while true {
            let left = idleTimeout.map { since + $0 - FileDescriptorStream.now() }
            if let l = left, l <= 0 { throw idleError("written") }
            var p = pollfd(fd: writeFD, events: Int16(POLLOUT), revents: 0)
            let (r, e) = Syscall.retrying { poll(&p, 1, FileDescriptorStream.milliseconds(left)) }
            if r < 0 { throw VZError(.transport, "\(name): poll: \(Syscall.errnoDescription(e))") }
            if r > 0 { return }
        }
    }

    public func canWriteWithoutBlocking(_ count: Int) -> Bool {
        guard writeFD >= 0 else { return true }
        var p = pollfd(fd: writeFD, events: Int16(POLLOUT), revents: 0)
        return Syscall.retrying { poll(&p, 1, 0) }.0 != 0
    }

    // MARK: closing

    public func closeWrite() {
        if writeFD >= 0 {
            if ownsDescriptors || ownsWriteFD { Syscall.close(writeFD) }
            writeFD = -1
        }
    }

    public func close() {
        closeWrite()
        if readFD >= 0 {
            if ownsDescriptors { Syscall.close(readFD) }
            readFD = -1
        }
        stateLock.lock()
        defer { stateLock.unlock() }
        if !closed {
            closed = true
            for fd in interruptPipe where fd >= 0 { Syscall.close(fd) }
        }
    }
}

/// "30", "2.5": seconds as the documentation writes them.
enum TimeoutText {
    static func seconds(_ s: Double) -> String {
        s == s.rounded() ? String(Int(s)) : String(format: "%.1f", s)
    }
}
