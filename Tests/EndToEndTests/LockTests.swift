import Foundation
import VZCore
import XCTest

/// Two sessions never write one replica: a second session is refused while the first (even a
/// stopped one) holds the disk.
final class LockTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    func testSecondSessionIsRefusedWhileTheFirstHoldsTheDiskEvenWhenStopped() throws {
        let src = h.dir + "/d.raw"
        try AgentHarness.makeImage(src, size: 4 << 20)
        try AgentHarness.write(AgentHarness.randomBytes(1 << 20, seed: 5), to: src, at: 0)
        let job = try h.writeJob(disks: [("disk0", src)], extraTargetArgs: ["--lock-wait", "0.5"])

        // A first session that opens the disk and then just stays there.
        let first = Process()
        first.executableURL = URL(fileURLWithPath: AgentHarness.target)
        first.arguments = ["serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/first.log", "--idle-timeout", "60"]
        let input = Pipe(), output = Pipe()
        first.standardInput = input
        first.standardOutput = output
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { kill(first.processIdentifier, SIGKILL); first.waitUntilExit() }
        var hello = Array("VZREPL/1 test 0\n".utf8)
        hello += Message.hello(job: "vm1", sourceVersion: "test").encodedFrame()
        hello += Message.openDisk(.init(disk: "disk0", capacity: 4 << 20, blockSize: 65536, mode: .differential)).encodedFrame()
        input.fileHandleForWriting.write(Data(hello))
        // Wait until it answered with the disk state: by then it holds the lock.
        var received = Data()
        while !received.contains(Message.MessageType.diskState.rawValue) || received.count < 64 {
            let chunk = output.fileHandleForReading.availableData
            XCTAssertFalse(chunk.isEmpty, "the first session ended early")
            if chunk.isEmpty { return }
            received += chunk
        }

        let second = try h.replicate(job)
        XCTAssertEqual(second.status, 5, second.stdout)
        XCTAssertEqual(second.events("error").first?["kind"] as? String, "locked", second.stdout)

        kill(first.processIdentifier, SIGSTOP)
        let third = try h.replicate(job)
        XCTAssertEqual(third.status, 5)
        XCTAssertTrue((third.events("error").first?["message"] as? String ?? "").contains("stopped"), third.stdout)

        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let fourth = try h.replicate(job)
        XCTAssertEqual(fourth.status, 0, fourth.stdout + fourth.stderr)
        XCTAssertTrue(try AgentHarness.filesEqual(src, "\(h.root)/vm1/disk0-flat.vmdk"))
    }
}
