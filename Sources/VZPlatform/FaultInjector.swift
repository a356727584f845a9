import Glibc
import VZCore

/// Test-only fault injection, configured by the environment variable `VZREPL_FAULT` (unset in
/// production, where every check is one branch). A comma-separated list of rules:
///
///   kill-at:N            SIGKILL the process at the N-th durable operation (every system call
///                        that changes a file or directory: open with O_CREAT, mkdir, ftruncate,
///                        write, punch, fsync, rename, unlink) — the crash-point sweep
///   eio-write:N          the N-th write fails with EIO (and every later one: "N+")
///   eio-fsync:N          the N-th fsync fails with EIO
///   eio-writeback:N      the N-th sync_file_range (the start of a batch's writeback) fails with EIO
///   enospc-write:N       the N-th write fails with ENOSPC
///   delay-read:MS        every read sleeps MS milliseconds first (a slow source disk)
///   delay-fsync:MS       every fsync sleeps MS milliseconds first (a slow datastore)
///
/// Operations are counted per process, in the order the agent performs them. `Syscall.call` is
/// the one place that consults the injector, just before the system call.
public final class FaultInjector: @unchecked Sendable {
    public enum Operation: String, Sendable {
        /// Not durable: only delayed (delay-read), never counted.
        case read
        /// Not durable (a writeback hint): counted for eio-writeback only, not for kill-at.
        case writeback
        case create, mkdir, truncate, write, punch, fsync, rename, unlink
    }

    struct Rule {
        var action: String
        var n: Int
        var andLater: Bool
    }

    public static let shared = FaultInjector(spec: getenv("VZREPL_FAULT").map { String(cString: $0) })

    private let rules: [Rule]
    private var lock = pthread_mutex_t()
    private var durableCount = 0
    private var counts: [Operation: Int] = [:]
    public let isActive: Bool

    init(spec: String?) {
        var rules: [Rule] = []
        for part in (spec ?? "").split(separator: ",") {
            let kv = part.split(separator: ":", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { continue }
            let andLater = kv[1].hasSuffix("+")
            guard let n = Int(kv[1].trimmingCharacters(in: "+")) else { continue }
            rules.append(Rule(action: kv[0], n: n, andLater: andLater))
        }
        self.rules = rules
        isActive = !rules.isEmpty
        pthread_mutex_init(&lock, nil)
    }

    /// Called before each operation; returns an errno to fail it with, or 0. Reads are only delayed.
    public func check(_ op: Operation) -> Int32 {
        guard isActive else { return 0 }
        if op == .read {
            for r in rules where r.action == "delay-read" { usleep(useconds_t(r.n) * 1000) }
            return 0
        }
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if op != .writeback { durableCount += 1 }
        let c = (counts[op] ?? 0) + 1
        counts[op] = c
        for r in rules where r.action == "delay-fsync" && op == .fsync { usleep(useconds_t(r.n) * 1000) }
        for r in rules {
            let hit: (Int) -> Bool = { r.andLater ? $0 >= r.n : $0 == r.n }
            switch r.action {
            case "kill-at" where hit(durableCount):
                kill(getpid(), SIGKILL)
            case "eio-write" where op == .write && hit(c): return EIO
            case "eio-fsync" where op == .fsync && hit(c): return EIO
            case "eio-writeback" where op == .writeback && hit(c): return EIO
            case "enospc-write" where op == .write && hit(c): return ENOSPC
            default: break
            }
        }
        return 0
    }
}

private extension String {
    func trimmingCharacters(in s: String) -> String {
        var out = self
        while let l = out.last, s.contains(l) { out.removeLast() }
        return out
    }
}
