import CLibSSH2
import Foundation
import Glibc
import VZCore
import VZPlatform

/// Keeps an `SSHSession` alive while the application is busy elsewhere (hashing a large unchanged
/// disk can mean minutes without a read or write): every few seconds it sends an SSH keepalive
/// when due, lets libssh2 answer the server's client-alive probes (sshd drops a client that
/// leaves `ClientAliveCountMax` of them unanswered) and logs the target's stderr.
final class SSHServiceThread: @unchecked Sendable {
    private let session: SSHSession
    private let period: Double
    private let keepalive: Bool
    private let done = DispatchSemaphore(value: 0)
    private var stopPipe: [Int32] = [-1, -1]
    private var started = false
    private let stateLock = NSLock()
    private var stopped = false

    init(session: SSHSession, keepaliveInterval: Int) {
        self.session = session
        keepalive = keepaliveInterval > 0
        // Every second: it is also what notices the target agent's death (its exit-signal or
        // exit-status) while the application sends nothing; libssh2 sends a keepalive only when
        // the interval has passed, well inside sshd's ClientAliveInterval (15 s on the appliance).
        period = 1
        guard Syscall.retrying({ pipe(&stopPipe) }).0 == 0 else { return }
        for fd in stopPipe { _ = Syscall.retrying { fcntl(fd, F_SETFD, FD_CLOEXEC) } }
        started = true
        let thread = Thread { [self] in self.loop() }
        thread.name = "vzrepl.ssh-service"
        thread.start()
    }

    deinit {
        stop()
        for fd in stopPipe where fd >= 0 { Syscall.close(fd) }
    }

    /// Ends the thread and waits for it. Idempotent.
    func stop() {
        stateLock.lock()
        let first = !stopped
        stopped = true
        stateLock.unlock()
        guard first, started else { return }
        var one: UInt8 = 1
        _ = Glibc.write(stopPipe[1], &one, 1)
        done.wait()
    }

    private func loop() {
        defer { done.signal() }
        var p = pollfd(fd: stopPipe[0], events: Int16(POLLIN), revents: 0)
        while true {
            p.revents = 0
            let r = Syscall.retrying { poll(&p, 1, Int32(period * 1000)) }.0
            if r > 0 || isStopped { return }
            do {
                let outcome = try session.run(.service, .read, .idle(since: MonotonicClock.now(), what: "serviced"), returnWhenIdle: true) {
                    if keepalive && !session.hasPendingPacket && session.socketWritable() {
                        // libssh2 sends only when the interval has passed since the last one.
                        var next: Int32 = 0
                        _ = libssh2_keepalive_send(session.session, &next)
                    }
                    let rc = session.drainStderrLocked()
                    session.checkRemoteExitLocked()
                    return rc
                }
                if outcome.rc < 0 && outcome.rc != Int(vz_ssh2_error_eagain()) { return }
            } catch {
                // The reader or writer reports a dead session with the right context; the
                // service thread only stops trying.
                return
            }
        }
    }

    private var isStopped: Bool {
        stateLock.lock(); defer { stateLock.unlock() }
        return stopped
    }
}
