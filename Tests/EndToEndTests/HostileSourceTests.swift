import Foundation
import Glibc
import VZCore
import XCTest

/// A source that is alive but does not do its part — sends only keepalives, trickles a frame,
/// stops reading — must not hold the target (its disk lock, a half-written replica) for longer
/// than the documented deadlines (Docs/protocol.md §4). Each test drives `vzrepl-target serve
/// --stdio` with raw frames written over time through a pipe it keeps open.
final class HostileSourceTests: XCTestCase {
    var h: AgentHarness!
    let bs: UInt32 = 65536
    override func setUpWithError() throws {
        h = try AgentHarness(name)
        signal(SIGPIPE, SIG_IGN)  // the target may close its stdin while we still write
    }
    override func tearDown() { h.cleanUp() }

    /// A running target agent and the source side of its stdio, under the test's control.
    final class Session: @unchecked Sendable {
        let process = Process()
        private let input = Pipe(), output = Pipe()
        private let lock = NSLock()
        private var received = Data()
        private var ended = false
        let started = Date()

        /// `reading: false` never reads the target's stdout (a source that does not read).
        init(_ h: AgentHarness, arguments: [String], reading: Bool = true) throws {
            process.executableURL = URL(fileURLWithPath: AgentHarness.target)
            process.arguments = ["serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/target.log"] + arguments
            process.standardInput = input
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            guard reading else { return }
            Thread { [self] in
                while true {
                    let chunk = output.fileHandleForReading.availableData
                    lock.lock()
                    if chunk.isEmpty { ended = true; lock.unlock(); return }
                    received += chunk
                    lock.unlock()
                }
            }.start()
        }

        deinit {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }

        /// Writes raw bytes; a closed pipe (the target gave up) is not an error here.
        func send(_ bytes: [UInt8]) { try? input.fileHandleForWriting.write(contentsOf: Data(bytes)) }
        func send(_ m: Message) { send(m.encodedFrame()) }

        func hello(disk capacity: UInt64 = 4 << 20, blockSize: UInt32 = 65536) {
            send(Array("VZREPL/2 hostile-source 0\n".utf8))
            send(.hello(job: "vm1", sourceVersion: "hostile"))
            send(.openDisk(.init(disk: "disk0", capacity: capacity, blockSize: blockSize, mode: .differential)))
        }

        var isRunning: Bool { process.isRunning }

        /// The target's frames so far (after its banner).
        var messages: [Message] {
            lock.lock()
            var out = [UInt8](received)
            lock.unlock()
            guard let nl = out.firstIndex(of: 0x0A) else { return [] }
            out.removeFirst(nl + 1)
            var dec = FrameDecoder()
            dec.append(out)
            var ms: [Message] = []
            while let f = try? dec.nextFrame(), let m = try? Message.decode(f) { ms.append(m) }
            return ms
        }

        var lastError: (kind: String, message: String)? {
            for m in messages.reversed() { if case let .error(k, msg) = m { return (k, msg) } }
            return nil
        }

        /// Waits until `condition` holds, at most `timeout` seconds.
        @discardableResult
        func wait(upTo timeout: Double, for condition: () -> Bool) -> Bool {
            let end = Date().addingTimeInterval(timeout)
            while !condition() {
                if Date() > end { return false }
                usleep(20_000)
            }
            return true
        }

        /// Runs `beat` every `interval` seconds while the target runs, at most `timeout` seconds;
        /// returns the target's exit status, or nil if it was still running (then it is killed).
        func keep(_ beat: () -> Void, every interval: Double, upTo timeout: Double) -> Int32? {
            let end = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < end {
                beat()
                usleep(useconds_t(interval * 1e6))
            }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                return nil
            }
            process.waitUntilExit()
            return process.terminationStatus
        }

