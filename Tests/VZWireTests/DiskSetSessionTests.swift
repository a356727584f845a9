import VZCore
@testable import VZWire
import XCTest

/// Protocol 3's additions to both session machines (Docs/protocol.md §4.2, §5): diskSet once,
/// after helloAck and before the first openDisk; diskChain once per disk before commitDisk;
/// neither from or to an older peer.
final class DiskSetSessionTests: XCTestCase {
    typealias S = SessionFixtures
    static let set = Message.diskSet([.init(name: "d0", capacity: S.d0.capacity), .init(name: "d1", capacity: S.d1.capacity)])
    static let chain = Message.diskChain([SourceChainLink(file: "d0.vmdk", cid: 1, parentCID: 0xffffffff)])

    func target(_ steps: [SessionStep], version: Int = 3) throws -> TargetSessionStateMachine {
        var m = TargetSessionStateMachine(peerProtocolVersion: version)
        for step in steps {
            switch step {
            case let .recv(message): _ = try m.receive(message)
            case let .send(message): try m.send(message)
            }
        }
        return m
    }

    static let greeted: [SessionStep] = [.recv(S.samples[.hello]!), .send(S.samples[.helloAck]!)]
    static let d0Open = greeted + [.recv(set), .recv(.openDisk(S.d0)), .send(S.state(S.d0Blocks)), .send(S.chunk(0, 4096)), .send(S.chunk(4096, 2))]

    func testTargetWholeVersion3Conversation() throws {
        var m = try target(Self.greeted)
        XCTAssertEqual(try m.receive(Self.set), .checkDiskSet([.init(name: "d0", capacity: S.d0.capacity), .init(name: "d1", capacity: S.d1.capacity)]))
        _ = try m.receive(.openDisk(S.d0))
        try m.send(S.state(S.d0Blocks)); try m.send(S.chunk(0, 4096)); try m.send(S.chunk(4096, 2))
        XCTAssertEqual(try m.receive(Self.chain), .recordChain([SourceChainLink(file: "d0.vmdk", cid: 1, parentCID: 0xffffffff)]))
        XCTAssertEqual(try m.receive(.commitDisk(scannedBytes: 1)), .commit(scannedBytes: 1))
        try m.send(S.committed)
        // The second disk needs its own chain (an empty one: a raw source).
        _ = try m.receive(.openDisk(S.d1))
        try m.send(S.state(1)); try m.send(S.chunk(0, 1))
        XCTAssertFalse(m.chainReceived)
        XCTAssertEqual(try m.receive(.diskChain([])), .recordChain([]))
        _ = try m.receive(.commitDisk(scannedBytes: 1))
        try m.send(S.committed)
        XCTAssertEqual(try m.receive(.bye), .end)
    }

    func testTargetViolationsAreNamed() throws {
        var m = try target(Self.greeted)
        assertVZError(.protocolViolation, ["source: openDisk (disk 'd0') before diskSet"]) { _ = try m.receive(.openDisk(S.d0)) }
        m = try target(Self.greeted + [.recv(Self.set)])
        assertVZError(.protocolViolation, ["a second diskSet"]) { _ = try m.receive(Self.set) }
        m = try target(Self.greeted + [.recv(.diskSet([.init(name: "d1", capacity: 1)]))])
        assertVZError(.protocolViolation, ["disk 'd0'", "not in the session's diskSet (d1)"]) { _ = try m.receive(.openDisk(S.d0)) }
        m = try target(Self.greeted)
        assertVZError(.protocolViolation, ["disks[1].name", "'d0' appears twice"]) {
            _ = try m.receive(.diskSet([.init(name: "d0", capacity: 1), .init(name: "d0", capacity: 1)]))
        }
        m = try target(Self.greeted)
        assertVZError(.protocolViolation, ["disks[0].name", "contains '..'"]) { _ = try m.receive(.diskSet([.init(name: "..", capacity: 1)])) }
        m = try target(Self.greeted)
        assertVZError(.protocolViolation, ["disks[0].name", "-flat"]) { _ = try m.receive(.diskSet([.init(name: "a-flat", capacity: 1)])) }
        m = try target(Self.d0Open)
        assertVZError(.protocolViolation, ["commitDisk before diskChain", "disk 'd0'"]) { _ = try m.receive(.commitDisk(scannedBytes: 1)) }
        m = try target(Self.d0Open + [.recv(Self.chain)])
        assertVZError(.protocolViolation, ["diskChain twice", "disk 'd0'"]) { _ = try m.receive(Self.chain) }
        // diskSet after a disk was opened, diskChain outside a disk.
        m = try target(Self.d0Open + [.recv(Self.chain), .recv(.commitDisk(scannedBytes: 1)), .send(S.committed)])
        assertVZError(.protocolViolation, ["diskSet"]) { _ = try m.receive(Self.set) }
        m = try target(Self.greeted + [.recv(Self.set)])
        assertVZError(.protocolViolation, ["unexpected diskChain frame between disks"]) { _ = try m.receive(Self.chain) }
        XCTAssertEqual(m.state, .ended)
    }

