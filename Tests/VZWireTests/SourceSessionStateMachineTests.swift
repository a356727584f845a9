import VZCore
@testable import VZWire
import XCTest

/// The source's session rules in process, the mirror of `TargetSessionStateMachineTests`: every
/// message type in every state both ways, the map's framing (entry count, gaps, overlaps, empty
/// chunks, chunks past the end), the geometry of what the source sends, and two whole disks.
final class SourceSessionStateMachineTests: XCTestCase {
    typealias Machine = SourceSessionStateMachine
    typealias S = SessionFixtures

    static let states: [(name: String, steps: [SessionStep], receives: Set<Message.MessageType>, sends: Set<Message.MessageType>)] = [
        ("start", [], [], [.hello]),
        ("awaitingHelloAck", [.send(S.samples[.hello]!)], [.helloAck], []),
        ("idle before any disk", connected, [], [.openDisk, .bye]),
        ("awaitingDiskState", connected + [.send(.openDisk(S.d0))], [.diskState], []),
        ("receivingMap", connected + [.send(.openDisk(S.d0)), .recv(S.state(S.d0Blocks)), .recv(S.chunk(0, 4096))], [.mapChunk], []),
        ("sendingBlocks", d0Open, [], [.blockData, .zeroExtent, .commitDisk]),
        ("awaitingCommit", d0Open + [.send(.commitDisk(scannedBytes: 1))], [.diskCommitted], []),
        ("idle after a commit", d0Committed, [], [.openDisk, .bye]),
        ("ended", d0Committed + [.send(.bye)], [], []),
        ("receivingMap of a read-only disk", connected + [.send(.openDisk(S.d0ReadOnly)), .recv(S.state(S.d0Blocks)), .recv(S.chunk(0, 4096))], [.mapChunk], []),
        ("inspected", d0Inspected, [], [.openDisk, .bye]),
    ]
    static let d0Inspected = connected + [.send(.openDisk(S.d0ReadOnly)), .recv(S.state(S.d0Blocks)), .recv(S.chunk(0, 4096)), .recv(S.chunk(4096, 2))]
    static let connected: [SessionStep] = [.send(S.samples[.hello]!), .recv(S.samples[.helloAck]!)]
    static let d0Open = connected + [.send(.openDisk(S.d0)), .recv(S.state(S.d0Blocks)), .recv(S.chunk(0, 4096)), .recv(S.chunk(4096, 2))]
    static let d0Committed = d0Open + [.send(.commitDisk(scannedBytes: 1)), .recv(S.committed)]
    static let d0 = DiskGeometry(S.d0)!

