import XCTest
@testable import VZCore
import VZTestSupport

typealias SeededRNG = SplitMix64

extension Array where Element == UInt8 {
    static func random<G: RandomNumberGenerator>(count: Int, using rng: inout G) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }
}

/// Asserts that `body` throws a `VZError` of `kind` whose message contains every one of `parts`.
func assertVZError<T>(_ kind: VZError.Kind, containing parts: [String], _ message: String = "",
                      file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T) {
    do {
        let v = try body()
        XCTFail("expected \(kind) error containing \(parts), got a value: \(v) \(message)", file: file, line: line)
    } catch let e as VZError {
        XCTAssertEqual(e.kind, kind, "\(e) \(message)", file: file, line: line)
        for p in parts {
            XCTAssertTrue(e.message.contains(p), "'\(e.message)' does not mention '\(p)' \(message)", file: file, line: line)
        }
    } catch {
        XCTFail("expected VZError, got \(type(of: error)): \(error) \(message)", file: file, line: line)
    }
}

/// One message of every case, with edge values, in a fixed order.
func sampleMessages() -> [Message] {
    var rng = SeededRNG(seed: 42)
    let h1 = SHA256Digest([UInt8].random(count: 32, using: &rng))
    let h2 = SHA256Digest([UInt8].random(count: 32, using: &rng))
    return [
        .hello(job: "vm-101_web.prod", sourceVersion: "0.1.0"),
        .hello(job: "", sourceVersion: "ünïcødé ✓"),
        .helloAck(targetVersion: VZVersion.current),
        .openDisk(.init(disk: "scsi0-0", capacity: 10 << 30, blockSize: 1 << 20, mode: .differential)),
        .openDisk(.init(disk: "d", capacity: UInt64.max, blockSize: UInt32.max, mode: .full)),
        .diskState(.init(mapStatus: .created, generation: 0, entryCount: 0)),
        .diskState(.init(mapStatus: .valid, generation: UInt64.max, entryCount: 2_097_152, note: "")),
        .diskState(.init(mapStatus: .rebuilt, generation: 7, entryCount: 3, note: "map checksum mismatch")),
        .mapChunk(firstIndex: 0, entries: []),
        .mapChunk(firstIndex: UInt64.max - 3, entries: [.zero, .unknown, .data(h1), .data(h2)]),
        .blockData(.init(offset: 1 << 20, rawLength: 300, encoding: .raw, sha256: [UInt8](repeating: 0xAB, count: 32),
                         payload: [UInt8].random(count: 300, using: &rng))),
        .blockData(.init(offset: UInt64.max, rawLength: 1 << 20, encoding: .lz4, sha256: h1.bytes,
                         payload: [UInt8].random(count: 57, using: &rng))),
        .blockData(.init(offset: 0, rawLength: 0, encoding: .raw, sha256: h2.bytes, payload: [])),
        .zeroExtent(Extent(offset: 4096, length: 1 << 40)),
        .commitDisk(scannedBytes: 123_456_789),
        .diskCommitted(.init(generation: 3, changedBytes: 1 << 30, zeroBytes: UInt64.max)),
        .progress(0),
        .progress(UInt64.max),
        .diskSet([.init(name: "disk0", capacity: 10 << 30), .init(name: "d", capacity: 0)]),
        .diskChain([]),
        .diskChain([SourceChainLink(file: "web01-000001.vmdk", cid: 0x0a0b0c0d, parentCID: 0x11223344),
                    SourceChainLink(file: "/mnt/ds2/tpl/base.vmdk", cid: 0x11223344, parentCID: 0xffffffff)]),
        .progress(5, step: WorkStep(.map, done: 1 << 30, total: 1 << 40)),
        .progress(0, step: WorkStep(.waitingForLock)),
        .openDisk(.init(disk: "d0", capacity: 1 << 30, blockSize: 1 << 20, mode: .differential, readOnly: true)),
        .bye,
        .error(kind: VZError.Kind.noSpace.rawValue, message: "write at offset 42: No space left on device (errno 28)"),
        .error(kind: "", message: ""),
        .keepalive,
    ]
}

/// Runs `body` on its own thread and fails (instead of hanging the suite) if it does not finish
/// within `seconds`.
func withTimeout(_ seconds: Double, file: StaticString = #filePath, line: UInt = #line, _ body: @escaping () throws -> Void) {
    let done = DispatchSemaphore(value: 0)
    let t = Thread {
        do { try body() } catch { XCTFail("threw \(error)", file: file, line: line) }
        done.signal()
    }
    t.start()
    if done.wait(timeout: .now() + seconds) == .timedOut {
        XCTFail("did not finish within \(seconds) s (hang)", file: file, line: line)
    }
}
