import CLibSSH2
import Foundation
import Glibc
import Logging
import VZCore
import VZPlatform

/// One non-blocking libssh2 session and its exec channel, driven by up to three threads: the
/// stream's reader, its writer and a service thread (keepalives, target stderr, answers to sshd's
/// client-alive probes while the application is busy elsewhere).
///
/// libssh2 is not thread-safe per session, so every libssh2 call runs under `mutex`; nobody
/// holds it while waiting in poll() for data or a window adjust. Sends are the exception: the
/// socket's SEND callback (`vz_ssh2_send_whole`) waits, under the lock, until a packet is wholly
/// in the socket, so libssh2 never holds a half-sent packet — libssh2 1.10 corrupts the stream
/// when the server's key re-exchange meets one (it "resumes" the pending packet on behalf of a
/// different one). That wait is bounded by the idle timeout, and `close()` cuts it short.
/// The rule that remains from libssh2 1.10's non-blocking API: when a call returns EAGAIN with a
/// packet pending, the next send must be that same call again. With whole sends that no longer
/// happens, but the bookkeeping stays as a guard: the actor that left a packet pending owns the
/// session until it has flushed it; the others wait to be kicked. Channel reads (stdout or
/// stderr, any actor) all resume the same pending window adjust, so they may stand in for each
/// other.
final class SSHSession: @unchecked Sendable {
    enum Actor: Int, CaseIterable { case reader = 0, writer = 1, service = 2 }
    enum Op: Equatable { case setup, read, write, eof, keepalive }
    /// How long one call may wait: until a fixed deadline (connection setup), or until the
    /// session has moved no data for `idleTimeout` seconds — or, when `until` comes first, until
    /// the caller's own deadline, which ends the call with `CallerDeadline`.
    enum Limit { case setup(deadline: Double, step: String), idle(since: Double, what: String, until: Double? = nil) }
    struct Outcome { var rc: Int; var message: String }
    /// Thrown by `run` when a `.idle(until:)` deadline passed before the call completed.
    struct CallerDeadline: Error {}

    /// libssh2_init must run once before any session and is not thread-safe; a static let is.
    static let libraryStatus: Int32 = libssh2_init(0)

    let session: OpaquePointer
    var channel: OpaquePointer?
    let socket: Int32
    let peer: String
    let idleTimeout: Double
    let logger: Logger
    let tap: KexInitTap

    // All below guarded by `mutex`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var pendingOp: Op?
    private var pendingActor: Actor?
    private var waiting: [Bool] = [false, false, false]
    private var lastProgress: Double
    private(set) var broken = false
    private(set) var closed = false
    private var inFlight = 0
    /// Set by a call that declined to start because the socket was full (see `socketWritable`):
    /// its next wait is for POLLOUT, whatever libssh2's block directions say.
    var waitForWritable = false
    private var descriptorsReleased = false

    private let kickRead: [Int32]
    private let kickWrite: [Int32]
    /// What the socket callbacks share (the session's `abstract`): the tap, the send timeout, the
    /// cancel descriptor, why the last send failed.
    private let io: UnsafeMutablePointer<vz_ssh2_io>
    /// Written by `close()` before it takes the lock: a send waiting for room in the socket stops.
    /// Closed by deinit only.
    private let cancelPipe: [Int32]
    private let pollSet: UnsafeMutablePointer<pollfd>
    private let stderrBuffer: UnsafeMutableRawBufferPointer
    private var stderrLine: [UInt8] = []
    private var lastCompleteStderrLine = ""
    /// Actors whose calls fail at once (`interrupt`): the reader of a session that is ending.
    private var interrupted: [Bool] = [false, false, false]
    /// How the remote command ended, once the service thread or a stalled writer saw its
    /// exit-signal or non-zero exit-status: writes then fail at once, naming it.
    private(set) var remoteExit: PeerExit?

