import XCTest
@testable import VZSource

/// The terminal's progress line (what `replicate` shows a person instead of JSON): sizes, rates
/// and times in words a person reads at a glance.
final class ProgressDisplayTests: XCTestCase {
    func testSizesAndDurations() {
        XCTAssertEqual(ProgressDisplay.bytes(512), "512 B")
        XCTAssertEqual(ProgressDisplay.bytes(1536), "1.5 KiB")
        XCTAssertEqual(ProgressDisplay.bytes(UInt64(10) << 30), "10.0 GiB")
        XCTAssertEqual(ProgressDisplay.bytes(nil), "?")
        XCTAssertEqual(ProgressDisplay.duration(3.31), "3.3s")
        XCTAssertEqual(ProgressDisplay.duration(42), "42s")
        XCTAssertEqual(ProgressDisplay.duration(105), "1m45s")
        XCTAssertEqual(ProgressDisplay.duration(7300), "2h01m")
    }

    func testProgressLine() {
        let line = ProgressDisplay.progressLine(["disk": "disk0", "phase": "send", "bytesDone": UInt64(1) << 30,
                                                 "bytesTotal": UInt64(10) << 30, "percent": 10.0,
                                                 "bytesPerSecond": UInt64(100) << 20, "etaSeconds": 92])
        XCTAssertEqual(line, "disk0: send 1.0 GiB / 10.0 GiB (10.0%) 100.0 MiB/s ETA 1m32s")
        let waiting = ProgressDisplay.progressLine(["disk": "d", "phase": "waiting-for-lock", "bytesDone": 0, "bytesTotal": 4096,
                                                    "percent": 0.0, "bytesPerSecond": 0, "etaSeconds": NSNull()])
        XCTAssertEqual(waiting, "d: waiting-for-lock 0 B / 4.0 KiB (0.0%)")
        let map = ProgressDisplay.progressLine(["disk": "d", "phase": "map", "bytesDone": 0, "bytesTotal": 4096, "percent": 0.0,
                                                "stepBytesDone": 2048, "stepBytesTotal": 4096, "bytesPerSecond": 1024, "etaSeconds": 2])
        XCTAssertEqual(map, "d: map 0 B / 4.0 KiB (0.0%), target 2.0 KiB / 4.0 KiB 1.0 KiB/s ETA 2s")
    }
}