        func hasMapped() -> Bool { messages.contains { if case .mapChunk = $0 { return true }; return false } }
    }

    var targetLog: String { (try? String(contentsOfFile: h.dir + "/target.log", encoding: .utf8)) ?? "" }

    /// After openDisk, nothing but keepalives: the target gives up after its progress timeout
    /// (2 s here, not the 60 s idle timeout, not never), rolls back, and frees the disk.
    func testASourceThatSendsOnlyKeepalivesIsGivenUpOnAndTheDiskIsFreed() throws {
        let s = try Session(h, arguments: ["--idle-timeout", "60", "--progress-timeout", "2", "--lock-wait", "0.5"])
        s.hello()
        XCTAssertTrue(s.wait(upTo: 10) { s.hasMapped() }, "no map from the target")
        let mapped = Date()
        let status = s.keep({ s.send(.keepalive) }, every: 0.3, upTo: 20)
        let after = Date().timeIntervalSince(mapped)
        XCTAssertNotNil(status, "the target was still waiting after 20 s of keepalives")
        XCTAssertNotEqual(status, 0)
        XCTAssertGreaterThan(after, 1.5, "gave up before its progress timeout")
        XCTAssertLessThan(after, 8, "the progress timeout is 2 s")
        let e = try XCTUnwrap(s.lastError, "no error frame: \(s.messages)")
        XCTAssertEqual(e.kind, "timeout")
        XCTAssertTrue(e.message.contains("no progress"), e.message)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.root + "/vm1/disk0.vzundo"), "not rolled back")

        // The lock is free: a real pass of the same disk goes through.
        let src = h.dir + "/d.raw"
        try AgentHarness.makeImage(src, size: 4 << 20)
        try AgentHarness.write(AgentHarness.randomBytes(1 << 20, seed: 3), to: src, at: 0)
        let r = try h.replicate(try h.writeJob(disks: [("disk0", src)], extraTargetArgs: ["--lock-wait", "0.5"]))
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
    }

    /// A frame whose bytes come one a second keeps the idle timeout happy forever; the frame
    /// timeout (3 s here) ends it.
    func testAFrameTrickledAByteASecondHitsTheFrameTimeout() throws {
        let s = try Session(h, arguments: ["--idle-timeout", "60", "--frame-timeout", "3"])
        s.hello()
        XCTAssertTrue(s.wait(upTo: 10) { s.hasMapped() }, "no map from the target")
        let data = [UInt8](repeating: 0x5A, count: Int(bs))
        var frame = Message.blockData(.init(offset: 0, rawLength: bs, encoding: .raw, sha256: SHA256Bytes.of(data), payload: data)).encodedFrame()[...]
        let start = Date()
        let status = s.keep({ if let b = frame.popFirst() { s.send([b]) } }, every: 1, upTo: 20)
        let after = Date().timeIntervalSince(start)
        XCTAssertNotNil(status, "the target still waited for the frame after 20 s")
        XCTAssertGreaterThan(after, 2.5)
        XCTAssertLessThan(after, 8)
        let e = try XCTUnwrap(s.lastError, "no error frame")
        XCTAssertEqual(e.kind, "timeout")
        XCTAssertTrue(e.message.contains("frame timeout"), e.message)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.root + "/vm1/disk0.vzmap"))
    }

    /// A block that fails its SHA-256 check is reported at once, although the source keeps the
    /// connection busy with keepalives (the decode error is on a worker thread while the
    /// receiving thread waits for the next frame).
    func testABadBlockFollowedByKeepalivesIsReportedAtOnce() throws {
        let s = try Session(h, arguments: ["--idle-timeout", "60", "--progress-timeout", "60"])
        s.hello()
        XCTAssertTrue(s.wait(upTo: 10) { s.hasMapped() }, "no map from the target")
        let data = [UInt8](repeating: 0xAB, count: Int(bs))
        s.send(.blockData(.init(offset: 0, rawLength: bs, encoding: .raw, sha256: [UInt8](repeating: 1, count: 32), payload: data)))
        let sent = Date()
        let status = s.keep({ s.send(.keepalive) }, every: 0.2, upTo: 15)
        let after = Date().timeIntervalSince(sent)
        XCTAssertNotNil(status, "no report within 15 s while keepalives came")
        XCTAssertLessThan(after, 2.5, "the mismatch was not reported at once")
        let e = try XCTUnwrap(s.lastError, "no error frame")
        XCTAssertEqual(e.kind, "hashMismatch", e.message)
        XCTAssertTrue(e.message.contains("offset 0"), e.message)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.root + "/vm1/disk0.vzmap"))
    }

    /// A source that asks for a big disk and never reads the map: the target's write of the map
    /// has a deadline (the idle timeout) like its reads, instead of blocking forever in write().
    func testATargetWhoseSourceNeverReadsTheMapGivesUp() throws {
        // 64 GiB at 1 MiB blocks: 65,536 map entries, 2.1 MiB of frames, far more than a pipe holds.
        let s = try Session(h, arguments: ["--idle-timeout", "2"], reading: false)
        s.hello(disk: 64 << 30, blockSize: 1 << 20)
        let start = Date()
        let status = s.keep({}, every: 0.1, upTo: 20)
        XCTAssertNotNil(status, "the target was still blocked writing its map after 20 s")
        XCTAssertNotEqual(status, 0)
        XCTAssertLessThan(Date().timeIntervalSince(start), 12)
        XCTAssertTrue(targetLog.contains("could be written for 2 s (idle timeout)"), targetLog)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.root + "/vm1/disk0.vzundo"))
    }
}