    /// Takes ownership of `socket` (closed by `close()`, also when this init throws).
    init(socket: Int32, peer: String, idleTimeout: Double, logger: Logger) throws {
        self.socket = socket
        self.peer = peer
        self.idleTimeout = idleTimeout
        self.logger = logger
        guard SSHSession.libraryStatus == 0 else {
            Syscall.close(socket)
            throw VZError(.transport, "libssh2_init failed (\(SSHSession.libraryStatus))")
        }
        tap = KexInitTap(peer: peer)
        var r: [Int32] = [], w: [Int32] = []
        for _ in 0...Actor.allCases.count {  // one kick pipe per actor, and the cancel pipe
            var fds: [Int32] = [-1, -1]
            _ = Syscall.retrying { pipe(&fds) }
            for fd in fds where fd >= 0 {
                _ = Syscall.retrying { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
                _ = Syscall.retrying { fcntl(fd, F_SETFD, FD_CLOEXEC) }
            }
            r.append(fds[0]); w.append(fds[1])
        }
        cancelPipe = [r.removeLast(), w.removeLast()]
        kickRead = r; kickWrite = w
        io = .allocate(capacity: 1)
        io.initialize(to: vz_ssh2_io(tap: tap.opaque, timeout_ms: Int32(min(idleTimeout * 1000, Double(Int32.max)).rounded(.up)),
                                     cancel_fd: cancelPipe[0], failure: 0))
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        guard let s = vz_ssh2_session_init(io) else {
            for fd in kickRead + kickWrite + cancelPipe where fd >= 0 { Syscall.close(fd) }
            pthread_mutex_destroy(mutex); mutex.deallocate(); io.deallocate()
            Syscall.close(socket)
            throw VZError(.transport, "libssh2_session_init failed for \(peer) (out of memory?)")
        }
        session = s
        vz_ssh2_use_whole_sends(s)
        pollSet = .allocate(capacity: 2 * Actor.allCases.count)
        stderrBuffer = .allocate(byteCount: 4096, alignment: 8)
        lastProgress = MonotonicClock.now()
        libssh2_session_set_blocking(session, 0)
        if (kickRead + cancelPipe).contains(-1) {
            close()
            throw VZError(.transport, "pipe: \(String(cString: strerror(errno))) while setting up the SSH session to \(peer)")
        }
    }

    deinit {
        close()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        pollSet.deallocate()
        stderrBuffer.deallocate()
        io.deallocate()
        // Only now: `close()` writes to it without the lock, so its number must not be reused.
        for fd in cancelPipe where fd >= 0 { Syscall.close(fd) }
    }

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }

    /// Runs the non-blocking libssh2 `call` until it returns something other than EAGAIN, waiting
    /// in poll() between tries. With `returnWhenIdle`, also returns on an EAGAIN that leaves no
    /// packet half sent (the service thread's "nothing more to do now"). On a negative result the
    /// outcome carries libssh2's message, read under the lock before anyone else can overwrite it.
    func run(_ actor: Actor, _ op: Op, _ limit: Limit, returnWhenIdle: Bool = false, _ call: () -> Int) throws -> Outcome {
        lock()
        inFlight += 1
        defer {
            inFlight -= 1
            releaseDescriptorsIfIdle()
            unlock()
        }
        let eagain = Int(vz_ssh2_error_eagain())
        let outbound = vz_ssh2_block_outbound()
        while true {
            waiting[actor.rawValue] = false
            if closed { throw VZError(.connectionLost, "ssh \(peer): the connection was closed locally") }
            if interrupted[actor.rawValue] { throw VZError(.internal, "ssh \(peer): read interrupted: the session is ending") }
            if let owner = pendingActor, owner != actor, !(pendingOp == .read && op == .read) {
                try wait(actor, events: 0, limit)
                continue
            }
            let rc = call()
            let dirs = libssh2_session_block_directions(session)
            let hadPacket = pendingActor != nil
            if rc == eagain && dirs & outbound != 0 {
                pendingOp = op; pendingActor = actor
            } else if pendingActor == actor || (pendingOp == .read && op == .read) {
                pendingOp = nil; pendingActor = nil
            }
            if rc > 0 && (op == .read || op == .write) { lastProgress = MonotonicClock.now() }
            kickOthers(after: actor, packetFlushed: hadPacket && pendingActor == nil)
            if rc != eagain {
                return Outcome(rc: rc, message: rc < 0 ? lastError() : "")
            }
            if returnWhenIdle && pendingActor != actor { return Outcome(rc: rc, message: "") }
            var events: Int16 = 0
            if dirs & vz_ssh2_block_inbound() != 0 { events |= Int16(POLLIN) }
            if dirs & outbound != 0 || waitForWritable { events |= Int16(POLLOUT) }
            waitForWritable = false
            try wait(actor, events: events == 0 ? Int16(POLLIN) : events, limit)
        }
    }

