import Glibc
import VZCore
import VZPlatform

/// Opens the TCP connection under an SSH session: resolves the host, tries each address with a
/// deadline, and returns a connected non-blocking socket. A black-holed host must fail the pass
/// in `timeout` seconds, not after the kernel's two minutes of SYN retries, hence the
/// non-blocking connect + poll.
enum TCPConnector {
    /// Returns a connected, non-blocking, close-on-exec socket with TCP_NODELAY (the protocol's
    /// small request/answer frames must not wait for Nagle). Throws `.dnsFailure` naming the host,
    /// `.connectionRefused`, or `.timeout`.
    static func connect(host: String, port: Int, timeout: Double) throws -> Int32 {
        let peer = "\(host):\(port)"
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_protocol = Int32(IPPROTO_TCP)
        var list: UnsafeMutablePointer<addrinfo>?
        let gai = getaddrinfo(host, String(port), &hints, &list)
        guard gai == 0, let first = list else {
            let why = gai == EAI_SYSTEM ? Syscall.errnoDescription(errno) : String(cString: gai_strerror(gai))
            throw VZError(.dnsFailure, "cannot resolve SSH target host '\(host)': \(why)")
        }
        defer { freeaddrinfo(list) }

        let deadline = MonotonicClock.now() + timeout
        var failures: [String] = []
        var refused = false, timedOut = false
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            let address = describe(a.pointee.ai_addr, a.pointee.ai_addrlen)
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
                            a.pointee.ai_protocol)
            guard fd >= 0 else { failures.append("\(address): socket: \(Syscall.errnoDescription(errno))"); continue }
            let code = attempt(fd, a.pointee.ai_addr, a.pointee.ai_addrlen, deadline: deadline)
            if code == 0 {
                var one: Int32 = 1
                _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return fd
            }
            Syscall.close(fd)
            if code == ECONNREFUSED { refused = true }
            if code == ETIMEDOUT { timedOut = true }
            failures.append("\(address): \(code == ETIMEDOUT ? "no answer within \(format(timeout)) s" : Syscall.errnoDescription(code))")
            if MonotonicClock.now() >= deadline { break }
        }
        let detail = failures.joined(separator: "; ")
        if timedOut && !refused {
            throw VZError(.timeout, "cannot connect to SSH target \(peer) within \(format(timeout)) s (connect timeout): \(detail)")
        }
        if refused {
            throw VZError(.connectionRefused, "SSH target \(peer) refused the connection (is sshd running and listening on port \(port)?): \(detail)")
        }
        // Unreachable networks and the like: no connection could be opened, which is what
        // `.connectionRefused` stands for (and, like it, is worth a retry).
        throw VZError(.connectionRefused, "cannot connect to SSH target \(peer): \(detail)")
    }

    /// 0 when connected, else the errno of the failure (ETIMEDOUT at the deadline).
    private static func attempt(_ fd: Int32, _ addr: UnsafeMutablePointer<sockaddr>?, _ len: socklen_t, deadline: Double) -> Int32 {
        if Glibc.connect(fd, addr, len) == 0 { return 0 }
        guard errno == EINPROGRESS || errno == EINTR else { return errno }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        while true {
            let left = deadline - MonotonicClock.now()
            if left <= 0 { return ETIMEDOUT }
            let r = poll(&p, 1, Int32(min(left * 1000, 1_000_000).rounded(.up)))
            if r < 0 { if errno == EINTR { continue }; return errno }
            if r == 0 { return ETIMEDOUT }
            var err: Int32 = 0
            var errLen = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errLen) < 0 { return errno }
            return err
        }
    }

    private static func describe(_ addr: UnsafeMutablePointer<sockaddr>?, _ len: socklen_t) -> String {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard let addr, getnameinfo(addr, len, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 else { return "?" }
        return String(cString: host)
    }

    static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
    }
}

/// Seconds on CLOCK_MONOTONIC: deadlines must not jump with the wall clock.
enum MonotonicClock {
    @inline(__always)
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
