import VZCore
@testable import VZWire
import XCTest

/// The target's session rules in process (Docs/protocol.md, "Session rules"): every message
/// type in every state, then the particular violations by name, block geometry at the edges, and
/// a whole legal conversation over two disks.
final class TargetSessionStateMachineTests: XCTestCase {
    typealias Machine = TargetSessionStateMachine
    typealias S = SessionFixtures

    /// Every state, reached by a legal conversation from the start, and what it takes.
    static let states: [(name: String, steps: [SessionStep], receives: Set<Message.MessageType>, sends: Set<Message.MessageType>)] = [
        ("awaitingHello", [], [.hello], []),
        ("greeting", [.recv(S.samples[.hello]!)], [], [.helloAck]),
        ("idle before any disk", greeted, [.openDisk, .bye], []),
        ("openingDisk", greeted + [.recv(.openDisk(S.d0))], [], [.diskState]),
        ("sendingMap", greeted + [.recv(.openDisk(S.d0)), .send(S.state(S.d0Blocks)), .send(S.chunk(0, 4096))], [], [.mapChunk]),
        ("receivingBlocks", d0Open, [.blockData, .zeroExtent, .commitDisk], []),
        ("committing", d0Open + [.recv(.commitDisk(scannedBytes: 1))], [], [.diskCommitted]),
        ("idle after a commit", d0Committed, [.openDisk, .bye], []),
        ("ended", d0Committed + [.recv(.bye)], [], []),
        ("sendingMap of a read-only disk", greeted + [.recv(.openDisk(S.d0ReadOnly)), .send(S.state(S.d0Blocks)), .send(S.chunk(0, 4096))], [], [.mapChunk]),
        ("inspected", d0Inspected, [.openDisk, .bye], []),
    ]
    static let d0Inspected = greeted + [.recv(.openDisk(S.d0ReadOnly)), .send(S.state(S.d0Blocks)), .send(S.chunk(0, 4096)), .send(S.chunk(4096, 2))]
    static let greeted: [SessionStep] = [.recv(S.samples[.hello]!), .send(S.samples[.helloAck]!)]
    static let d0Open = greeted + [.recv(.openDisk(S.d0)), .send(S.state(S.d0Blocks)), .send(S.chunk(0, 4096)), .send(S.chunk(4096, 2))]
    static let d0Committed = d0Open + [.recv(.commitDisk(scannedBytes: 1)), .send(S.committed)]

    func machine(_ steps: [SessionStep], file: StaticString = #filePath, line: UInt = #line) throws -> Machine {
        var m = Machine()
        for step in steps {
            switch step {
            case let .recv(message): _ = try m.receive(message)
            case let .send(message): try m.send(message)
            }
        }
        return m
    }

    // MARK: the tables

    func testEveryMessageTypeInEveryStateIsReceivedOnlyWhereTheRulesSay() throws {
        for (name, steps, receives, _) in Self.states {
            for type in S.allTypes where type != .keepalive && type != .error {
                var m = try machine(steps)
                let message = S.samples[type]!
                if receives.contains(type) {
                    XCTAssertNoThrow(try m.receive(message), "\(name): \(type) must be accepted")
                } else {
                    // The message names the peer, the frame type and the state (the disk, when one is open).
                    let disk = ["openingDisk", "sendingMap", "receivingBlocks", "committing", "idle after a commit",
                                "sendingMap of a read-only disk", "inspected"].contains(name) ? ["'d0'"] : []
                    assertVZError(.protocolViolation, ["source: ", "\(type)"] + disk) { _ = try m.receive(message) }
                    XCTAssertEqual(m.state, .ended, "\(name): a violation ends the session")
                }
            }
        }
    }

    func testEveryMessageTypeInEveryStateIsSentOnlyWhereTheRulesSay() throws {
        for (name, steps, _, sends) in Self.states {
            for type in S.allTypes where type != .keepalive && type != .error {
                var m = try machine(steps)
                if sends.contains(type) {
                    XCTAssertNoThrow(try m.send(S.samples[type]!), "\(name): the target may send \(type)")
                } else {
                    assertVZError(.internal, ["target: refusing to send \(type)"]) { try m.send(S.samples[type]!) }
                }
            }
        }
    }

