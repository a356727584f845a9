import XCTest
@testable import VZCore

/// The rate and ETA of `disk-progress`, fed samples on a made-up clock.
final class ProgressEstimateTests: XCTestCase {
    func testSteadyRateAndETA() {
        var p = ProgressEstimate()
        for t in 0...5 { p.record(UInt64(t) * 1_000_000, at: Double(t)) }
        XCTAssertEqual(p.bytesPerSecond, 1_000_000, accuracy: 1)
        XCTAssertEqual(p.etaSeconds(total: 20_000_000), 15)
        XCTAssertEqual(p.etaSeconds(total: 5_000_000), 0)
        XCTAssertEqual(p.etaSeconds(total: 4_000_000), 0, "already past the total")
    }

    func testUnknownUntilTwoSamplesAndForAStall() {
        var p = ProgressEstimate()
        XCTAssertNil(p.etaSeconds(total: 10))
        p.record(0, at: 0)
        XCTAssertEqual(p.bytesPerSecond, 0)
        XCTAssertNil(p.etaSeconds(total: 10))
        p.record(0, at: 5)
        XCTAssertNil(p.etaSeconds(total: 10), "no progress: no ETA rather than infinity")
    }

    /// The rate follows the last 10 s: a pass that slowed down shows the slow rate.
    func testRateIsOverTheWindow() {
        var p = ProgressEstimate(window: 10)
        var bytes: UInt64 = 0
        for t in 0..<30 { bytes += 10_000_000; p.record(bytes, at: Double(t)) }
        for t in 30..<50 { bytes += 1_000_000; p.record(bytes, at: Double(t)) }
        XCTAssertEqual(p.bytesPerSecond, 1_000_000, accuracy: 1)
        XCTAssertEqual(p.etaSeconds(total: bytes + 60_000_000), 60)
    }

    /// A count that goes down is a new phase: the estimate starts over.
    func testSmallerCountRestarts() {
        var p = ProgressEstimate()
        p.record(0, at: 0); p.record(100, at: 1)
        p.record(10, at: 2)
        XCTAssertEqual(p.bytesPerSecond, 0)
        p.record(60, at: 3)
        XCTAssertEqual(p.bytesPerSecond, 50, accuracy: 1e-9)
    }

    func testReportsAreAtLeastAnIntervalApart() {
        var p = ProgressEstimate(interval: 1)
        var reported: [Double] = []
        for i in 0..<100 {
            let t = Double(i) * 0.07
            if p.shouldReport(at: t) { reported.append(t) }
        }
        XCTAssertEqual(reported.first, 0)
        for (a, b) in zip(reported, reported.dropFirst()) { XCTAssertGreaterThanOrEqual(b - a, 1 - 1e-9) }
        XCTAssertGreaterThanOrEqual(reported.count, 6)
    }
}
