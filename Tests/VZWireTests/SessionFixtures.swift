import VZCore
@testable import VZWire
import XCTest

/// Messages and disks for the session state machine tests: one sample of every message type,
/// each valid for the disk `SessionFixtures.d0` and for the state in which it is legal, so that
/// a table of states × messages can say exactly which ones each state takes.
enum SessionFixtures {
    static let bs: UInt32 = 64 << 10
    /// 4097 whole blocks and a short last one of 1000 bytes: a map of two chunks (4096 + 2).
    static let d0 = Message.OpenDisk(disk: "d0", capacity: 4097 * UInt64(bs) + 1000, blockSize: bs, mode: .differential)
    static let d0Blocks: UInt64 = 4098
    /// d0 opened read-only (protocol version 3, `plan`).
    static var d0ReadOnly: Message.OpenDisk { var o = d0; o.readOnly = true; return o }
    /// One short block.
    static let d1 = Message.OpenDisk(disk: "d1", capacity: 5000, blockSize: bs, mode: .full)

    static func hash(_ byte: UInt8) -> [UInt8] { [UInt8](repeating: byte, count: 32) }

    static func block(at offset: UInt64, length: Int, encoding: Message.BlockData.Encoding = .raw, payload: Int? = nil) -> Message.BlockData {
        Message.BlockData(offset: offset, rawLength: UInt32(length), encoding: encoding, sha256: hash(7),
                          payload: [UInt8](repeating: 1, count: payload ?? length))
    }

    static func chunk(_ first: UInt64, _ count: Int) -> Message {
        .mapChunk(firstIndex: first, entries: [BlockMap.Entry](repeating: .unknown, count: count))
    }

    static func state(_ entries: UInt64, _ status: Message.DiskState.MapStatus = .valid) -> Message {
        .diskState(.init(mapStatus: status, generation: 3, entryCount: entries))
    }

    static let committed = Message.diskCommitted(.init(generation: 4, changedBytes: 65536, zeroBytes: 0))

    /// One of each type, keyed by type. The map chunk is the second (last) chunk of d0.
    static let samples: [Message.MessageType: Message] = [
        .hello: .hello(job: "vm1", sourceVersion: "vzrepl-source 0.1"),
        .helloAck: .helloAck(targetVersion: "vzrepl-target 0.1"),
        .openDisk: .openDisk(d0),
        .diskState: state(d0Blocks),
        .mapChunk: chunk(4096, 2),
        .blockData: .blockData(block(at: 0, length: Int(bs))),
        .zeroExtent: .zeroExtent(Extent(offset: UInt64(bs), length: 2 * UInt64(bs))),
        .commitDisk: .commitDisk(scannedBytes: d0.capacity),
        .diskCommitted: committed,
        .bye: .bye,
        .error: .error(kind: "noSpace", message: "the datastore is full"),
        .keepalive: .keepalive,
    ]

    static let allTypes: [Message.MessageType] = (1...12).map { Message.MessageType(rawValue: $0)! }
}

/// One step of a conversation as one side sees it.
enum SessionStep {
    case recv(Message)
    case send(Message)
}

/// Asserts that `body` throws a `VZError` of `kind` whose message contains every one of `mentions`.
func assertVZError(_ kind: VZError.Kind, _ mentions: [String], file: StaticString = #filePath, line: UInt = #line,
                   _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("no error; expected \(kind) mentioning \(mentions)", file: file, line: line)
    } catch let e as VZError {
        XCTAssertEqual(e.kind, kind, e.message, file: file, line: line)
        for m in mentions { XCTAssertTrue(e.message.contains(m), "'\(e.message)' does not mention '\(m)'", file: file, line: line) }
    } catch {
        XCTFail("not a VZError: \(error)", file: file, line: line)
    }
}