    func testKeepaliveIsAcceptedAndSendableInEveryStateAndChangesNothing() throws {
        for (name, steps, _, _) in Self.states {
            var m = try machine(steps)
            let before = m.state
            XCTAssertEqual(try m.receive(.keepalive), .ignore, name)
            try m.send(.keepalive)
            XCTAssertEqual(m.state, before, name)
        }
    }

    func testAnErrorFromTheSourceEndsTheSessionInEveryStateWithItsKind() throws {
        for (name, steps, _, _) in Self.states {
            var m = try machine(steps)
            assertVZError(.noSpace, ["the datastore is full"]) { _ = try m.receive(.error(kind: "noSpace", message: "the datastore is full")) }
            XCTAssertEqual(m.state, .ended, name)
            var unknown = try machine(steps)
            assertVZError(.connectionLost, ["source gave up", "odd"]) { _ = try unknown.receive(.error(kind: "noSuchKind", message: "odd")) }
        }
    }

    func testSendingAnErrorIsAllowedInEveryStateAndEndsTheSession() throws {
        for (name, steps, _, _) in Self.states {
            var m = try machine(steps)
            XCTAssertNoThrow(try m.send(.error(kind: "replicaIO", message: "EIO")), name)
            XCTAssertEqual(m.state, .ended, name)
        }
    }

    func testEndOfStreamIsNormalOnlyAfterBye() throws {
        let expected = ["awaitingHello": "while waiting for hello", "idle before any disk": "without bye", "idle after a commit": "without bye",
                        "receivingBlocks": "while waiting for blocks of disk 'd0'", "committing": "disk 'd0'", "openingDisk": "disk 'd0'"]
        for (name, steps, _, _) in Self.states {
            var m = try machine(steps)
            if name == "ended" {
                XCTAssertEqual(try m.receiveEndOfStream(), .end)
                continue
            }
            assertVZError(.connectionLost, ["source: connection closed"] + (expected[name].map { [$0] } ?? [])) { _ = try m.receiveEndOfStream() }
            XCTAssertEqual(m.state, .ended, name)
        }
    }

    func testAfterAViolationNothingIsAccepted() throws {
        var m = try machine(Self.d0Open)
        XCTAssertThrowsError(try m.receive(.hello(job: "x", sourceVersion: "y")))
        assertVZError(.protocolViolation, ["after the session ended"]) { _ = try m.receive(S.samples[.blockData]!) }
        assertVZError(.internal, ["after the session ended"]) { try m.send(S.committed) }
    }

    // MARK: the violations by name

    func testBlocksBeforeOpenDisk() throws {
        var m = try machine(Self.greeted)
        assertVZError(.protocolViolation, ["source: unexpected blockData frame", "before openDisk"]) { _ = try m.receive(S.samples[.blockData]!) }
        var z = try machine(Self.greeted)
        assertVZError(.protocolViolation, ["unexpected zeroExtent frame", "before openDisk"]) { _ = try z.receive(S.samples[.zeroExtent]!) }
    }

    func testTheFirstFrameMustBeHello() throws {
        var m = Machine()
        assertVZError(.protocolViolation, ["source: unexpected openDisk frame before hello", "the first frame must be hello"]) {
            _ = try m.receive(.openDisk(S.d0))
        }
    }

    func testASecondOpenDiskMidDisk() throws {
        var m = try machine(Self.d0Open + [.recv(S.samples[.blockData]!)])
        assertVZError(.protocolViolation, ["a second openDisk", "'d1'", "while disk 'd0' is open"]) { _ = try m.receive(.openDisk(S.d1)) }
        var same = try machine(Self.d0Open)
        assertVZError(.protocolViolation, ["a second openDisk", "while disk 'd0' is open"]) { _ = try same.receive(.openDisk(S.d0)) }
    }

    func testCommitTwice() throws {
        var committing = try machine(Self.d0Open + [.recv(.commitDisk(scannedBytes: 1))])
        assertVZError(.protocolViolation, ["commitDisk twice", "disk 'd0'"]) { _ = try committing.receive(.commitDisk(scannedBytes: 1)) }
        var committed = try machine(Self.d0Committed)
        assertVZError(.protocolViolation, ["commitDisk twice", "disk 'd0' is already committed"]) {
            _ = try committed.receive(.commitDisk(scannedBytes: 1))
        }
    }

