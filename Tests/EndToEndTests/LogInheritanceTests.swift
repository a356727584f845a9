import Foundation
import XCTest

/// The source's log file is opened close-on-exec: the target agent it spawns (exec transport)
/// must not inherit it (it would hold the file open and could write into the source's log).
final class LogInheritanceTests: XCTestCase {
    func testTheExecTargetDoesNotInheritTheSourceLog() throws {
        let h = try AgentHarness(name)
        defer { h.cleanUp() }
        let src = h.dir + "/d.raw"
        try AgentHarness.makeImage(src, size: 1 << 20)
        let fds = h.dir + "/child-fds.txt"
        let command = ["/bin/sh", "-c", "ls -l /proc/self/fd/ > '\(fds)'; exec \"$@\"", "sh",
                       AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/target.log"]
        let obj: [String: Any] = ["job": "vm1", "blockSize": 65536, "target": ["transport": "exec", "command": command],
                                  "disks": [["name": "disk0", "source": src]]]
        let job = h.dir + "/job.json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: job))
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stdout)
        let listing = try String(contentsOfFile: fds, encoding: .utf8)
        XCTAssertTrue(listing.contains("/proc/") || listing.contains("pipe:"), listing)  // the listing is real
        XCTAssertFalse(listing.contains("source.log"), "the child inherited the source's log file:\n\(listing)")
    }
}
