import XCTest
@testable import VZCore

/// The protocol-version-3 additions against bytes written by hand from Docs/protocol.md §3: the
/// step at the end of `progress`, the flags byte at the end of `openDisk`. Both are trailing and
/// sent only when there is something to say, so a version-2 frame is unchanged.
final class ProtocolV3MessageTests: XCTestCase {
    private func decode(_ bytes: [UInt8]) throws -> Message {
        var d = FrameDecoder()
        d.append(bytes)
        return try Message.decode(try XCTUnwrap(d.nextFrame()), frameNumber: 3)
    }

    func testProgressWithAStepIsTheDocumentedBytes() throws {
        let m = Message.progress(5_000_000, step: WorkStep(.map, done: 0x1000, total: 0x4000_0000))
        let bytes: [UInt8] = [0x56, 0x5A, 13, 0, 25, 0, 0, 0,
                              0x40, 0x4B, 0x4C, 0, 0, 0, 0, 0,   // count 5 000 000
                              2,                                  // phase map
                              0x00, 0x10, 0, 0, 0, 0, 0, 0,      // done 4096
                              0, 0, 0, 0x40, 0, 0, 0, 0]         // total 1 GiB
        XCTAssertEqual(m.encodedFrame(), bytes)
        XCTAssertEqual(try decode(bytes), m)
    }

    func testProgressWithoutAStepIsStillTheVersion2Frame() {
        XCTAssertEqual(Message.progress(1).encodedFrame().count, 16)
        XCTAssertEqual(Message.progress(1, step: nil), .progress(1))
    }

    func testEveryPhaseRoundTripsAndAnUnknownOneIsRefused() throws {
        for p in WorkStep.Phase.allCases {
            let m = Message.progress(9, step: WorkStep(p, done: 1, total: 2))
            XCTAssertEqual(try decode(m.encodedFrame()), m)
        }
        var bytes = Message.progress(9, step: WorkStep(.commit)).encodedFrame()
        bytes[16] = 6
        XCTAssertThrowsError(try decode(bytes)) { e in
            XCTAssertEqual((e as? VZError)?.kind, .protocolViolation)
            XCTAssertTrue("\(e)".contains("phase") && "\(e)".contains("frame #3"), "\(e)")
        }
        XCTAssertEqual(WorkStep.Phase.waitingForLock.name, "waiting-for-lock")
    }

    func testReadOnlyOpenDiskIsTheVersion2FrameAndOneFlagsByte() throws {
        let plain = Message.OpenDisk(disk: "d", capacity: 1 << 20, blockSize: 65536, mode: .differential)
        var ro = plain
        ro.readOnly = true
        let a = Message.openDisk(plain).encodedFrame(), b = Message.openDisk(ro).encodedFrame()
        XCTAssertEqual(b.count, a.count + 1)
        XCTAssertEqual(Array(b[8...].dropLast()), Array(a[8...]))
        XCTAssertEqual(b.last, 1)
        XCTAssertEqual(b[4], a[4] + 1, "the length field")
        XCTAssertEqual(try decode(b), .openDisk(ro))
        XCTAssertEqual(try decode(a), .openDisk(plain))
        // Flags 0 is a plain openDisk; an unknown bit is refused naming the field.
        var zero = a
        zero.append(0)
        zero[4] += 1
        XCTAssertEqual(try decode(zero), .openDisk(plain))
        var unknown = b
        unknown[unknown.count - 1] = 3
        XCTAssertThrowsError(try decode(unknown)) { e in XCTAssertTrue("\(e)".contains("flags"), "\(e)") }
    }
}
