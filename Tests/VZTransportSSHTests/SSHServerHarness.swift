import Foundation
import Glibc
import XCTest

/// A real OpenSSH sshd for the transport tests, configured from the repository's own
/// `Appliance/sshd_config.d/vzrepl.conf` and `Appliance/authorized_keys.template` (not copies),
/// listening on 127.0.0.1 on a free high port with test-owned keys in a temp dir, and stopped by
/// its pid.
///
/// What is substituted, and why:
/// - drop-in `HostKey` -> the test's ed25519 host key (the VA's path needs root-owned /etc/ssh);
/// - drop-in `AllowUsers vzrepl` -> the current user, and `PermitRootLogin no` ->
///   `prohibit-password` when that user is root (CI runs as root; still keys only);
/// - template agent path `/usr/lib/vzrepl/vzrepl-target` -> `fake-target`, a shell script that
///   stands in for the agent so these tests do not depend on it: it echoes, sleeps, exits or
///   prints its arguments depending on the command the client asked for ($SSH_ORIGINAL_COMMAND);
/// - template `@ROOT@` -> a temp dir, `@PUBKEY@` -> the test's user key.
/// Around the drop-in the harness adds only what a drop-in never sets: Port, ListenAddress,
/// PidFile, AuthorizedKeysFile (temp dir), `StrictModes no` (temp dirs are not root-only),
/// `UsePAM no` (no PAM stack for a test user) and `LogLevel DEBUG1`: tests read sshd's log
/// (`-E sshd.log`), and DEBUG1 is the level at which sshd names the algorithms it negotiated
/// (`kex: client->server cipher: aes256-ctr MAC: hmac-sha2-256 compression: none`), so the
/// cipher is checked from the server's own word, not only from our transport's report.
final class SSHServerHarness {
    static let agentPathInTemplate = "/usr/lib/vzrepl/vzrepl-target"

    let dir: String
    let port: Int
    let hostKeyFingerprint: String
    let hostPublicKey: String
    let userKey: String
    let root: String
    let configPath: String
    private var pid: pid_t = 0

