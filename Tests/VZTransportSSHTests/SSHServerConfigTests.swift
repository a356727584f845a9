import Foundation
import Glibc
import XCTest

/// The Appliance sshd configuration itself, checked with OpenSSH's own tools: `sshd -t`/`-T`
/// and the system `ssh` client doing what the source must never be allowed to do.
final class SSHServerConfigTests: XCTestCase {
    var server: SSHServerHarness?

    override func tearDown() {
        server?.stop()
        server?.removeFiles()
        server = nil
        super.tearDown()
    }

    func start(overrides: [String: String] = [:]) throws -> SSHServerHarness {
        let s = try SSHServerHarness(overrides: overrides)
        server = s
        return s
    }

    /// The system ssh client with only this test's identity and known_hosts.
    func ssh(_ s: SSHServerHarness, _ extra: [String], command: [String] = []) throws -> SSHServerHarness.ToolResult {
        let knownHosts = s.dir + "/client_known_hosts"
        try (s.knownHostsLine + "\n").write(toFile: knownHosts, atomically: true, encoding: .utf8)
        let user = String(cString: getpwuid(geteuid()).pointee.pw_name)
        let args = ["-F", "/dev/null", "-i", s.userKey, "-p", String(s.port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                    "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=\(knownHosts)", "-o", "ConnectTimeout=5"]
            + extra + ["\(user)@127.0.0.1"] + command
        return try SSHServerHarness.runTool("/usr/bin/ssh", args, timeout: 15)
    }

    func testSshdAcceptsTheApplianceConfigAsShipped() throws {
        // The drop-in verbatim, except its HostKey (the VA's lives in root-owned /etc/ssh).
        let s = try SSHServerHarness(start: false)
        server = s
        let dropIn = try SSHServerHarness.substitute(
            String(contentsOfFile: SSHServerHarness.repoFile("Appliance/sshd_config.d/vzrepl.conf"), encoding: .utf8),
            ["HostKey": s.dir + "/host_ed25519"])
        let conf = s.dir + "/shipped.conf"
        try dropIn.write(toFile: conf, atomically: true, encoding: .utf8)
        let t = try SSHServerHarness.runTool("/usr/sbin/sshd", ["-t", "-f", conf])
        XCTAssertEqual(t.status, 0, t.stderr)
        let effective = try SSHServerHarness.runTool("/usr/sbin/sshd", ["-T", "-f", conf, "-C", "user=vzrepl,host=source,addr=192.0.2.1"])
        XCTAssertEqual(effective.status, 0, effective.stderr)
        for expected in ["ciphers aes256-gcm@openssh.com,aes256-ctr", "hostkeyalgorithms ssh-ed25519",
                         "passwordauthentication no", "kbdinteractiveauthentication no", "permitrootlogin no",
                         "allowusers vzrepl", "allowtcpforwarding no", "x11forwarding no", "permittty no",
                         "allowagentforwarding no", "permittunnel no", "clientaliveinterval 15", "clientalivecountmax 3"] {
            XCTAssertTrue(effective.stdout.contains(expected + "\n"), "sshd -T lacks '\(expected)'")
        }
        // And the harness's full config (what every other test runs) passes too.
        XCTAssertEqual(try SSHServerHarness.runTool("/usr/sbin/sshd", ["-t", "-f", s.configPath]).status, 0)
    }

    func testAClientOfferingOnlyAES128IsRefused() throws {
        let s = try start()
        let refused = try ssh(s, ["-c", "aes128-ctr"], command: ["echo"])
        XCTAssertEqual(refused.status, 255, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("no matching cipher found"), refused.stderr)
        // The control: the same client with AES-256 gets in (to the forced command).
        let allowed = try ssh(s, ["-c", "aes256-ctr"], command: ["whoami"])
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        XCTAssertTrue(allowed.stdout.hasPrefix("forced: serve --stdio --root \(s.root)"), allowed.stdout)
    }

    func testPortForwardingIsRefused() throws {
        let s = try start()
        // -W asks for a direct-tcpip channel to sshd's own (open) port: only policy can refuse it.
        let r = try ssh(s, ["-W", "127.0.0.1:\(s.port)"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("administratively prohibited") || r.stderr.contains("open failed"), r.stderr)
        XCTAssertFalse(r.stdout.contains("SSH-2.0-OpenSSH"), "the forwarded connection reached sshd")
    }

    func testAShellOrAnotherCommandGetsOnlyTheForcedCommand() throws {
        let s = try start()
        let shell = try ssh(s, ["-T"])
        XCTAssertEqual(shell.stdout, "forced: serve --stdio --root \(s.root) --log-dir /var/log/vzrepl --log-max-mib 0\noriginal: \n", shell.stderr)
        let other = try ssh(s, [], command: ["cat", "/etc/passwd"])
        XCTAssertEqual(other.stdout, "forced: serve --stdio --root \(s.root) --log-dir /var/log/vzrepl --log-max-mib 0\noriginal: cat /etc/passwd\n", other.stderr)
        let tty = try ssh(s, ["-tt"], command: ["id"])
        XCTAssertFalse(tty.stdout.contains("uid="), tty.stdout)
    }
}