    /// A version-2 source: no diskSet needed, and none accepted.
    func testTargetVersion2SourceNeedsNoDiskSetAndMaySendNone() throws {
        var m = try target(Self.greeted, version: 2)
        XCTAssertFalse(m.speaksDiskSets)
        _ = try m.receive(.openDisk(S.d0))
        try m.send(S.state(S.d0Blocks)); try m.send(S.chunk(0, 4096)); try m.send(S.chunk(4096, 2))
        assertVZError(.protocolViolation, ["diskChain", "version-2 source"]) { _ = try m.receive(Self.chain) }
        m = try target(Self.greeted, version: 2)
        assertVZError(.protocolViolation, ["diskSet", "version-2 source"]) { _ = try m.receive(Self.set) }
        m = try target(Self.greeted + [.recv(.openDisk(S.d0)), .send(S.state(S.d0Blocks)), .send(S.chunk(0, 4096)), .send(S.chunk(4096, 2))], version: 1)
        XCTAssertEqual(try m.receive(.commitDisk(scannedBytes: 1)), .commit(scannedBytes: 1))
        // The target never sends either.
        assertVZError(.internal, ["only the source sends it"]) { try m.send(Self.set) }
    }

    func testSourceSendsDiskSetFirstAndAChainPerDisk() throws {
        var m = SourceSessionStateMachine(peerProtocolVersion: 3)
        try m.send(S.samples[.hello]!)
        _ = try m.receive(S.samples[.helloAck]!)
        assertVZError(.internal, ["refusing to send openDisk before diskSet"]) { try m.send(.openDisk(S.d0)) }
        m = SourceSessionStateMachine(peerProtocolVersion: 3)
        try m.send(S.samples[.hello]!)
        _ = try m.receive(S.samples[.helloAck]!)
        try m.send(Self.set)
        assertVZError(.internal, ["refusing to send diskSet"]) { try m.send(Self.set) }
        m = SourceSessionStateMachine(peerProtocolVersion: 3)
        try m.send(S.samples[.hello]!)
        _ = try m.receive(S.samples[.helloAck]!)
        try m.send(Self.set)
        try m.send(.openDisk(S.d1))
        _ = try m.receive(S.state(1)); _ = try m.receive(S.chunk(0, 1))
        assertVZError(.internal, ["refusing to send commitDisk before diskChain"]) { try m.send(.commitDisk(scannedBytes: 1)) }
        try m.send(.diskChain([]))
        assertVZError(.internal, ["refusing to send diskChain"]) { try m.send(.diskChain([])) }
        try m.send(.commitDisk(scannedBytes: 1))
        _ = try m.receive(S.committed)
        try m.send(.openDisk(S.d1))
        XCTAssertFalse(m.chainSent)
        // The target never sends diskSet.
        assertVZError(.protocolViolation, ["target: unexpected diskSet frame"]) { _ = try m.receive(Self.set) }
    }

    func testSourceSendsNeitherToAVersion2Target() throws {
        var m = SourceSessionStateMachine(peerProtocolVersion: 2)
        try m.send(S.samples[.hello]!)
        _ = try m.receive(S.samples[.helloAck]!)
        assertVZError(.internal, ["diskSet", "version-2 target"]) { try m.send(Self.set) }
        try m.send(.openDisk(S.d1))
        _ = try m.receive(S.state(1)); _ = try m.receive(S.chunk(0, 1))
        assertVZError(.internal, ["diskChain", "version-2 target"]) { try m.send(.diskChain([])) }
        try m.send(.commitDisk(scannedBytes: 1))
    }
}