    func testByeMidDisk() throws {
        var m = try machine(Self.d0Open + [.recv(S.samples[.zeroExtent]!)])
        assertVZError(.protocolViolation, ["source: bye while disk 'd0' is open"]) { _ = try m.receive(.bye) }
    }

    func testHelloTwice() throws {
        var m = try machine(Self.greeted)
        assertVZError(.protocolViolation, ["unexpected hello frame between disks"]) { _ = try m.receive(S.samples[.hello]!) }
    }

    func testMessagesOnlyTheTargetSendsAreRefusedFromTheSource() throws {
        for type in [Message.MessageType.helloAck, .diskState, .mapChunk, .diskCommitted] {
            var m = try machine(Self.d0Open)
            assertVZError(.protocolViolation, ["source: unexpected \(type) frame while receiving the blocks of disk 'd0'"]) {
                _ = try m.receive(S.samples[type]!)
            }
        }
    }

    // MARK: what the target may send

    func testTheMapMustCoverTheDiskOnceInOrder() throws {
        let opened = Self.greeted + [.recv(.openDisk(S.d0))]
        var wrongCount = try machine(opened)
        assertVZError(.internal, ["diskState", "4097 entries", "4098 blocks"]) { try wrongCount.send(S.state(4097)) }
        let stated = opened + [.send(S.state(S.d0Blocks))]
        for (chunk, why) in [(S.chunk(1, 10), "gap"), (S.chunk(0, 0), "empty"), (S.chunk(0, 4097), "more than 4096")] {
            var m = try machine(stated)
            assertVZError(.internal, ["map chunk for disk 'd0'", why]) { try m.send(chunk) }
        }
        let half = stated + [.send(S.chunk(0, 4096))]
        for (chunk, why) in [(S.chunk(4095, 3), "overlaps"), (S.chunk(4096, 3), "past the disk's 4098 entries"), (S.chunk(4097, 1), "gap")] {
            var m = try machine(half)
            assertVZError(.internal, ["map chunk for disk 'd0'", why]) { try m.send(chunk) }
        }
        var m = try machine(half)
        try m.send(S.chunk(4096, 1))
        XCTAssertEqual(m.state, .sendingMap(DiskGeometry(S.d0)!, next: 4097))
        try m.send(S.chunk(4097, 1))
        XCTAssertEqual(m.state, .receivingBlocks(DiskGeometry(S.d0)!))
    }

    // MARK: geometry

    func testOpenDiskWithAGeometryTheTargetDoesNotTakeIsRefused() throws {
        for bs: UInt32 in [0, 1, 3, 32 << 10, (64 << 10) + 1, 16 << 20, UInt32.max] {
            var m = try machine(Self.greeted)
            assertVZError(.targetRefused, ["disk 'd0'", "block size \(bs)"]) {
                _ = try m.receive(.openDisk(.init(disk: "d0", capacity: 1 << 20, blockSize: bs, mode: .full)))
            }
            XCTAssertEqual(m.state, .ended)
        }
        for capacity: UInt64 in [0, (1 << 50) + 1, UInt64.max] {
            var m = try machine(Self.greeted)
            assertVZError(.targetRefused, ["capacity \(capacity)"]) {
                _ = try m.receive(.openDisk(.init(disk: "d0", capacity: capacity, blockSize: S.bs, mode: .full)))
            }
        }
        for (bs, capacity): (UInt32, UInt64) in [(64 << 10, 1), (8 << 20, 1 << 50), (1 << 20, 12345678)] {
            var m = try machine(Self.greeted)
            XCTAssertNoThrow(try m.receive(.openDisk(.init(disk: "d0", capacity: capacity, blockSize: bs, mode: .full))))
        }
    }