    /// Waits (lock released) for the socket `events` (0: only a kick) or a kick from another
    /// actor, up to the limit. Called and returns with the lock held.
    private func wait(_ actor: Actor, events: Int16, _ limit: Limit) throws {
        var deadline: Double
        var callers = false
        switch limit {
        case .setup(let d, _): deadline = d
        case .idle(let since, _, let until):
            deadline = max(since, lastProgress) + idleTimeout
            if let u = until, u < deadline { deadline = u; callers = true }
        }
        let left = deadline - MonotonicClock.now()
        if left <= 0 { throw callers ? CallerDeadline() : timeoutError(limit) }
        waiting[actor.rawValue] = true
        let fds = pollSet + 2 * actor.rawValue
        fds[0] = pollfd(fd: events == 0 ? -1 : socket, events: events, revents: 0)
        fds[1] = pollfd(fd: kickRead[actor.rawValue], events: Int16(POLLIN), revents: 0)
        unlock()
        _ = Syscall.retrying { poll(fds, 2, Int32(min(left * 1000, 60_000).rounded(.up))) }
        if fds[1].revents != 0 {
            var sink: UInt64 = 0
            while Glibc.read(fds[1].fd, &sink, 8) > 0 {}
        }
        lock()
    }

    /// After `actor`'s call: wake the waiters that may now get further. The writer calls libssh2
    /// thousands of times a second, so it wakes the reader only when data or EOF is queued for it;
    /// the rarer reader and service calls may have taken a window adjust off the socket, so they
    /// wake everyone.
    private func kickOthers(after actor: Actor, packetFlushed: Bool) {
        // Indices, not Actor.allCases: that builds an array, and this runs for every packet.
        for i in 0..<3 where i != actor.rawValue && waiting[i] {
            let other = Actor(rawValue: i)!
            var kick = packetFlushed || actor != .writer
            if !kick, other == .reader, let ch = channel {
                kick = libssh2_poll_channel_read(ch, 0) != 0 || libssh2_channel_eof(ch) == 1
            }
            if kick { kickNow(other) }
        }
    }

    private func kickNow(_ actor: Actor) {
        var one: UInt8 = 1
        _ = Glibc.write(kickWrite[actor.rawValue], &one, 1)
    }

    private func lastError() -> String {
        var message: UnsafeMutablePointer<CChar>?
        var length: Int32 = 0
        _ = libssh2_session_last_error(session, &message, &length, 0)
        return message.map { String(cString: $0) } ?? "unknown libssh2 error"
    }

    private func timeoutError(_ limit: Limit) -> VZError {
        switch limit {
        case .setup(_, let step):
            return VZError(.timeout, "ssh \(peer): \(step) did not finish in time (connect timeout); the server or the link is stalled")
        case .idle(_, let what, _):
            return VZError(.timeout, "ssh \(peer): nothing could be \(what) for \(TCPConnector.format(idleTimeout)) s (idle timeout); the link or the target is dead or stalled")
        }
    }

    /// Maps a libssh2 failure during the data phase to the error kind callers switch on; a lost
    /// connection marks the session broken so `close()` does not wait on a dead peer.
    func dataError(_ outcome: Outcome, during: String) -> VZError {
        let rc = Int32(truncatingIfNeeded: outcome.rc)
        lock()
        let sendFailure = io.pointee.failure
        unlock()
        if rc == LIBSSH2_ERROR_SOCKET_SEND && sendFailure == ETIMEDOUT {
            lock(); broken = true; unlock()
            return timeoutError(.idle(since: 0, what: "written"))
        }
        let kind: VZError.Kind
        switch rc {
        case LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_DISCONNECT,
             LIBSSH2_ERROR_SOCKET_NONE, LIBSSH2_ERROR_SOCKET_TIMEOUT, LIBSSH2_ERROR_CHANNEL_CLOSED,
             LIBSSH2_ERROR_CHANNEL_EOF_SENT, LIBSSH2_ERROR_CHANNEL_UNKNOWN, LIBSSH2_ERROR_BAD_USE,
             LIBSSH2_ERROR_DECRYPT, LIBSSH2_ERROR_KEX_FAILURE:
            kind = .connectionLost
        case LIBSSH2_ERROR_TIMEOUT:
            kind = .timeout
        default:
            kind = .transport
        }
        if kind == .connectionLost {
            lock(); broken = true; unlock()
            return VZError(kind, "ssh \(peer): connection lost while \(during) (\(outcome.message), libssh2 error \(rc)); the server, the network or the target ended the session")
        }
        return VZError(kind, "ssh \(peer): \(during): \(outcome.message) (libssh2 error \(rc))")
    }

    // MARK: - stderr of the remote command

