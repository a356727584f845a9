import Foundation
import VZCore
import XCTest

/// Hostile or broken input fed straight into `vzrepl-target serve --stdio`: each must end the
/// session with an error frame that names what was wrong, a non-zero exit, no crash, and no
/// change to the replica or anything outside the root.
///
/// "No change" is checked against a real committed replica: every test first seeds vm1/disk0
/// with a real pass (`seedReplica`), then every refusal runs between two snapshots of the whole
/// test directory (`snapshot`: the root, the job directory and the root's parent; every file's
/// SHA-256 from `sha256sum`, size and mode, every directory and symlink), which must be equal.
/// A refused session leaves no new file. The one file whose bytes may change is the disk's
/// `.vzlock`: it exists from the seed (DiskLock.release keeps it) and holds the pid of the last
/// process that took the disk's lock, which every session that opens the disk does
/// (DiskLock.acquire, before it recovers that disk alone; `serve` recovers nothing else at its
/// start); so its presence is compared, its bytes are not.
final class TargetProtocolTests: XCTestCase {
    var h: AgentHarness!
    let bs: UInt32 = 65536
    /// The seeded disk: 16 blocks of 64 KiB. Sessions about frames open it with this geometry, so
    /// the target gets past the open (and reports the seeded map) before it meets the bad frame.
    let capacity: UInt64 = 1 << 20
    var seeded = false

    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    var jobDir: String { h.root + "/vm1" }
    var replica: String { jobDir + "/disk0-flat.vmdk" }

    func session(_ messages: [Message], rawTail: [UInt8] = []) -> Data {
        var bytes = Array("VZREPL/1 test-client 0\n".utf8)
        for m in messages { bytes += m.encodedFrame() }
        return Data(bytes + rawTail)
    }

    func hello() -> Message { .hello(job: "vm1", sourceVersion: "test") }
    func open(_ disk: String = "disk0") -> Message {
        .openDisk(.init(disk: disk, capacity: capacity, blockSize: bs, mode: .differential))
    }

    // MARK: - the seeded replica and the snapshot

    /// A committed replica of vm1/disk0 from a real pass (`vzrepl-source replicate`, exec
    /// transport): random data, with block 5 all zeros so the replica has a hole as well.
    func seedReplica() throws {
        let image = h.dir + "/disk0.img"
        var data = AgentHarness.randomBytes(Int(capacity), seed: 20_261_201)
        data.replaceSubrange(5 * Int(bs)..<6 * Int(bs), with: Data(count: Int(bs)))
        try data.write(to: URL(fileURLWithPath: image))
        let r = try h.replicate(try h.writeJob(disks: [("disk0", image)]))
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(try AgentHarness.filesEqual(image, replica), "the seed did not reproduce the image")
        for name in ["disk0-flat.vmdk", "disk0.vmdk", "disk0.vzmap", "disk0.vzlock"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: jobDir + "/" + name), "the seed left no \(name)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: jobDir + "/disk0.vzundo"))
        seeded = true
    }