    /// `overrides`: drop-in keyword -> replacement value (the keyword must exist in the drop-in, so
    /// a renamed setting fails the tests instead of silently testing something else).
    /// `extraLines`: settings the drop-in does not have (e.g. RekeyLimit).
    /// `agentPath`: the real `vzrepl-target` for end-to-end use; nil runs the stand-in script.
    init(overrides: [String: String] = [:], extraLines: [String] = [], agentPath: String? = nil, start: Bool = true) throws {
        dir = try SSHServerHarness.makeTempDir()
        root = dir + "/root"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try SSHServerHarness.keygen(dir + "/host_ed25519", comment: "vzrepl-test-host")
        try SSHServerHarness.keygen(dir + "/user_ed25519", comment: "vzrepl-test-user")
        userKey = dir + "/user_ed25519"
        hostPublicKey = try String(contentsOfFile: dir + "/host_ed25519.pub", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        hostKeyFingerprint = try SSHServerHarness.fingerprint(ofPublicKeyFile: dir + "/host_ed25519.pub")

        let fake = dir + "/fake-target"
        try """
        #!/bin/sh
        # Stand-in for vzrepl-target, chosen by the command the client asked for.
        case "$SSH_ORIGINAL_COMMAND" in
          echo) exec cat ;;
          sink) exec cat >/dev/null ;;
          sleep) exec sleep 30 ;;
          stderr) echo "diagnostic line from the target" >&2; exec cat ;;
          exit3) exit 3 ;;
          *) printf 'forced: %s\\noriginal: %s\\n' "$*" "$SSH_ORIGINAL_COMMAND" ;;
        esac

        """.write(toFile: fake, atomically: true, encoding: .utf8)
        chmod(fake, 0o755)

        let template = try String(contentsOfFile: SSHServerHarness.repoFile("Appliance/authorized_keys.template"), encoding: .utf8)
        guard template.contains(SSHServerHarness.agentPathInTemplate), template.contains("@ROOT@"), template.contains("@PUBKEY@") else {
            throw HarnessError("Appliance/authorized_keys.template lacks \(SSHServerHarness.agentPathInTemplate), @ROOT@ or @PUBKEY@")
        }
        let userPub = try String(contentsOfFile: userKey + ".pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let keys = template.replacingOccurrences(of: SSHServerHarness.agentPathInTemplate, with: agentPath ?? fake)
            .replacingOccurrences(of: "@ROOT@", with: root).replacingOccurrences(of: "@PUBKEY@", with: userPub)
        try keys.write(toFile: dir + "/authorized_keys", atomically: true, encoding: .utf8)

        let user = String(cString: getpwuid(geteuid()).pointee.pw_name)
        var replace = ["HostKey": dir + "/host_ed25519", "AllowUsers": user]
        if geteuid() == 0 { replace["PermitRootLogin"] = "prohibit-password" }
        replace.merge(overrides) { $1 }
        let dropIn = try SSHServerHarness.substitute(
            String(contentsOfFile: SSHServerHarness.repoFile("Appliance/sshd_config.d/vzrepl.conf"), encoding: .utf8), replace)

        port = try SSHServerHarness.freePort()
        configPath = dir + "/sshd_config"
        let config = ["Port \(port)", "ListenAddress 127.0.0.1", "PidFile \(dir)/sshd.pid",
                      "AuthorizedKeysFile \(dir)/authorized_keys", "StrictModes no", "UsePAM no", "LogLevel DEBUG1"]
            + extraLines + ["", dropIn]
        try config.joined(separator: "\n").write(toFile: configPath, atomically: true, encoding: .utf8)
        // sshd's privilege separation needs this directory; Debian creates it at boot only.
        try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        if start { try self.start() }
    }

    deinit { stop() }

    func start() throws {
        pid = try SSHServerHarness.spawn("/usr/sbin/sshd", ["-D", "-E", logPath, "-f", configPath], stdout: "/dev/null",
                                         stderr: dir + "/sshd.stderr")
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let status = SSHServerHarness.reap(pid) {
                pid = 0
                throw HarnessError("sshd exited with status \(status): \(log)\(startupErrors)")
            }
            if SSHServerHarness.portAccepts(port) { return }
            usleep(20_000)
        }
        stop()
        throw HarnessError("sshd did not listen on 127.0.0.1:\(port) within 10 s: \(log)\(startupErrors)")
    }

    /// Stops sshd by its pid (SIGTERM) and waits for it. Sessions it forked end with it.
    func stop() {
        guard pid > 0 else { return }
        kill(pid, SIGTERM)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        pid = 0
    }

    func removeFiles() { try? FileManager.default.removeItem(atPath: dir) }

    var logPath: String { dir + "/sshd.log" }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    /// What sshd printed before its log file was open (a bad config line, say).
    private var startupErrors: String { (try? String(contentsOfFile: dir + "/sshd.stderr", encoding: .utf8)).map { "\n" + $0 } ?? "" }

    // MARK: - what sshd says it negotiated

    /// One direction of one key exchange, as sshd logs it at DEBUG1 (OpenSSH 9.2):
    /// `debug1: kex: client->server cipher: aes256-ctr MAC: hmac-sha2-256 compression: none [preauth]`.
    /// With an AEAD cipher the MAC is `<implicit>`. A rekey logs another pair (without [preauth]).
    struct KexLine: Equatable, CustomStringConvertible {
        var direction: String
        var cipher: String
        var mac: String
        var compression: String
        var description: String { "\(direction) \(cipher) \(mac) \(compression)" }
    }

    static func kexLines(in log: String) -> [KexLine] {
        // sshd ends its lines with \r\n, one Character in Swift: split on newlines, not on "\n".
        log.split(whereSeparator: \.isNewline).compactMap { line -> KexLine? in
            let w = line.split(separator: " ").map(String.init)
            guard let k = w.firstIndex(of: "kex:"), w.count >= k + 8, w[k + 1] == "client->server" || w[k + 1] == "server->client",
                  w[k + 2] == "cipher:", w[k + 4] == "MAC:", w[k + 6] == "compression:" else { return nil }
            return KexLine(direction: w[k + 1], cipher: w[k + 3], mac: w[k + 5], compression: w[k + 7])
        }
    }

    var kexLines: [KexLine] { SSHServerHarness.kexLines(in: log) }

    static let aes256Ciphers: Set<String> = ["aes256-ctr", "aes256-gcm@openssh.com"]

    /// sshd's own log says every key exchange on this server chose AES-256 in both directions
    /// (aes256-ctr or aes256-gcm@openssh.com, nothing else), and there were at least
    /// `minimumKex` of them. sshd writes the lines from its monitor process, so this waits up to
    /// 2 s for them to arrive.
    func assertOnlyAES256(minimumKex: Int = 0, file: StaticString = #filePath, line: UInt = #line) {
        let deadline = Date().addingTimeInterval(2)
        var lines = kexLines
        while Date() < deadline, lines.filter({ $0.direction == "client->server" }).count < minimumKex
                || lines.filter({ $0.direction == "client->server" }).count != lines.filter({ $0.direction == "server->client" }).count {
            usleep(20_000)
            lines = kexLines
        }
        let up = lines.filter { $0.direction == "client->server" }, down = lines.filter { $0.direction == "server->client" }
        XCTAssertGreaterThanOrEqual(up.count, minimumKex, "sshd logged \(up.count) key exchanges, expected at least \(minimumKex):\n\(log)",
                                    file: file, line: line)
        XCTAssertEqual(up.count, down.count, "sshd logged one direction without the other: \(lines)", file: file, line: line)
        for l in lines {
            XCTAssertTrue(SSHServerHarness.aes256Ciphers.contains(l.cipher), "sshd negotiated \(l), not AES-256", file: file, line: line)
        }
    }

    /// The known_hosts line for this server ("[127.0.0.1]:port ssh-ed25519 AAAA...").
    var knownHostsLine: String {
        let parts = hostPublicKey.split(separator: " ")
        return "[127.0.0.1]:\(port) \(parts[0]) \(parts[1])"
    }

    // MARK: - helpers

    static func repoFile(_ relative: String) -> String {
        // Tests/VZTransportSSHTests/SSHServerHarness.swift -> repository root
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(relative).path
    }

    static func makeTempDir() throws -> String {
        var template = Array((NSTemporaryDirectory() + "/vzrepl-sshd-XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { throw HarnessError("mkdtemp failed: \(String(cString: strerror(errno)))") }
        return String(cString: p)
    }

    static func keygen(_ path: String, comment: String) throws {
        let r = try runTool("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])
        guard r.status == 0 else { throw HarnessError("ssh-keygen failed: \(r.stderr)") }
    }

    /// "SHA256:..." as `ssh-keygen -lf` prints it: the independent oracle for fingerprints.
    static func fingerprint(ofPublicKeyFile path: String) throws -> String {
        let r = try runTool("/usr/bin/ssh-keygen", ["-lf", path])
        let fields = r.stdout.split(separator: " ")
        guard r.status == 0, fields.count >= 2 else { throw HarnessError("ssh-keygen -lf \(path): \(r.stderr)") }
        return String(fields[1])
    }

    static func substitute(_ text: String, _ replace: [String: String]) throws -> String {
        var found = Set<String>()
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            let keyword = line.split(separator: " ", maxSplits: 1).first.map(String.init) ?? ""
            guard !line.hasPrefix("#"), let key = replace.keys.first(where: { $0.caseInsensitiveCompare(keyword) == .orderedSame }) else {
                return String(line)
            }
            found.insert(key)
            return "\(keyword) \(replace[key]!)"
        }
        let missing = Set(replace.keys).subtracting(found)
        guard missing.isEmpty else { throw HarnessError("the Appliance sshd drop-in has no \(missing.sorted()) line to replace") }
        return lines.joined(separator: "\n")
    }

    /// A TCP port on 127.0.0.1 that nothing listens on right now.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw HarnessError("cannot find a free port: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    static func portAccepts(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    struct ToolResult { var status: Int32; var stdout: String; var stderr: String }

    /// posix_spawn rather than Foundation's Process: with sshd running as one long-lived child,
    /// Process's reaper blocked in wait4() on sshd and never saw the short-lived tools exit.
    static func spawn(_ path: String, _ args: [String], stdout: String, stderr: String, stdin: String = "/dev/null") throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
        guard rc == 0 else { throw HarnessError("cannot start \(path): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// The exit status if `pid` has ended (reaping it), nil while it runs.
    static func reap(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        guard r == pid else { return nil }
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// Runs a tool to completion with a hard time limit, capturing its output in files.
    static func runTool(_ path: String, _ args: [String], timeout: Double = 20) throws -> ToolResult {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pid = try spawn(path, args, stdout: dir + "/out", stderr: dir + "/err")
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32?
        while status == nil {
            status = reap(pid)
            if status == nil {
                if Date() > deadline {
                    kill(pid, SIGKILL)
                    _ = waitpid(pid, nil, 0)
                    throw HarnessError("\(path) \(args) did not finish within \(timeout) s")
                }
                usleep(5_000)
            }
        }
        let read = { (f: String) in (try? String(contentsOfFile: dir + "/" + f, encoding: .utf8)) ?? "" }
        return ToolResult(status: status!, stdout: read("out"), stderr: read("err"))
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