    /// Reads what the target wrote to stderr and logs it line by line. Lock held. Harmless when
    /// there is nothing: it is also how the session processes incoming packets (keepalive
    /// replies, window adjusts) without touching the stdout data the reader owns.
    func drainStderrLocked() -> Int {
        guard let ch = channel else { return 0 }
        var rc = 0
        for _ in 0..<16 {
            rc = vz_ssh2_channel_read_stderr(ch, stderrBuffer.baseAddress, stderrBuffer.count)
            guard rc > 0 else { break }
            for byte in UnsafeRawBufferPointer(rebasing: stderrBuffer[0..<rc]) {
                if byte == 0x0A || stderrLine.count >= 2048 {
                    let line = String(decoding: stderrLine, as: UTF8.self)
                    // The target's warnings and errors (and anything that is not a log line) stay
                    // visible on a terminal above the progress lines; the rest is in the source log.
                    if Console.isImportant(relayed: line) {
                        logger.warning("target stderr: \(line)")
                    } else {
                        logger.notice("target stderr: \(line)")
                    }
                    let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
                    if !trimmed.isEmpty { lastCompleteStderrLine = trimmed }
                    stderrLine.removeAll(keepingCapacity: true)
                    if byte == 0x0A { continue }
                }
                stderrLine.append(byte)
            }
        }
        return rc
    }

    /// The last non-empty line the remote command wrote to stderr (a partial one counts). Lock held.
    var lastStderrLineLocked: String? {
        let partial = String(decoding: stderrLine, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let line = partial.isEmpty ? lastCompleteStderrLine : partial
        return line.isEmpty ? nil : line
    }

    /// Looks for the remote command's exit-signal or non-zero exit-status among what libssh2 has
    /// read so far, and records it (`remoteExit`), waking a blocked reader or writer. (A clean
    /// exit 0 looks like no status at all: that one is only known once the channel closes.)
    /// Lock held.
    @discardableResult
    func checkRemoteExitLocked() -> PeerExit? {
        if let e = remoteExit { return e }
        guard !closed, let ch = channel else { return nil }
        var name: UnsafeMutablePointer<CChar>?
        var length = 0
        _ = libssh2_channel_get_exit_signal(ch, &name, &length, nil, nil, nil, nil)
        var found: PeerExit?
        if let n = name {
            found = PeerExit(signal: String(cString: n))
            libssh2_free(session, n)
        } else {
            let status = libssh2_channel_get_exit_status(ch)
            if status != 0 { found = PeerExit(status: status) }
        }
        guard var e = found else { return nil }
        e.lastStderrLine = lastStderrLineLocked
        remoteExit = e
        for a in [Actor.reader, .writer] where waiting[a.rawValue] { kickNow(a) }
        return e
    }

    /// Makes `actor`'s current and later calls fail at once. Any thread.
    func interrupt(_ actor: Actor) {
        lock()
        defer { unlock() }
        interrupted[actor.rawValue] = true
        if !closed { kickNow(actor) }
    }

    /// The socket can take a small packet whole right now. Checked before keepalives and EOF,
    /// whose packets libssh2 builds on its stack and so cannot resume if they were half sent.
    func socketWritable() -> Bool {
        var p = pollfd(fd: socket, events: Int16(POLLOUT), revents: 0)
        return Syscall.retrying({ poll(&p, 1, 0) }).0 == 1 && p.revents & Int16(POLLOUT) != 0
    }

    var hasPendingPacket: Bool { pendingActor != nil }

    // MARK: - teardown

    /// Idempotent; safe while other threads are blocked in `run` (they wake and throw).
    func close() {
        // First, without the lock (a send waiting for room holds it): that send stops now.
        var one: UInt8 = 1
        _ = Glibc.write(cancelPipe[1], &one, 1)
        lock()
        defer { unlock() }
        guard !closed else { return }
        closed = true
        for a in Actor.allCases { kickNow(a) }
        tap.remove()
        if broken {
            // Nothing polite will get through; make every send fail at once instead of waiting.
            shutdown(socket, Int32(SHUT_RDWR))
        } else {
            // A short blocking goodbye: CHANNEL_CLOSE and DISCONNECT, at most ~1 s each if the
            // peer has stalled.
            libssh2_session_set_timeout(session, 1000)
            libssh2_session_set_blocking(session, 1)
        }
        if let ch = channel {
            if !broken { _ = libssh2_channel_close(ch) }
            _ = libssh2_channel_free(ch)
            channel = nil
        }
        if !broken { _ = vz_ssh2_session_disconnect(session, "vzrepl: done") }
        _ = libssh2_session_free(session)
        shutdown(socket, Int32(SHUT_RDWR))
        releaseDescriptorsIfIdle()
    }

    /// Closes the descriptors once closed and no thread is inside `run` (one might otherwise
    /// poll a number the kernel has already handed to someone else). Lock held.
    private func releaseDescriptorsIfIdle() {
        guard closed, inFlight == 0, !descriptorsReleased else { return }
        descriptorsReleased = true
        Syscall.close(socket)
        for fd in kickRead + kickWrite where fd >= 0 { Syscall.close(fd) }
    }
}
