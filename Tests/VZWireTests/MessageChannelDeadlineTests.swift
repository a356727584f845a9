import Foundation
import VZCore
import XCTest
@testable import VZWire

/// A `ByteStream` that plays a script: bytes, pauses (real time, short), end of stream. A read
/// whose timeout ends inside a pause returns nil and leaves the rest of the pause for later.
final class ScriptedStream: ByteStream, @unchecked Sendable {
    enum Step { case bytes([UInt8]), pause(Double), end }
    private let lock = NSLock()
    private var steps: [Step]
    private(set) var written: [UInt8] = []
    var writable = true
    var failWrites = false

    init(_ steps: [Step]) { self.steps = steps }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try read(into: buffer, timeout: nil) ?? 0 }

    func read(into buffer: UnsafeMutableRawBufferPointer, timeout: Double?) throws -> Int? {
        while true {
            guard let step = steps.first else {
                // Silence: what the idle timeout would end.
                usleep(useconds_t((timeout ?? 5) * 1e6))
                if timeout != nil { return nil }
                throw VZError(.timeout, "scripted idle timeout")
            }
            switch step {
            case let .pause(s):
                if let t = timeout, t < s {
                    usleep(useconds_t(max(0, t) * 1e6))
                    steps[0] = .pause(s - max(0, t))
                    return nil
                }
                usleep(useconds_t(s * 1e6))
                steps.removeFirst()
            case let .bytes(b):
                let n = min(b.count, buffer.count)
                buffer.copyBytes(from: b[0..<n])
                if n == b.count { steps.removeFirst() } else { steps[0] = .bytes(Array(b[n...])) }
                return n
            case .end:
                return 0
            }
        }
    }

    func interruptRead() {}
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        lock.lock(); defer { lock.unlock() }
        if failWrites { throw VZError(.connectionLost, "scripted: the peer closed the connection") }
        written += bytes
        writeTimes.append((MessageChannel.now(), bytes.count))
    }
    /// When each write happened and its size.
    private(set) var writeTimes: [(Double, Int)] = []
    func canWriteWithoutBlocking(_ count: Int) -> Bool { lock.lock(); defer { lock.unlock() }; return writable }
    func closeWrite() {}
    func close() {}

    /// The frames we wrote after our banner.
    var writtenMessages: [Message] {
        lock.lock()
        var out = written
        lock.unlock()
        guard let nl = out.firstIndex(of: 0x0A) else { return [] }
        out.removeFirst(nl + 1)
        var d = FrameDecoder()
        d.append(out)
        var ms: [Message] = []
        while let f = try? d.nextFrame(), let m = try? Message.decode(f) { ms.append(m) }
        return ms
    }
}

final class MessageChannelDeadlineTests: XCTestCase {
    func banner(_ version: Int = 2) -> ScriptedStream.Step { .bytes(Array("VZREPL/\(version) peer 0\n".utf8)) }
    func frame(_ m: Message) -> [UInt8] { m.encodedFrame() }
    let bye = Message.bye

    func channel(_ steps: [ScriptedStream.Step], frame: Double? = 10, progress: Double? = 10) throws -> (MessageChannel, ScriptedStream) {
        let s = ScriptedStream(steps)
        let c = MessageChannel(stream: s, peerName: "peer", limits: .init(frameTimeout: frame, progressTimeout: progress))
        _ = try c.exchangeBanners(agent: "test", version: "0")
        return (c, s)
    }

    func assertTimeout(_ c: MessageChannel, containing text: String, within: ClosedRange<Double>,
                       file: StaticString = #filePath, line: UInt = #line) {
        let start = Date()
        XCTAssertThrowsError(try c.receive(), file: file, line: line) { e in
            XCTAssertEqual((e as? VZError)?.kind, .timeout, "\(e)", file: file, line: line)
            XCTAssertTrue("\(e)".contains(text), "\(e)", file: file, line: line)
        }
        let t = Date().timeIntervalSince(start)
        XCTAssertTrue(within.contains(t), "took \(t) s, expected \(within)", file: file, line: line)
    }

    func testAFrameTrickledSlowerThanTheFrameTimeoutFails() throws {
        let bytes = frame(.commitDisk(scannedBytes: 1))
        let trickle = bytes.flatMap { [ScriptedStream.Step.bytes([$0]), .pause(0.1)] }
        let (c, _) = try channel([banner()] + trickle, frame: 0.5)
        assertTimeout(c, containing: "frame timeout", within: 0.4...1.0)
    }

