import VZTestSupport
import XCTest
@testable import VZCore

/// The bandwidth limit's bucket on a simulated clock: a sender that writes as soon as the bucket
/// lets it never exceeds the rate by more than 10 % over any 10-second window, whatever it sends
/// (small frames, 8 MiB blocks cut into chunks, idle gaps), and is not held far below it either.
final class TokenBucketTests: XCTestCase {
    /// Runs a greedy sender for `seconds` of simulated time and returns the (time, bytes) of every write.
    private func simulate(rate: UInt64, seconds: Double, seed: UInt64, idleGaps: Bool) -> [(Double, Int)] {
        var bucket = TokenBucket(bytesPerSecond: rate)
        var rng = SplitMix64(seed: seed)
        var now = 0.0
        var writes: [(Double, Int)] = []
        while now < seconds {
            // A frame: a keepalive-sized one, a compressed block, or a whole 8 MiB block.
            let sizes = [8, 17, 4096, 70_000, 1 << 20, 8 << 20 + 45]
            let frame = sizes[Int(rng.next() % UInt64(sizes.count))]
            var left = frame
            while left > 0 {
                let n = min(left, bucket.chunkSize)
                now += bucket.take(n, at: now)
                writes.append((now, n))
                // Writing itself takes a little time.
                now += Double(n) / 1e9
                left -= n
            }
            if idleGaps && rng.next() % 5 == 0 { now += Double(rng.next() % 3000) / 1000 }
        }
        return writes
    }

    /// The most bytes written within any `window`-second interval.
    private func maxInWindow(_ writes: [(Double, Int)], window: Double) -> Int {
        var best = 0, sum = 0, lo = 0
        for hi in writes.indices {
            sum += writes[hi].1
            while writes[hi].0 - writes[lo].0 > window { sum -= writes[lo].1; lo += 1 }
            best = max(best, sum)
        }
        return best
    }

    func testNoTenSecondWindowExceedsTheRateByMoreThanTenPercent() {
        for rate: UInt64 in [65536, 1 << 20, 4 << 20, 12_500_000, 100 << 20] {
            for seed: UInt64 in 1...4 {
                for gaps in [false, true] {
                    let writes = simulate(rate: rate, seconds: 60, seed: seed, idleGaps: gaps)
                    let worst = maxInWindow(writes, window: 10)
                    XCTAssertLessThanOrEqual(Double(worst), 1.1 * Double(rate) * 10, "rate \(rate) seed \(seed) gaps \(gaps)")
                }
            }
        }
    }

    func testAGreedySenderGetsTheRate() {
        for rate: UInt64 in [65536, 4 << 20, 100 << 20] {
            let writes = simulate(rate: rate, seconds: 30, seed: 9, idleGaps: false)
            let total = writes.reduce(0) { $0 + $1.1 }
            let span = writes.last!.0
            XCTAssertGreaterThan(Double(total) / span, 0.95 * Double(rate), "rate \(rate)")
            XCTAssertLessThan(Double(total) / span, 1.05 * Double(rate), "rate \(rate)")
        }
    }

    func testStartsEmptyAndBurstIsBounded() {
        var b = TokenBucket(bytesPerSecond: 1000, burstSeconds: 0.25)
        // Empty at first: a write waits for its bytes.
        XCTAssertEqual(b.take(500, at: 0), 0.5, accuracy: 1e-9)
        // After a long idle time only 250 bytes of credit are there.
        XCTAssertEqual(b.take(250, at: 100), 0, accuracy: 1e-9)
        XCTAssertEqual(b.take(100, at: 100), 0.1, accuracy: 1e-9)
        // A clock that goes backwards gives no credit.
        XCTAssertEqual(b.take(100, at: 50), 0.2, accuracy: 1e-9)
    }

    func testChunkSizeIsAFractionOfTheRate() {
        XCTAssertEqual(TokenBucket(bytesPerSecond: 65536).chunkSize, 2048)
        XCTAssertEqual(TokenBucket(bytesPerSecond: 1024).chunkSize, 1024)
        XCTAssertEqual(TokenBucket(bytesPerSecond: 1 << 40).chunkSize, 256 * 1024)
    }
}
