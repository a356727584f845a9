/// A bidirectional byte stream between the two agents: a child process's stdio, an SSH exec
/// channel, or stdin/stdout of `vzrepl-target serve --stdio`. Reads and writes may happen on
/// different threads at the same time; each direction is used by one thread only.
///
/// Every wait has a limit: a read or write that moves no byte for the stream's idle timeout
/// throws `.timeout`, so a peer that stops reading or writing fails the pass instead of hanging it.
public protocol ByteStream: AnyObject {
    /// Reads up to `buffer.count` bytes; returns 0 at end of stream. Throws `VZError` on failure.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// Like `read(into:)`, but returns nil when `timeout` seconds pass before any byte arrives
    /// (the caller's own deadline, e.g. a frame's; the idle timeout still throws as usual).
    func read(into buffer: UnsafeMutableRawBufferPointer, timeout: Double?) throws -> Int?
    /// Wakes a read blocked on another thread, and fails every later read, with `.internal`
    /// "read interrupted". For a session that is ending while its receiving thread waits.
    /// Writing still works (to send the error frame).
    func interruptRead()
    /// Writes all of `bytes` or throws (`.timeout` when the peer takes no byte for the idle timeout).
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// True when a write of `count` bytes would not wait right now (the heartbeat skips a beat
    /// rather than queue behind a peer that is not reading, as the source while it sends blocks).
    func canWriteWithoutBlocking(_ count: Int) -> Bool
    /// Closes the writing direction (the peer reads end of stream).
    func closeWrite()
    /// Releases everything; after this neither direction may be used.
    func close()
    /// How the process at the other end ended, when this transport can tell (a child's exit
    /// status and last stderr line, an SSH channel's exit status or signal), waiting up to
    /// `timeout` seconds for it; nil while it runs or when the transport cannot know.
    func peerExit(waitingUpTo timeout: Double) -> PeerExit?
}

extension ByteStream {
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    public func peerExit(waitingUpTo timeout: Double) -> PeerExit? { nil }
}

/// How the agent at the other end of a stream ended, as the transport saw it.
public struct PeerExit: Equatable, Sendable, CustomStringConvertible {
    /// The exit status, when it exited.
    public var status: Int32?
    /// The signal that ended it ("KILL", "SEGV"), when it was killed.
    public var signal: String?
    /// The last line it wrote to stderr, when the transport captured it.
    public var lastStderrLine: String?
    /// Set when we had to end it ourselves: what we did ("did not exit within 30 s after its
    /// input closed: sent SIGTERM, then SIGKILL").
    public var forcedBy: String?

    public init(status: Int32? = nil, signal: String? = nil, lastStderrLine: String? = nil, forcedBy: String? = nil) {
        self.status = status; self.signal = signal; self.lastStderrLine = lastStderrLine; self.forcedBy = forcedBy
    }

    /// "was killed by signal KILL", "exited with status 127".
    public var summary: String {
        if let sig = signal { return "was killed by signal \(sig)" }
        if let st = status { return "exited with status \(st)" }
        return "ended"
    }

    /// "; its last stderr line: '…'", or nothing.
    public var stderrNote: String {
        guard let line = lastStderrLine, !line.isEmpty else { return "" }
        return "; its last stderr line: '\(line)'"
    }

    /// The summary, what we did to end it, and its last stderr line.
    public var description: String {
        summary + (forcedBy.map { " (\($0))" } ?? "") + stderrNote
    }
}