    func testAFrameSplitWithPausesWithinTheFrameTimeoutArrives() throws {
        let bytes = frame(.commitDisk(scannedBytes: 7))
        let (c, _) = try channel([banner(), .bytes(Array(bytes[0..<3])), .pause(0.2), .bytes(Array(bytes[3...])), .end], frame: 0.5)
        XCTAssertEqual(try c.receive(), .commitDisk(scannedBytes: 7))
        XCTAssertNil(try c.receive())
    }

    /// Time we spend not reading is not held against the peer: a frame whose first bytes came
    /// with the previous one, long ago, gets a fresh frame timeout when we ask for it.
    func testTheFrameClockRunsOnlyWhileWeRead() throws {
        let a = frame(.zeroExtent(Extent(offset: 0, length: 1))), b = frame(.commitDisk(scannedBytes: 2))
        let (c, _) = try channel([banner(), .bytes(a + b[0..<3]), .pause(0.2), .bytes(Array(b[3...]))], frame: 0.5)
        XCTAssertEqual(try c.receive(), .zeroExtent(Extent(offset: 0, length: 1)))
        usleep(800_000)
        XCTAssertEqual(try c.receive(), .commitDisk(scannedBytes: 2))
    }

    func testABannerTrickledSlowerThanTheFrameTimeoutFails() {
        let line = Array("VZREPL/2 slow 0\n".utf8).flatMap { [ScriptedStream.Step.bytes([$0]), .pause(0.1)] }
        let c = MessageChannel(stream: ScriptedStream(line), peerName: "peer", limits: .init(frameTimeout: 0.5))
        XCTAssertThrowsError(try c.exchangeBanners(agent: "t", version: "0")) {
            XCTAssertEqual(($0 as? VZError)?.kind, .timeout)
            XCTAssertTrue("\($0)".contains("banner"), "\($0)")
        }
    }

    func testOnlyKeepalivesFailAfterTheProgressTimeout() throws {
        let beats = (0..<40).flatMap { _ in [ScriptedStream.Step.bytes(frame(.keepalive)), .pause(0.05)] }
        let (c, _) = try channel([banner()] + beats + [.bytes(frame(bye))], progress: 0.5)
        assertTimeout(c, containing: "no progress", within: 0.45...1.2)
    }

    func testAProgressCountThatDoesNotGrowIsOnlyAKeepalive() throws {
        let beats = (0..<40).flatMap { _ in [ScriptedStream.Step.bytes(frame(.progress(5))), .pause(0.05)] }
        let (c, _) = try channel([banner()] + beats + [.bytes(frame(bye))], progress: 0.5)
        assertTimeout(c, containing: "no progress", within: 0.45...1.2)
    }

    func testAGrowingProgressCountKeepsTheSessionAlive() throws {
        let beats = (1...30).flatMap { i in [ScriptedStream.Step.bytes(frame(.progress(UInt64(i)))), .pause(0.05)] }
        let (c, _) = try channel([banner()] + beats + [.bytes(frame(bye))], progress: 0.5)
        XCTAssertEqual(try c.receive(), .bye)
    }

    /// A version-1 peer cannot send progress: its keepalives are not held to the limit.
    func testAVersionOnePeerIsNotHeldToTheProgressTimeout() throws {
        let beats = (0..<20).flatMap { _ in [ScriptedStream.Step.bytes(frame(.keepalive)), .pause(0.05)] }
        let (c, s) = try channel([banner(1)] + beats + [.bytes(frame(bye))], progress: 0.3)
        XCTAssertEqual(c.peerProtocolVersion, 1)
        XCTAssertEqual(try c.receive(), .bye)
        // ...and gets no progress frames from our heartbeat.
        let counter = ProgressCounter()
        try c.withHeartbeat(every: 0.02, counting: counter) { _ in
            for _ in 0..<10 { counter.add(1); usleep(20_000) }
        }
        XCTAssertFalse(s.writtenMessages.contains { if case .progress = $0 { return true }; return false })
        XCTAssertTrue(s.writtenMessages.contains(.keepalive))
    }

    func testTheHeartbeatSendsProgressWhileTheCounterGrowsAndKeepalivesWhenItDoesNot() throws {
        let (c, s) = try channel([banner()])
        try c.withHeartbeat(every: 0.05) { beat in
            for _ in 0..<6 { try beat.advance(by: 100); usleep(60_000) }
            usleep(300_000)
        }
        let sent = s.writtenMessages
        let counts = sent.compactMap { m -> UInt64? in if case let .progress(n, _) = m { return n }; return nil }
        XCTAssertGreaterThanOrEqual(counts.count, 3, "\(sent)")
        XCTAssertEqual(counts, counts.sorted(), "counts only grow")
        XCTAssertEqual(Set(counts).count, counts.count, "a count is sent once; after that, keepalives")
        XCTAssertTrue(sent.suffix(2).allSatisfy { $0 == .keepalive }, "\(sent)")
    }

