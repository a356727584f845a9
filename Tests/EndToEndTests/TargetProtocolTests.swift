import Foundation
import VZCore
import XCTest

/// Hostile or broken input fed straight into `vzrepl-target serve --stdio`: each must end the
/// session with an error frame that names what was wrong, a non-zero exit, no crash, and no
/// change to the replica or anything outside the root.
final class TargetProtocolTests: XCTestCase {
    var h: AgentHarness!
    let bs: UInt32 = 65536
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    func session(_ messages: [Message], rawTail: [UInt8] = []) -> Data {
        var bytes = Array("VZREPL/1 test-client 0\n".utf8)
        for m in messages { bytes += m.encodedFrame() }
        return Data(bytes + rawTail)
    }

    func hello() -> Message { .hello(job: "vm1", sourceVersion: "test") }
    func open(_ disk: String = "disk0", capacity: UInt64 = 1 << 20) -> Message {
        .openDisk(.init(disk: disk, capacity: capacity, blockSize: bs, mode: .differential))
    }

    /// Runs the target on `input`; returns its exit status and the messages it sent.
    func serve(_ input: Data) throws -> (Int32, [Message], String) {
        let r = try AgentHarness.run([AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/t.log",
                                      "--idle-timeout", "10"], stdin: input)
        var out = [UInt8](r.output)
        guard let nl = out.firstIndex(of: 0x0A) else { return (r.status, [], r.stderr) }
        XCTAssertTrue(String(decoding: out[..<nl], as: UTF8.self).hasPrefix("VZREPL/2 vzrepl-target"))
        out.removeFirst(nl + 1)
        var dec = FrameDecoder()
        dec.append(out)
        var messages: [Message] = []
        while let f = try dec.nextFrame() { messages.append(try Message.decode(f)) }
        return (r.status, messages, r.stderr)
    }

    func assertRefused(_ input: Data, kind: String, mentions: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let (status, messages, stderr) = try serve(input)
        XCTAssertNotEqual(status, 0, file: file, line: line)
        guard case let .error(k, message)? = messages.last else {
            return XCTFail("no error frame; got \(messages); stderr \(stderr)", file: file, line: line)
        }
        XCTAssertEqual(k, kind, message, file: file, line: line)
        XCTAssertTrue(message.contains(mentions), "'\(message)' does not mention '\(mentions)'", file: file, line: line)
    }

    func testDiskNameWithDotDotOrSlashIsRefused() throws {
        try assertRefused(session([hello(), open("../escape")]), kind: "pathOutsideRoot", mentions: "..")
        try assertRefused(session([hello(), open("a/b")]), kind: "pathOutsideRoot", mentions: "/")
        try assertRefused(session([.hello(job: "../x", sourceVersion: "t")]), kind: "pathOutsideRoot", mentions: "..")
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.dir + "/escape-flat.vmdk"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.dir + "/x"))
    }

    func testSymlinkedJobDirectoryIsNotFollowed() throws {
        let outside = h.dir + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: h.root + "/vm1", withDestinationPath: outside)
        try assertRefused(session([hello(), open()]), kind: "pathOutsideRoot", mentions: "vm1")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outside), [])
    }

    func testBlockWhoseHashDoesNotMatchIsRefusedAndNothingCommits() throws {
        let data = [UInt8](repeating: 0xAB, count: Int(bs))
        let bad = Message.blockData(.init(offset: 0, rawLength: bs, encoding: .raw, sha256: [UInt8](repeating: 1, count: 32), payload: data))
        try assertRefused(session([hello(), open(), bad, .commitDisk(scannedBytes: 0)]), kind: "hashMismatch", mentions: "offset 0")
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.root + "/vm1/disk0.vzmap"))
    }

    func testExtentOutsideTheDiskIsRefused() throws {
        try assertRefused(session([hello(), open(), .zeroExtent(Extent(offset: 2 << 20, length: UInt64(bs)))]),
                          kind: "protocolViolation", mentions: "outside the disk")
        try assertRefused(session([hello(), open(), .zeroExtent(Extent(offset: UInt64.max - 10, length: 100))]),
                          kind: "protocolViolation", mentions: "outside the disk")
    }

    func testMisalignedBlockIsRefused() throws {
        let data = [UInt8](repeating: 1, count: Int(bs))
        let m = Message.blockData(.init(offset: 512, rawLength: bs, encoding: .raw, sha256: SHA256Bytes.of(data), payload: data))
        try assertRefused(session([hello(), open(), m]), kind: "protocolViolation", mentions: "offset 512")
    }

    func testOversizedFrameLengthIsRefusedWithoutAllocatingIt() throws {
        var header = Frame.header(type: Message.MessageType.blockData.rawValue, length: 0)
        header[4] = 0xFF; header[5] = 0xFF; header[6] = 0xFF; header[7] = 0x7F  // ~2 GiB claimed
        try assertRefused(session([hello(), open()], rawTail: header), kind: "corruptFrame", mentions: "length")
    }

    func testUnknownFrameTypeAndGarbageAreRefused() throws {
        try assertRefused(session([hello()], rawTail: Frame.header(type: 200, length: 0)), kind: "protocolViolation", mentions: "unknown message type")
        try assertRefused(session([hello()], rawTail: Array("GET / HTTP/1.1\r\n\r\n".utf8)), kind: "corruptFrame", mentions: "magic")
    }

    func testLz4BombIsRefused() throws {
        // A tiny lz4 payload that claims to expand far beyond the block: LZ4_decompress_safe into a
        // block-sized buffer fails cleanly.
        let payload: [UInt8] = [0x1F, 0x00, 0x01, 0x00] + [UInt8](repeating: 0xFF, count: 300) + [0x00]
        let m = Message.blockData(.init(offset: 0, rawLength: bs, encoding: .lz4, sha256: [UInt8](repeating: 0, count: 32), payload: payload))
        try assertRefused(session([hello(), open(), m]), kind: "corruptFrame", mentions: "lz4")
    }

    func testConnectionCutMidFrameEndsTheSessionWithoutCommitting() throws {
        let data = [UInt8](repeating: 7, count: Int(bs))
        let frame = Message.blockData(.init(offset: 0, rawLength: bs, encoding: .raw, sha256: SHA256Bytes.of(data), payload: data)).encodedFrame()
        let (status, _, stderr) = try serve(session([hello(), open()], rawTail: Array(frame.prefix(1000))))
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(stderr.contains("middle of frame"), stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.root + "/vm1/disk0.vzmap"))
    }

    func testWrongProtocolVersionIsNamed() throws {
        let r = try AgentHarness.run([AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/t.log"],
                                     stdin: Data("VZREPL/9 future 9\n".utf8))
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("protocol version 9"), r.stderr)
    }
}

/// SHA-256 for test frames, from the `sha256sum` tool (an oracle independent of our OpenSSL wrapper).
enum SHA256Bytes {
    static func of(_ bytes: [UInt8]) -> [UInt8] {
        let path = NSTemporaryDirectory() + "vzrepl-sha-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let hex = (try? AgentHarness.sha256(path)) ?? ""
        var out: [UInt8] = []
        var it = hex.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
        return out
    }
}
