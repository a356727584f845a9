import Glibc
import VZCore
import VZPlatform

/// A `ByteStream` over two file descriptors: stdin/stdout of `vzrepl-target serve --stdio`, or
/// the pipes to a spawned child. Reads and writes wait with poll(), so a peer that goes silent
/// fails the pass after `idleTimeout` seconds instead of hanging it.
public final class FileDescriptorStream: ByteStream {
    private var readFD: Int32
    private var writeFD: Int32
    private let ownsDescriptors: Bool
    public let name: String
    public var idleTimeout: Double?
    /// Set once a read or write gave up on a silent peer.
    public private(set) var timedOut = false

    public init(readFD: Int32, writeFD: Int32, name: String, idleTimeout: Double? = nil, ownsDescriptors: Bool) {
        self.readFD = readFD
        self.writeFD = writeFD
        self.name = name
        self.idleTimeout = idleTimeout
        self.ownsDescriptors = ownsDescriptors
        // A closed pipe must be an error from write(), not a SIGPIPE that kills the agent.
        signal(SIGPIPE, SIG_IGN)
    }

    deinit { close() }

    private func wait(_ fd: Int32, events: Int16, what: String) throws {
        guard let timeout = idleTimeout else { return }
        var p = pollfd(fd: fd, events: events, revents: 0)
        let ms = Int32(Swift.min(timeout * 1000, Double(Int32.max)))
        let (r, e) = Syscall.retrying { poll(&p, 1, ms) }
        if r < 0 { throw VZError(.transport, "\(name): poll: \(Syscall.errnoDescription(e))") }
        if r == 0 {
            timedOut = true
            throw VZError(.timeout, "\(name): nothing could be \(what) for \(Int(timeout)) s (idle timeout); the peer is gone or stalled")
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard readFD >= 0 else { return 0 }
        try wait(readFD, events: Int16(POLLIN), what: "read")
        let (n, e) = Syscall.retrying { Glibc.read(readFD, buffer.baseAddress, buffer.count) }
        if n < 0 {
            if e == ECONNRESET { return 0 }
            throw VZError(.connectionLost, "\(name): read: \(Syscall.errnoDescription(e))")
        }
        return n
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            guard writeFD >= 0 else { throw VZError(.connectionLost, "\(name): write after close") }
            try wait(writeFD, events: Int16(POLLOUT), what: "written")
            let (n, e) = Syscall.retrying { Glibc.write(writeFD, bytes.baseAddress! + done, bytes.count - done) }
            if n < 0 {
                if e == EPIPE || e == ECONNRESET {
                    throw VZError(.connectionLost, "\(name): the peer closed the connection (\(Syscall.errnoDescription(e)))")
                }
                throw VZError(.connectionLost, "\(name): write: \(Syscall.errnoDescription(e))")
            }
            done += n
        }
    }

    public func closeWrite() {
        if writeFD >= 0 {
            if ownsDescriptors { Glibc.close(writeFD) }
            writeFD = -1
        }
    }

    public func close() {
        closeWrite()
        if readFD >= 0 {
            if ownsDescriptors { Glibc.close(readFD) }
            readFD = -1
        }
    }
}