    func machine(_ steps: [SessionStep]) throws -> Machine {
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
                if receives.contains(type) {
                    XCTAssertNoThrow(try m.receive(S.samples[type]!), "\(name): \(type) must be accepted")
                } else {
                    let disk = ["awaitingDiskState", "receivingMap", "sendingBlocks", "awaitingCommit", "idle after a commit",
                                "receivingMap of a read-only disk", "inspected"].contains(name) ? ["'d0'"] : []
                    assertVZError(.protocolViolation, ["target: unexpected \(type) frame"] + disk) { _ = try m.receive(S.samples[type]!) }
                    XCTAssertEqual(m.state, .ended, name)
                }
            }
        }
    }

    func testEveryMessageTypeInEveryStateIsSentOnlyWhereTheRulesSay() throws {
        for (name, steps, _, sends) in Self.states {
            for type in S.allTypes where type != .keepalive && type != .error {
                var m = try machine(steps)
                if sends.contains(type) {
                    XCTAssertNoThrow(try m.send(S.samples[type]!), "\(name): the source may send \(type)")
                } else {
                    assertVZError(.internal, ["source: refusing to send \(type)"]) { try m.send(S.samples[type]!) }
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

    func testAnErrorFromTheTargetEndsTheSessionInEveryStateWithItsKind() throws {
        for (name, steps, _, _) in Self.states {
            var m = try machine(steps)
            assertVZError(.locked, ["target: ", "held by pid 7"]) { _ = try m.receive(.error(kind: "locked", message: "held by pid 7")) }
            XCTAssertEqual(m.state, .ended, name)
            var unknown = try machine(steps)
            assertVZError(.targetRefused, ["target: odd"]) { _ = try unknown.receive(.error(kind: "fromTheFuture", message: "odd")) }
        }
    }

    func testEndOfStreamNamesWhatWasAwaited() throws {
        let expected = ["awaitingHelloAck": "while waiting for the target's answer to hello",
                        "awaitingDiskState": "while waiting for the state of disk 'd0'",
                        "receivingMap": "while waiting for the map of disk 'd0'",
                        "awaitingCommit": "while waiting for the commit of disk 'd0'"]
        for (name, steps, _, _) in Self.states {
            var m = try machine(steps)
            if name == "ended" { XCTAssertNoThrow(try m.receiveEndOfStream()); continue }
            assertVZError(.connectionLost, ["target: connection closed"] + (expected[name].map { [$0] } ?? [])) { try m.receiveEndOfStream() }
            XCTAssertEqual(m.state, .ended)
        }
    }

    // MARK: the map

    func testTheEntryCountMustBeTheDisksBlockCount() throws {
        for count: UInt64 in [0, S.d0Blocks - 1, S.d0Blocks + 1, UInt64.max] {
            var m = try machine(Self.connected + [.send(.openDisk(S.d0))])
            assertVZError(.protocolViolation, ["target: map of disk 'd0' has \(count) entries, the disk has 4098 blocks"]) {
                _ = try m.receive(S.state(count))
            }
        }
    }

    func testMapChunksMustCoverTheDiskOnceInOrder() throws {
        let stated = Self.connected + [.send(.openDisk(S.d0)), .recv(S.state(S.d0Blocks))]
        let half = stated + [.recv(S.chunk(0, 4096))]
        let bad: [([SessionStep], Message, String)] = [
            (stated, S.chunk(1, 4096), "leaves a gap"),
            (stated, S.chunk(0, 0), "empty"),
            (stated, S.chunk(0, 4097), "more than 4096"),
            (stated, S.chunk(UInt64.max, 1), "leaves a gap"),
            (half, S.chunk(0, 4096), "overlaps"),
            (half, S.chunk(4095, 3), "overlaps"),
            (half, S.chunk(4097, 1), "leaves a gap"),
            (half, S.chunk(4096, 0), "empty"),
            (half, S.chunk(4096, 3), "runs past the disk's 4098 entries"),
        ]
        for (steps, chunk, why) in bad {
            var m = try machine(steps)
            assertVZError(.protocolViolation, ["target: map chunk for disk 'd0' starts at entry", why]) { _ = try m.receive(chunk) }
        }
        var m = try machine(half)
        XCTAssertEqual(try m.receive(S.chunk(4096, 1)), .mapChunk(firstIndex: 4096, entries: [.unknown], mapComplete: false))
        XCTAssertEqual(m.state, .receivingMap(Self.d0, next: 4097))
        XCTAssertEqual(try m.receive(S.chunk(4097, 1)), .mapChunk(firstIndex: 4097, entries: [.unknown], mapComplete: true))
        XCTAssertEqual(m.state, .sendingBlocks(Self.d0))
    }

    func testAfterCommitOnlyDiskCommittedIsAccepted() throws {
        for type in S.allTypes where ![.diskCommitted, .keepalive, .error].contains(type) {
            var m = try machine(Self.d0Open + [.send(.commitDisk(scannedBytes: 1))])
            assertVZError(.protocolViolation, ["target: unexpected \(type) frame while waiting for the commit of disk 'd0'"]) {
                _ = try m.receive(S.samples[type]!)
            }
        }
    }

    func testAnEmptyDiskHasNoMapChunks() throws {
        var m = try machine(Self.connected)
        try m.send(.openDisk(.init(disk: "e", capacity: 0, blockSize: S.bs, mode: .full)))
        XCTAssertEqual(try m.receive(S.state(0, .created)), .diskState(.init(mapStatus: .created, generation: 3, entryCount: 0), mapComplete: true))
        try m.send(.commitDisk(scannedBytes: 0))
        XCTAssertEqual(try m.receive(S.committed), .committed(.init(generation: 4, changedBytes: 65536, zeroBytes: 0)))
    }

    // MARK: what the source sends

    func testBlocksAndZeroExtentsMustFitTheDiskBeforeTheyAreSent() throws {
        let bs = UInt64(S.bs)
        var m = try machine(Self.d0Open)
        try m.sendBlockData(offset: 0, rawLength: S.bs, payloadCount: 100)
        try m.sendBlockData(offset: 4097 * bs, rawLength: 1000, payloadCount: 1000)
        try m.send(.zeroExtent(Extent(offset: bs, length: 4096 * bs)))
        for (offset, raw, payload, why) in [(UInt64(512), S.bs, 10, "not a block boundary"), (4098 * bs, S.bs, 10, "inside disk 'd0'"),
                                            (4097 * bs, S.bs, 10, "expected 1000"), (0, S.bs, Int(S.bs) + 4097, "payload")] {
            assertVZError(.internal, ["source: refusing to send blockData at offset \(offset)", why]) {
                try m.sendBlockData(offset: offset, rawLength: raw, payloadCount: payload)
            }
        }
        assertVZError(.internal, ["source: refusing to send zeroExtent", "outside the disk"]) {
            try m.send(.zeroExtent(Extent(offset: UInt64.max - 10, length: 100)))
        }
        assertVZError(.internal, ["refusing to send blockData", "while waiting for the state"]) {
            var early = try machine(Self.connected + [.send(.openDisk(S.d0))])
            try early.sendBlockData(offset: 0, rawLength: S.bs, payloadCount: 10)
        }
        assertVZError(.internal, ["block size of 0"]) {
            var zero = try machine(Self.connected)
            try zero.send(.openDisk(.init(disk: "z", capacity: 1, blockSize: 0, mode: .full)))
        }
    }

    // MARK: a whole conversation

    /// After the map of a read-only disk the source may not send a block, zero extent or commit
    /// of it: the refusal names the disk and the mode; openDisk and bye remain.
    func testAReadOnlyDiskSendsNoWrites() throws {
        let m = try machine(Self.d0Inspected)
        XCTAssertEqual(m.state, .inspected(DiskGeometry(S.d0ReadOnly)!))
        for write in [S.samples[.blockData]!, S.samples[.zeroExtent]!, S.samples[.commitDisk]!] {
            var w = m
            assertVZError(.internal, ["source: refusing to send \(write.type)", "'d0'", "read-only"]) { try w.send(write) }
        }
        var next = m
        XCTAssertNoThrow(try next.send(.openDisk(S.d1)))
        var bye = m
        XCTAssertNoThrow(try bye.send(.bye))
        XCTAssertEqual(bye.state, .ended)
    }

    func testAFullLegalConversationForTwoDisks() throws {
        var m = Machine()
        try m.send(.hello(job: "vm1", sourceVersion: "s 1"))
        XCTAssertEqual(try m.receive(.keepalive), .ignore)
        XCTAssertEqual(try m.receive(.helloAck(targetVersion: "t 1")), .connected(targetVersion: "t 1"))

        try m.send(.openDisk(S.d0))
        XCTAssertEqual(try m.receive(.keepalive), .ignore)
        XCTAssertEqual(try m.receive(S.state(S.d0Blocks, .rebuilt)),
                       .diskState(.init(mapStatus: .rebuilt, generation: 3, entryCount: S.d0Blocks), mapComplete: false))
        guard case .mapChunk(0, _, false) = try m.receive(S.chunk(0, 4096)) else { return XCTFail() }
        XCTAssertEqual(try m.receive(.keepalive), .ignore)
        guard case .mapChunk(4096, let entries, true) = try m.receive(S.chunk(4096, 2)) else { return XCTFail() }
        XCTAssertEqual(entries.count, 2)
        try m.sendBlockData(offset: 0, rawLength: S.bs, payloadCount: 1234)
        try m.send(.keepalive)
        try m.send(.zeroExtent(Extent(offset: UInt64(S.bs), length: 4096 * UInt64(S.bs))))
        try m.send(.blockData(S.block(at: 4097 * UInt64(S.bs), length: 1000)))
        try m.send(.commitDisk(scannedBytes: S.d0.capacity))
        XCTAssertEqual(try m.receive(.keepalive), .ignore)
        XCTAssertEqual(try m.receive(S.committed), .committed(.init(generation: 4, changedBytes: 65536, zeroBytes: 0)))
        XCTAssertEqual(m.state, .idle(committed: "d0"))

        try m.send(.openDisk(S.d1))
        XCTAssertEqual(try m.receive(S.state(1, .created)), .diskState(.init(mapStatus: .created, generation: 3, entryCount: 1), mapComplete: false))
        XCTAssertEqual(try m.receive(.mapChunk(firstIndex: 0, entries: [.zero])), .mapChunk(firstIndex: 0, entries: [.zero], mapComplete: true))
        try m.send(.commitDisk(scannedBytes: 5000))
        XCTAssertEqual(try m.receive(S.committed), .committed(.init(generation: 4, changedBytes: 65536, zeroBytes: 0)))

        try m.send(.bye)
        XCTAssertEqual(m.state, .ended)
        XCTAssertNoThrow(try m.receiveEndOfStream())
    }
}