    func testBlockGeometry() throws {
        let bs = Int(S.bs)
        let capacity = S.d0.capacity
        let lastBlock = 4097 * UInt64(bs)
        let good: [Message.BlockData] = [
            S.block(at: 0, length: bs),
            S.block(at: UInt64(bs) * 4096, length: bs),
            S.block(at: lastBlock, length: 1000),
            S.block(at: 0, length: bs, encoding: .lz4, payload: 10),
            S.block(at: 0, length: bs, encoding: .lz4, payload: bs + 4096),
            S.block(at: lastBlock, length: 1000, encoding: .lz4, payload: 1000 + 4096),
        ]
        for b in good {
            var m = try machine(Self.d0Open)
            XCTAssertEqual(try m.receive(.blockData(b)), .applyBlock(b), "offset \(b.offset)")
        }
        var shortHash = S.block(at: 0, length: bs)
        shortHash.sha256 = [1, 2, 3]
        let bad: [(Message.BlockData, [String])] = [
            (S.block(at: 512, length: bs), ["offset 512", "not a block boundary"]),
            (S.block(at: UInt64(bs) - 1, length: bs), ["not a block boundary"]),
            (S.block(at: lastBlock + UInt64(bs), length: bs), ["not a block boundary inside disk 'd0'"]),
            (S.block(at: capacity, length: 1000), ["not a block boundary"]),
            (S.block(at: UInt64.max - UInt64(bs) + 1, length: bs), ["not a block boundary"]),
            (S.block(at: 0, length: bs - 1), ["rawLength \(bs - 1), expected \(bs)"]),
            (S.block(at: 0, length: 0), ["rawLength 0"]),
            (S.block(at: lastBlock, length: bs), ["rawLength \(bs), expected 1000"]),
            (S.block(at: lastBlock, length: 999), ["expected 1000"]),
            (S.block(at: 0, length: bs, encoding: .lz4, payload: bs + 4097), ["\(bs + 4097)-byte payload"]),
            (S.block(at: lastBlock, length: 1000, encoding: .lz4, payload: 5097), ["5097-byte payload"]),
            (S.block(at: 0, length: bs, payload: bs - 1), ["raw payload of \(bs - 1) bytes"]),
            (S.block(at: 0, length: bs, payload: bs + 1), ["raw payload"]),
            (shortHash, ["3-byte hash"]),
        ]
        for (b, mentions) in bad {
            var m = try machine(Self.d0Open)
            assertVZError(.protocolViolation, ["source: blockData at offset \(b.offset)"] + mentions) { _ = try m.receive(.blockData(b)) }
            XCTAssertEqual(m.state, .ended)
        }
    }

    func testZeroExtentGeometryIncludingUInt64Extremes() throws {
        let bs = UInt64(S.bs)
        let capacity = S.d0.capacity
        let good = [Extent(offset: 0, length: capacity), Extent(offset: 0, length: bs), Extent(offset: 4097 * bs, length: 1000),
                    Extent(offset: 4096 * bs, length: bs + 1000), Extent(offset: bs, length: 4096 * bs)]
        for e in good {
            var m = try machine(Self.d0Open)
            XCTAssertEqual(try m.receive(.zeroExtent(e)), .applyZero(e), "\(e)")
        }
        let bad = [
            Extent(offset: 0, length: 0), Extent(offset: 512, length: bs), Extent(offset: 0, length: bs + 1),
            Extent(offset: 0, length: capacity + 1), Extent(offset: 0, length: capacity - 1), Extent(offset: capacity, length: 1),
            Extent(offset: 4098 * bs, length: bs), Extent(offset: 2 << 40, length: bs),
            // Sums that wrap around 2^64 must not look like "ends at the capacity" or "inside".
            Extent(offset: UInt64.max - 10, length: 100), Extent(offset: 0, length: UInt64.max), Extent(offset: bs, length: UInt64.max),
            Extent(offset: bs, length: UInt64.max - bs + 1), Extent(offset: UInt64.max, length: UInt64.max),
            Extent(offset: UInt64.max - bs + 1, length: bs), Extent(offset: 4097 * bs, length: UInt64.max - 4097 * bs + 1000 + 1),
        ]
        for e in bad {
            var m = try machine(Self.d0Open)
            assertVZError(.protocolViolation, ["source: zeroExtent", "outside the disk 'd0'"]) { _ = try m.receive(.zeroExtent(e)) }
        }
    }

    // MARK: the pass id (protocol 3)