    /// Everything under the test directory, by path relative to it: directories and symlinks, and
    /// each file's mode, size and SHA-256. Symlinks are listed, never followed. Left out: `t.log`,
    /// the target's log, which every session appends to; and, unless `lockBytes`, the bytes of a
    /// `.vzlock` (see the class comment).
    func snapshot(lockBytes: Bool = false) throws -> [String: String] {
        var entries: [String: String] = [:]
        var files: [String] = []
        func walk(_ relative: String) throws {
            let dir = relative.isEmpty ? h.dir : h.dir + "/" + relative
            for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
                let rel = relative.isEmpty ? name : relative + "/" + name
                let path = h.dir + "/" + rel
                if rel == "t.log" { continue }
                let a = try FileManager.default.attributesOfItem(atPath: path)  // lstat: a link is not followed
                let mode = String((a[.posixPermissions] as? Int) ?? -1, radix: 8)
                switch a[.type] as? FileAttributeType {
                case .typeDirectory?:
                    entries[rel] = "directory \(mode)"
                    try walk(rel)
                case .typeSymbolicLink?:
                    entries[rel] = "symlink -> \(try FileManager.default.destinationOfSymbolicLink(atPath: path))"
                case .typeRegular? where name.hasSuffix(".vzlock") && !lockBytes:
                    entries[rel] = "file \(mode), a lock (its pid's bytes, and so its size, not compared)"
                case .typeRegular?:
                    entries[rel] = "file \(mode), \((a[.size] as? NSNumber)?.uint64Value ?? 0) bytes"
                    files.append(rel)
                default:
                    entries[rel] = "\(String(describing: a[.type]))"
                }
            }
        }
        try walk("")
        if !files.isEmpty {
            let r = try AgentHarness.run(["/usr/bin/sha256sum"] + files.map { h.dir + "/" + $0 })
            XCTAssertEqual(r.status, 0, r.stderr)
            for line in r.stdout.split(separator: "\n") {
                let hash = String(line.prefix(64))
                let path = String(line.dropFirst(66))
                let rel = String(path.dropFirst(h.dir.count + 1))
                entries[rel, default: "?"] += ", sha256 \(hash)"
            }
        }
        return entries
    }

    /// Runs `body` between two snapshots, which must be equal: what the body's session refused
    /// changed nothing, the seeded replica included.
    func assertNothingChanges(lockBytes: Bool = false, file: StaticString = #filePath, line: UInt = #line,
                              _ body: () throws -> Void) throws {
        XCTAssertTrue(seeded, "seed the replica first: a refusal is checked against a real committed replica", file: file, line: line)
        let before = try snapshot(lockBytes: lockBytes)
        XCTAssertNotNil(before["root/vm1/disk0.vzmap"] ?? before["outside/disk0.vzmap"], "no seeded map in the snapshot", file: file, line: line)
        try body()
        let after = try snapshot(lockBytes: lockBytes)
        for key in Set(before.keys).union(after.keys).sorted() where before[key] != after[key] {
            XCTFail("\(key): before \(before[key] ?? "(absent)"), after \(after[key] ?? "(absent)")", file: file, line: line)
        }
    }

    // MARK: - sessions

    /// Runs the target on `input`; returns its exit status and the messages it sent.
    func serve(_ input: Data) throws -> (Int32, [Message], String) {
        let r = try AgentHarness.run([AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/t.log",
                                      "--idle-timeout", "10"], stdin: input)
        var out = [UInt8](r.output)
        guard let nl = out.firstIndex(of: 0x0A) else { return (r.status, [], r.stderr) }
        XCTAssertTrue(String(decoding: out[..<nl], as: UTF8.self).hasPrefix("VZREPL/3 vzrepl-target"))
        out.removeFirst(nl + 1)
        var dec = FrameDecoder()
        dec.append(out)
        var messages: [Message] = []
        while let f = try dec.nextFrame() { messages.append(try Message.decode(f)) }
        return (r.status, messages, r.stderr)
    }

    /// The session is refused with an error frame of `kind` that mentions `mentions`, and changes
    /// nothing. `pastOpen`: the target first opened the seeded disk and reported its valid map
    /// (generation 1), so the refusal came from the frames after the open.
    func assertRefused(_ input: Data, kind: String, mentions: String, pastOpen: Bool = false, lockBytes: Bool = false,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        try assertNothingChanges(lockBytes: lockBytes, file: file, line: line) {
            let (status, messages, stderr) = try serve(input)
            XCTAssertNotEqual(status, 0, file: file, line: line)
            guard case let .error(k, message)? = messages.last else {
                return XCTFail("no error frame; got \(messages); stderr \(stderr)", file: file, line: line)
            }
            XCTAssertEqual(k, kind, message, file: file, line: line)
            XCTAssertTrue(message.contains(mentions), "'\(message)' does not mention '\(mentions)'", file: file, line: line)
            if pastOpen {
                XCTAssertTrue(messages.contains(.diskState(.init(mapStatus: .valid, generation: 1, entryCount: capacity / UInt64(bs)))),
                              "the target did not open the seeded disk first: \(messages.prefix(3))", file: file, line: line)
            }
        }
    }

    /// Every path under the test directory whose name contains `word`.
    func paths(containing word: String) -> [String] {
        (FileManager.default.subpaths(atPath: h.dir) ?? []).filter { $0.split(separator: "/").contains { $0.contains(word) } }
    }

    // MARK: - names

    func testDiskNameWithDotDotOrSlashIsRefused() throws {
        try seedReplica()
        // Under job vm1, a disk "../escape" would land in the root, "../../escape" in the root's
        // parent, an absolute name wherever it points. (The absolute one cannot point into the
        // test directory: its path is longer than the 64 bytes a name may have, and the test is
        // about the '/', so it points beside it in the temp directory.)
        let absolute = NSTemporaryDirectory() + "vzrepl-escape-\(getpid())"
        XCTAssertLessThanOrEqual(absolute.utf8.count, 64)
        let landings = ["-flat.vmdk", ".vmdk", ".vzmap", ".vzlock", ".vzundo"].map { absolute + $0 }
        defer { for p in landings { try? FileManager.default.removeItem(atPath: p) } }
        try assertRefused(session([hello(), open("../escape")]), kind: "pathOutsideRoot", mentions: "contains '..'")
        try assertRefused(session([hello(), open("../../escape")]), kind: "pathOutsideRoot", mentions: "contains '..'")
        try assertRefused(session([hello(), open(absolute)]), kind: "pathOutsideRoot", mentions: "contains '/'")
        try assertRefused(session([hello(), open("a/b")]), kind: "pathOutsideRoot", mentions: "contains '/'")
        // A job "../escape-job" would be a directory beside the root.
        try assertRefused(session([.hello(job: "../escape-job", sourceVersion: "t")]), kind: "pathOutsideRoot", mentions: "contains '..'")
        for dir in [h.root, jobDir, h.dir] {
            for name in ["escape-flat.vmdk", "escape.vmdk", "escape.vzmap", "escape.vzlock", "escape.vzundo", "escape-job", "a"] {
                XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/" + name), "\(dir)/\(name) exists")
            }
        }
        for p in landings { XCTAssertFalse(FileManager.default.fileExists(atPath: p), "\(p) exists") }
        XCTAssertEqual(paths(containing: "escape"), [], "a traversal left something behind")
    }

    func testSymlinkedJobDirectoryIsNotFollowed() throws {
        // The seeded job directory moved outside the root, and the root's vm1 a symlink to it:
        // the target must refuse to follow it, and must not touch the replica behind it, not
        // even its lock file (so here the lock's bytes are compared too).
        try seedReplica()
        let outside = h.dir + "/outside"
        try FileManager.default.moveItem(atPath: jobDir, toPath: outside)
        try FileManager.default.createSymbolicLink(atPath: jobDir, withDestinationPath: outside)
        try assertRefused(session([hello(), open()]), kind: "pathOutsideRoot", mentions: "vm1", lockBytes: true)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: h.root), ["vm1"])
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: jobDir), outside)
    }

    // MARK: - frames after the open

    func testBlockWhoseHashDoesNotMatchIsRefusedAndNothingCommits() throws {
        try seedReplica()
        // A good block first (other bytes than the seed's, its hash right), then one whose hash is
        // wrong: neither may reach the replica, nor may the map or descriptor change.
        let good = [UInt8](repeating: 0xCD, count: Int(bs))
        let first = Message.blockData(.init(offset: 0, rawLength: bs, encoding: .raw, sha256: SHA256Bytes.of(good), payload: good))
        let data = [UInt8](repeating: 0xAB, count: Int(bs))
        let bad = Message.blockData(.init(offset: UInt64(bs), rawLength: bs, encoding: .raw, sha256: [UInt8](repeating: 1, count: 32),
                                          payload: data))
        try assertRefused(session([hello(), open(), first, bad, .commitDisk(scannedBytes: capacity)]),
                          kind: "hashMismatch", mentions: "offset \(bs)", pastOpen: true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: jobDir + "/disk0.vzundo"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: jobDir + "/vzundo-script"))
    }

    func testExtentOutsideTheDiskIsRefused() throws {
        try seedReplica()
        try assertRefused(session([hello(), open(), .zeroExtent(Extent(offset: 2 << 20, length: UInt64(bs)))]),
                          kind: "protocolViolation", mentions: "outside the disk", pastOpen: true)
        try assertRefused(session([hello(), open(), .zeroExtent(Extent(offset: UInt64.max - 10, length: 100))]),
                          kind: "protocolViolation", mentions: "outside the disk", pastOpen: true)
    }

    func testMisalignedBlockIsRefused() throws {
        try seedReplica()
        let data = [UInt8](repeating: 1, count: Int(bs))
        let m = Message.blockData(.init(offset: 512, rawLength: bs, encoding: .raw, sha256: SHA256Bytes.of(data), payload: data))
        try assertRefused(session([hello(), open(), m]), kind: "protocolViolation", mentions: "offset 512", pastOpen: true)
    }

    func testOversizedFrameLengthIsRefusedWithoutAllocatingIt() throws {
        try seedReplica()
        var header = Frame.header(type: Message.MessageType.blockData.rawValue, length: 0)
        header[4] = 0xFF; header[5] = 0xFF; header[6] = 0xFF; header[7] = 0x7F  // ~2 GiB claimed
        try assertRefused(session([hello(), open()], rawTail: header), kind: "corruptFrame", mentions: "length", pastOpen: true)
    }

    func testUnknownFrameTypeAndGarbageAreRefused() throws {
        try seedReplica()
        try assertRefused(session([hello()], rawTail: Frame.header(type: 200, length: 0)), kind: "protocolViolation", mentions: "unknown message type")
        try assertRefused(session([hello()], rawTail: Array("GET / HTTP/1.1\r\n\r\n".utf8)), kind: "corruptFrame", mentions: "magic")
        try assertRefused(session([hello(), open()], rawTail: Frame.header(type: 200, length: 0)), kind: "protocolViolation",
                          mentions: "unknown message type", pastOpen: true)
    }

    func testLz4BombIsRefused() throws {
        try seedReplica()
        // A tiny lz4 payload that claims to expand far beyond the block: LZ4_decompress_safe into a
        // block-sized buffer fails cleanly.
        let payload: [UInt8] = [0x1F, 0x00, 0x01, 0x00] + [UInt8](repeating: 0xFF, count: 300) + [0x00]
        let m = Message.blockData(.init(offset: 0, rawLength: bs, encoding: .lz4, sha256: [UInt8](repeating: 0, count: 32), payload: payload))
        try assertRefused(session([hello(), open(), m]), kind: "corruptFrame", mentions: "lz4", pastOpen: true)
    }

    func testConnectionCutMidFrameEndsTheSessionWithoutCommitting() throws {
        try seedReplica()
        let good = [UInt8](repeating: 0xCD, count: Int(bs))
        let first = Message.blockData(.init(offset: 0, rawLength: bs, encoding: .raw, sha256: SHA256Bytes.of(good), payload: good))
        let data = [UInt8](repeating: 7, count: Int(bs))
        let frame = Message.blockData(.init(offset: UInt64(bs), rawLength: bs, encoding: .raw, sha256: SHA256Bytes.of(data),
                                            payload: data)).encodedFrame()
        try assertNothingChanges {
            let (status, messages, stderr) = try serve(session([hello(), open(), first], rawTail: Array(frame.prefix(1000))))
            XCTAssertNotEqual(status, 0)
            XCTAssertTrue(stderr.contains("middle of frame"), stderr)
            XCTAssertTrue(messages.contains(.diskState(.init(mapStatus: .valid, generation: 1, entryCount: capacity / UInt64(bs)))),
                          "\(messages.prefix(3))")
        }
    }

    // MARK: - before any frame

    func testWrongProtocolVersionIsNamed() throws {
        try seedReplica()
        try assertNothingChanges {
            let r = try AgentHarness.run([AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/t.log"],
                                         stdin: Data("VZREPL/9 future 9\n".utf8))
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains("protocol version 9"), r.stderr)
        }
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