    /// Protocol version 3: while the body is in a step, every beat is a progress frame naming it
    /// (also when the count stands still: a lock wait); a version-2 peer gets no step.
    func testTheHeartbeatCarriesTheStepToAVersionThreePeerOnly() throws {
        let (c, s) = try channel([banner(3)])
        try c.withHeartbeat(every: 0.03) { beat in
            beat.step = WorkStep(.waitingForLock)
            usleep(200_000)
            beat.step = WorkStep(.map, done: 10, total: 100)
            try beat.advance(by: 1)
            usleep(200_000)
        }
        let steps = s.writtenMessages.compactMap { m -> WorkStep? in if case let .progress(_, step?) = m { return step }; return nil }
        XCTAssertGreaterThanOrEqual(steps.filter { $0.phase == .waitingForLock }.count, 3, "\(s.writtenMessages)")
        XCTAssertTrue(steps.contains(WorkStep(.map, done: 10, total: 100)), "\(s.writtenMessages)")
        XCTAssertFalse(s.writtenMessages.contains(.keepalive), "a step is never a bare keepalive: \(s.writtenMessages)")

        let (c2, s2) = try channel([banner(2)])
        try c2.withHeartbeat(every: 0.03) { beat in
            beat.step = WorkStep(.waitingForLock)
            try beat.advance(by: 1)
            usleep(150_000)
        }
        XCTAssertFalse(s2.writtenMessages.contains { if case .progress(_, _?) = $0 { return true }; return false }, "\(s2.writtenMessages)")
        XCTAssertTrue(s2.writtenMessages.contains(.keepalive))
    }

    /// The receiving side keeps the peer's step and tells its listener on every beat.
    func testReceivedStepsReachTheListener() throws {
        let (c, _) = try channel([banner(3), .bytes(frame(.progress(1, step: WorkStep(.recover)))), .bytes(frame(.keepalive)),
                                  .bytes(frame(bye))])
        var heard: [WorkStep?] = []
        c.onPeerBeat = { heard.append($0) }
        XCTAssertEqual(try c.receive(), .bye)
        XCTAssertEqual(heard, [WorkStep(.recover), nil])
        XCTAssertEqual(c.peerStep, WorkStep(.recover))
    }

    /// `bandwidthLimit` at its minimum (64 KiB/s): a 160 KiB block frame takes its time (about
    /// 2.5 s) but bytes keep flowing all along — the peer's idle timeout never sees a silence
    /// longer than a fraction of a second, however large the frame.
    func testALimitedChannelPacesAFrameWithoutLongSilences() throws {
        let (c, s) = try channel([banner(3)])
        let limiter = BandwidthLimiter(bytesPerSecond: 65536)
        c.limiter = limiter
        let before = s.writeTimes.count
        let frame = Message.blockData(.init(offset: 0, rawLength: 160 * 1024, encoding: .raw, sha256: [UInt8](repeating: 1, count: 32),
                                            payload: [UInt8](repeating: 7, count: 160 * 1024)))
        let start = MessageChannel.now()
        try c.send(frame)
        let elapsed = MessageChannel.now() - start
        let writes = Array(s.writeTimes.dropFirst(before))
        XCTAssertEqual(writes.reduce(0) { $0 + $1.1 }, frame.encodedFrame().count)
        XCTAssertEqual(elapsed, Double(160 * 1024) / 65536, accuracy: 0.4, "paced at the rate")
        let gaps = zip(writes, writes.dropFirst()).map { $1.0 - $0.0 }
        XCTAssertLessThan(gaps.max() ?? 0, 0.25, "a silence on the wire")
        XCTAssertLessThanOrEqual(writes.map(\.1).max() ?? 0, limiter.chunkSize)
        XCTAssertEqual(s.writtenMessages.last, frame)
    }

    func testTheHeartbeatSkipsBeatsWhileTheStreamWouldBlock() throws {
        let (c, s) = try channel([banner()])
        s.writable = false
        try c.withHeartbeat(every: 0.02) { _ in usleep(200_000) }
        XCTAssertEqual(s.writtenMessages, [])
    }

    /// A beat that fails (the target died) stops a body that sends nothing by itself.
    func testAFailedBeatStopsTheBodyAtItsNextAdvance() throws {
        let (c, s) = try channel([banner()])
        s.failWrites = true
        let start = Date()
        XCTAssertThrowsError(try c.withHeartbeat(every: 0.05) { beat in
            while Date().timeIntervalSince(start) < 5 { try beat.advance(by: 1); usleep(10_000) }
        }) { XCTAssertEqual(($0 as? VZError)?.kind, .connectionLost, "\($0)") }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1)
    }
}
