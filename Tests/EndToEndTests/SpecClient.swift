import Foundation
import XCTest

/// A test source written from Docs/protocol.md alone, not from our encoder: it builds frames
/// byte by byte (§2, §3) and reads the target's answers back the same way. The hostile-peer
/// tests speak to the real `vzrepl-target serve --stdio` through it.
enum SpecClient {
    static func u16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    static func u32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(v >> (8 * $0) & 0xFF) } }
    static func u64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(v >> (8 * UInt64($0)) & 0xFF) } }
    static func string(_ s: String) -> [UInt8] { u16(s.utf8.count) + Array(s.utf8) }

    /// magic 56 5A, type, flags 0, u32 length, payload.
    static func frame(_ type: UInt8, _ payload: [UInt8]) -> [UInt8] {
        [0x56, 0x5A, type, 0] + u32(UInt32(payload.count)) + payload
    }

    static let banner = Array("VZREPL/1 spec-client 0\n".utf8)
    static func hello(job: String) -> [UInt8] { frame(1, string(job) + string("spec-client 0")) }
    static func openDisk(_ disk: String, capacity: UInt64, blockSize: UInt32, mode: UInt8 = 0) -> [UInt8] {
        frame(3, string(disk) + u64(capacity) + u32(blockSize) + [mode])
    }
    static func rawBlock(offset: UInt64, data: [UInt8], sha256: [UInt8]) -> [UInt8] {
        frame(6, u64(offset) + u32(UInt32(data.count)) + [0] + sha256 + data)
    }
    static func zeroExtent(offset: UInt64, length: UInt64) -> [UInt8] { frame(7, u64(offset) + u64(length)) }
    static func commitDisk(scanned: UInt64) -> [UInt8] { frame(8, u64(scanned)) }
    static let bye = frame(10, [])
    static let keepalive = frame(12, [])

    struct Reply {
        var type: UInt8
        var payload: [UInt8]
        /// For an error frame (type 11): kind and message.
        var error: (kind: String, message: String)? {
            guard type == 11 else { return nil }
            var at = 0
            func str() -> String {
                guard at + 2 <= payload.count else { return "" }
                let n = Int(payload[at]) | Int(payload[at + 1]) << 8
                at += 2
                defer { at += n }
                return String(decoding: payload[at..<min(at + n, payload.count)], as: UTF8.self)
            }
            return (str(), str())
        }
    }

    /// The target's banner line and frames, parsed from its stdout.
    static func replies(_ output: Data) -> (banner: String, frames: [Reply]) {
        let bytes = [UInt8](output)
        guard let nl = bytes.firstIndex(of: 0x0A) else { return (String(decoding: bytes, as: UTF8.self), []) }
        var frames: [Reply] = []
        var at = nl + 1
        while at + 8 <= bytes.count, bytes[at] == 0x56, bytes[at + 1] == 0x5A {
            let n = (0..<4).reduce(0) { $0 | Int(bytes[at + 4 + $1]) << (8 * $1) }
            guard at + 8 + n <= bytes.count else { break }
            frames.append(Reply(type: bytes[at + 2], payload: Array(bytes[at + 8..<at + 8 + n])))
            at += 8 + n
        }
        return (String(decoding: bytes[..<nl], as: UTF8.self), frames)
    }
}