    /// The pass id goes into every log line and the undo journal: only a UUID passes, lowercased;
    /// a version-2 hello without one is greeted with none.
    func testHelloPassIdMustBeAUUID() throws {
        var m = Machine()
        XCTAssertEqual(try m.receive(.hello(job: "vm1", sourceVersion: "s", passId: "469755C1-02F8-4871-94DB-91E9FE925E35")),
                       .greet(job: "vm1", sourceVersion: "s", passId: "469755c1-02f8-4871-94db-91e9fe925e35"))
        var v2 = Machine()
        XCTAssertEqual(try v2.receive(.hello(job: "vm1", sourceVersion: "s")), .greet(job: "vm1", sourceVersion: "s", passId: ""))
        for bad in ["x", "469755c1-02f8-4871-94db-91e9fe925e3", "469755c1 02f8-4871-94db-91e9fe925e35", "469755c1-02f8-4871-94db-91e9fe925e3\n",
                    "g69755c1-02f8-4871-94db-91e9fe925e35"] {
            var b = Machine()
            assertVZError(.protocolViolation, ["passId", "not a UUID"]) { _ = try b.receive(.hello(job: "vm1", sourceVersion: "s", passId: bad)) }
        }
    }

    // MARK: a whole conversation

    /// A disk opened read-only (`plan`) gets its state and map, and then no block, zero extent or
    /// commit is accepted for it — the target writes nothing — while the next disk or bye is.
    func testAReadOnlyDiskRefusesEveryWrite() throws {
        var m = try machine(Self.d0Inspected)
        XCTAssertEqual(m.state, .inspected(DiskGeometry(S.d0ReadOnly)!))
        for write in [S.samples[.blockData]!, S.samples[.zeroExtent]!, S.samples[.commitDisk]!] {
            var w = m
            assertVZError(.protocolViolation, ["source: ", "\(write.type)", "'d0'", "opened read-only", "writes nothing"]) { _ = try w.receive(write) }
            XCTAssertEqual(w.state, .ended)
        }
        // The next disk, read-only or not, and bye are accepted.
        var next = m
        XCTAssertEqual(try next.receive(.openDisk(S.d1)), .openDisk(S.d1))
        XCTAssertEqual(try m.receive(.bye), .end)
    }

    func testAFullLegalConversationForTwoDisks() throws {
        var m = Machine()
        XCTAssertEqual(try m.receive(.hello(job: "vm1", sourceVersion: "s 1")), .greet(job: "vm1", sourceVersion: "s 1"))
        try m.send(.helloAck(targetVersion: "t 1"))
        XCTAssertEqual(try m.receive(.keepalive), .ignore)

        XCTAssertEqual(try m.receive(.openDisk(S.d0)), .openDisk(S.d0))
        try m.send(.keepalive)
        try m.send(S.state(S.d0Blocks, .rebuilt))
        try m.send(S.chunk(0, 4096))
        try m.send(.keepalive)
        try m.send(S.chunk(4096, 2))
        let first = S.block(at: 0, length: Int(S.bs), encoding: .lz4, payload: 77)
        let last = S.block(at: 4097 * UInt64(S.bs), length: 1000)
        XCTAssertEqual(try m.receive(.blockData(first)), .applyBlock(first))
        XCTAssertEqual(try m.receive(.keepalive), .ignore)
        XCTAssertEqual(try m.receive(.zeroExtent(Extent(offset: UInt64(S.bs), length: 4096 * UInt64(S.bs)))),
                       .applyZero(Extent(offset: UInt64(S.bs), length: 4096 * UInt64(S.bs))))
        XCTAssertEqual(try m.receive(.blockData(last)), .applyBlock(last))
        XCTAssertEqual(try m.receive(.commitDisk(scannedBytes: S.d0.capacity)), .commit(scannedBytes: S.d0.capacity))
        try m.send(.keepalive)
        try m.send(S.committed)
        XCTAssertEqual(m.state, .idle(committed: "d0"))

        XCTAssertEqual(try m.receive(.openDisk(S.d1)), .openDisk(S.d1))
        try m.send(S.state(1, .created))
        try m.send(S.chunk(0, 1))
        XCTAssertEqual(try m.receive(.zeroExtent(Extent(offset: 0, length: 5000))), .applyZero(Extent(offset: 0, length: 5000)))
        XCTAssertEqual(try m.receive(.commitDisk(scannedBytes: 0)), .commit(scannedBytes: 0))
        try m.send(S.committed)

        XCTAssertEqual(try m.receive(.bye), .end)
        XCTAssertEqual(m.state, .ended)
        XCTAssertEqual(try m.receiveEndOfStream(), .end)
    }
}
