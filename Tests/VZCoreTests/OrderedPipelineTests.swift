import Foundation
import XCTest
@testable import VZCore

private struct TestFailure: Error, Equatable { let site: String }

/// A counter that also records its high-water mark.
private final class Gauge: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    private(set) var peak = 0
    func add(_ d: Int) {
        lock.lock(); value += d; peak = max(peak, value); lock.unlock()
    }
    var current: Int { lock.lock(); defer { lock.unlock() }; return value }
}

final class OrderedPipelineTests: XCTestCase {
    func testPreservesOrderWithRandomDelays() {
        withTimeout(20) {
            var rng = SeededRNG(seed: 31)
            let delays = (0..<400).map { _ in UInt32.random(in: 0...400, using: &rng) }
            let p = OrderedPipeline<Int, Int>(workers: 4, depth: 8) { i in
                usleep(delays[i])
                return i * 2
            }
            var out: [Int] = []
            XCTAssertNoThrow(try p.run(produce: { submit in for i in 0..<400 { try submit(i) } },
                                       consume: { out.append($0) }))
            XCTAssertEqual(out, (0..<400).map { $0 * 2 })
        }
    }

    func testEmptyInput() {
        withTimeout(10) {
            let p = OrderedPipeline<Int, Int>(workers: 2, depth: 4) { $0 }
            var count = 0
            XCTAssertNoThrow(try p.run(produce: { _ in }, consume: { _ in count += 1 }))
            XCTAssertEqual(count, 0)
        }
    }

    /// An item is live from the moment `submit` accepts it until the consumer has finished with
    /// it. With a slow consumer the producer would run far ahead; the pipeline must hold it at
    /// `depth`. (The gauge is raised after `submit` returns and lowered inside `consume`, so it
    /// can only under-count, never over-count, the items in flight.)
    func testBoundsItemsInFlight() {
        withTimeout(20) {
            let depth = 6
            let live = Gauge(), transforming = Gauge()
            let p = OrderedPipeline<Int, Int>(workers: 3, depth: depth) { i in
                transforming.add(1)
                usleep(UInt32(i % 3) * 200)
                transforming.add(-1)
                return i
            }
            var out: [Int] = []
            XCTAssertNoThrow(try p.run(produce: { submit in
                for i in 0..<200 { try submit(i); live.add(1) }
            }, consume: { v in
                usleep(500)
                live.add(-1)
                out.append(v)
            }))
            XCTAssertEqual(out, Array(0..<200))
            XCTAssertLessThanOrEqual(live.peak, depth, "more than depth items in flight")
            XCTAssertGreaterThanOrEqual(live.peak, depth - 1, "the producer never ran ahead: the bound was not exercised")
            XCTAssertLessThanOrEqual(transforming.peak, 3, "more transforms at once than workers")
            XCTAssertEqual(live.current, 0)
        }
    }

    /// Items that workers have started but the consumer has not yet taken are also bounded.
    func testBoundsStartedButUnconsumedItems() {
        withTimeout(20) {
            let depth = 5
            let started = Gauge()
            let p = OrderedPipeline<Int, Int>(workers: 4, depth: depth) { i in started.add(1); return i }
            XCTAssertNoThrow(try p.run(produce: { submit in for i in 0..<300 { try submit(i) } },
                                       consume: { _ in usleep(300); started.add(-1) }))
            XCTAssertLessThanOrEqual(started.peak, depth)
        }
    }

    func testProducerErrorPropagatesAndStops() {
        withTimeout(10) {
            let p = OrderedPipeline<Int, Int>(workers: 2, depth: 4) { $0 }
            var consumed: [Int] = []
            XCTAssertThrowsError(try p.run(produce: { submit in
                for i in 0..<10 { try submit(i) }
                throw TestFailure(site: "producer")
            }, consume: { consumed.append($0) })) { e in
                XCTAssertEqual(e as? TestFailure, TestFailure(site: "producer"))
            }
            // What was consumed is an in-order prefix of what was produced.
            XCTAssertEqual(consumed, Array(0..<consumed.count))
        }
    }

    func testWorkerErrorPropagatesAndStopsAnEndlessProducer() {
        withTimeout(10) {
            let p = OrderedPipeline<Int, Int>(workers: 3, depth: 6) { i in
                if i == 50 { throw TestFailure(site: "worker") }
                return i
            }
            var consumed: [Int] = []
            XCTAssertThrowsError(try p.run(produce: { submit in
                var i = 0
                while true { try submit(i); i += 1 }  // only a throwing submit ends this
            }, consume: { consumed.append($0) })) { e in
                XCTAssertEqual(e as? TestFailure, TestFailure(site: "worker"))
            }
            XCTAssertFalse(consumed.contains(50))
            XCTAssertEqual(consumed, Array(0..<consumed.count))
        }
    }

    func testConsumerErrorPropagatesAndStopsAnEndlessProducer() {
        withTimeout(10) {
            let transformed = Gauge()
            let p = OrderedPipeline<Int, Int>(workers: 2, depth: 4) { i in transformed.add(1); return i }
            var consumed = 0
            XCTAssertThrowsError(try p.run(produce: { submit in
                var i = 0
                while true { try submit(i); i += 1 }
            }, consume: { v in
                if v == 20 { throw TestFailure(site: "consumer") }
                consumed += 1
            })) { e in
                XCTAssertEqual(e as? TestFailure, TestFailure(site: "consumer"))
            }
            XCTAssertEqual(consumed, 20)
            // run has returned: every thread is gone, so nothing more is transformed.
            let after = transformed.current
            usleep(50_000)
            XCTAssertEqual(transformed.current, after)
            XCTAssertLessThanOrEqual(after, 21 + 4, "the pipeline ran far past the failure")
        }
    }

    func testManyRunsDoNotLeakOrHang() {
        withTimeout(30) {
            for round in 0..<100 {
                let p = OrderedPipeline<Int, Int>(workers: 2, depth: 3) { $0 + round }
                var sum = 0
                XCTAssertNoThrow(try p.run(produce: { submit in for i in 0..<20 { try submit(i) } }, consume: { sum += $0 }))
                XCTAssertEqual(sum, 190 + 20 * round)
            }
        }
    }
}
