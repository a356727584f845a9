import Foundation
import XCTest
@testable import VZCore

private struct WorkerFailure: Error {}

/// The `progress` message (protocol version 2) against bytes written by hand from
/// Docs/protocol.md §3, and the pipeline's interruption of a producer that waits outside it.
final class ProgressAndInterruptTests: XCTestCase {
    func testProgressFrameIsTheDocumentedBytes() throws {
        let bytes = Message.progress(0x0102_0304_0506_0708).encodedFrame()
        XCTAssertEqual(bytes, [0x56, 0x5A, 13, 0, 8, 0, 0, 0, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01])
        var d = FrameDecoder()
        d.append(bytes)
        XCTAssertEqual(try Message.decode(try XCTUnwrap(d.nextFrame())), .progress(0x0102_0304_0506_0708))
    }

    func testProgressWithAShortOrLongPayloadIsRefused() {
        for payload in [[UInt8](repeating: 1, count: 7), [UInt8](repeating: 1, count: 9), []] {
            XCTAssertThrowsError(try Message.decode(Frame(type: 13, payload: payload), frameNumber: 5)) { e in
                XCTAssertEqual((e as? VZError)?.kind, .protocolViolation, "\(payload.count) bytes: \(e)")
                XCTAssertTrue("\(e)".contains("frame #5"), "\(e)")
            }
        }
    }

    func testProgressCounterOnlyGrows() {
        let c = ProgressCounter()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in for _ in 0..<1000 { c.add(3) } }
        XCTAssertEqual(c.value, 24_000)
    }

    /// The target's case: the producer waits for the next frame (here a semaphore nobody signals)
    /// when a worker's check fails. `run` must report the worker's error now, by interrupting the
    /// producer, not whenever the producer's wait would have ended.
    func testAWorkerFailureInterruptsAProducerThatWaitsOutsideThePipeline() {
        withTimeout(10) {
            let networkWait = DispatchSemaphore(value: 0)
            let p = OrderedPipeline<Int, Int>(workers: 2, depth: 4) { i in
                if i == 1 { throw WorkerFailure() }
                return i
            }
            var interrupted = false
            let start = Date()
            XCTAssertThrowsError(try p.run(produce: { submit in
                try submit(0)
                try submit(1)
                // Blocks like a read from a peer that only sends keepalives.
                if networkWait.wait(timeout: .now() + 60) == .success { throw CancellationError() }
            }, consume: { _ in }, interruptProducer: {
                interrupted = true
                networkWait.signal()
            })) { XCTAssertTrue($0 is WorkerFailure, "\($0)") }
            XCTAssertTrue(interrupted)
            XCTAssertLessThan(Date().timeIntervalSince(start), 2)
        }
    }

    /// A producer that finished is not interrupted.
    func testAFinishedProducerIsNotInterrupted() throws {
        let p = OrderedPipeline<Int, Int>(workers: 2, depth: 4) { $0 }
        var interrupted = false
        var out: [Int] = []
        try p.run(produce: { submit in for i in 0..<10 { try submit(i) } }, consume: { out.append($0) },
                  interruptProducer: { interrupted = true })
        XCTAssertEqual(out, Array(0..<10))
        XCTAssertFalse(interrupted)
    }
}
