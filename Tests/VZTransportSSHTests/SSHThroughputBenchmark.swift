import Foundation
import Glibc
import Logging
@testable import VZTransportSSH
import XCTest

/// One-way throughput of the SSH transport beside the OpenSSH client on the same sshd, cipher and
/// data. Runs only with VZREPL_SSH_BENCH=1 (in a release build: `swift test -c release
/// -Xswiftc -enable-testing --filter SSHThroughputBenchmark`); numbers go to stdout.
final class SSHThroughputBenchmark: XCTestCase {
    func testThroughputBesideOpenSSH() throws {
        guard ProcessInfo.processInfo.environment["VZREPL_SSH_BENCH"] == "1" else {
            throw XCTSkip("set VZREPL_SSH_BENCH=1 to measure SSH throughput")
        }
        let megabytes = Int(ProcessInfo.processInfo.environment["VZREPL_SSH_BENCH_MB"] ?? "") ?? 1024
        let s = try SSHServerHarness()
        defer { s.stop(); s.removeFiles() }
        let user = String(cString: getpwuid(geteuid()).pointee.pw_name)
        let chunk = [UInt8](repeating: 0x5A, count: 4 << 20)

        // The OpenSSH client reads the same bytes from a file, written before either run.
        let file = s.dir + "/bench.bin"
        _ = FileManager.default.createFile(atPath: file, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        for _ in 0..<(megabytes / 4) { h.write(Data(chunk)) }
        try h.close()
        let t = try SSHTransport.connect(SSHTransport.Options(host: "127.0.0.1", port: s.port, user: user, identityFile: s.userKey,
                                                              hostKeySHA256: s.hostKeyFingerprint, command: "sink"),
                                         logger: Logger(label: "bench"))
        let start = Date()
        for _ in 0..<(megabytes / 4) { try chunk.withUnsafeBytes { try t.write($0) } }
        t.closeWrite()
        var b = [UInt8](repeating: 0, count: 1024)
        _ = try b.withUnsafeMutableBytes { try t.read(into: $0) } // EOF once cat has consumed everything
        let ours = Double(megabytes) * 1.048576 / Date().timeIntervalSince(start)
        let cipher = t.negotiated.cipherClientToServer
        t.close()

        let knownHosts = s.dir + "/kh"
        try (s.knownHostsLine + "\n").write(toFile: knownHosts, atomically: true, encoding: .utf8)
        let sshStart = Date()
        let pid = try SSHServerHarness.spawn("/usr/bin/ssh", ["-F", "/dev/null", "-c", "aes256-ctr", "-m", "hmac-sha2-256", "-i", s.userKey,
                                                              "-p", String(s.port), "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=\(knownHosts)",
                                                              "\(user)@127.0.0.1", "sink"], stdout: "/dev/null", stderr: s.dir + "/ssh.err", stdin: file)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let openssh = Double(megabytes) * 1.048576 / Date().timeIntervalSince(sshStart)
        XCTAssertEqual(status, 0)
        print("SSH one-way \(megabytes) MiB: vzrepl transport (\(cipher), libssh2 \(SSHTransport.library.version)) "
              + String(format: "%.0f MB/s, OpenSSH client (aes256-ctr+hmac-sha2-256) %.0f MB/s, ratio %.2f", ours, openssh, ours / openssh))
    }
}
