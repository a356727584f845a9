/// One frame of the vzrepl wire protocol (Docs/protocol.md): an 8-byte header
/// (magic u16 0x5A56 LE = bytes "VZ", type u8, flags u8, payload length u32 LE) and a payload.
public struct Frame: Equatable, Sendable {
    public static let headerSize = 8
    public static let magic: UInt16 = 0x5A56  // bytes 0x56 0x5A = "VZ"
    /// No frame may ever be larger than this, whatever the peer says: an 8 MiB block whose
    /// compression did not help is sent raw, plus the block header.
    public static let maxPayload = 8 * 1024 * 1024 + 4096

    public var type: UInt8
    public var payload: [UInt8]

    public init(type: UInt8, payload: [UInt8]) {
        self.type = type
        self.payload = payload
    }

    public static func header(type: UInt8, length: Int) -> [UInt8] {
        var w = ByteWriter(capacity: headerSize)
        w.u16(magic); w.u8(type); w.u8(0); w.u32(UInt32(length))
        return w.bytes
    }

    public func encoded() -> [UInt8] { Frame.header(type: type, length: payload.count) + payload }
}

/// Splits a byte stream into frames. A state machine fed with bytes: `append` what arrived, then
/// call `nextFrame()` until it returns nil (more bytes needed). Never allocates more than
/// `maxPayload` for one frame, whatever a header claims.
public struct FrameDecoder {
    private var buffer: [UInt8] = []
    private var start = 0
    public var maxPayload: Int
    /// Frames decoded so far, for error messages ("frame #12").
    public private(set) var framesDecoded = 0

    public init(maxPayload: Int = Frame.maxPayload) {
        self.maxPayload = min(maxPayload, Frame.maxPayload)
    }

    public var bufferedBytes: Int { buffer.count - start }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    public mutating func nextFrame() throws -> Frame? {
        guard bufferedBytes >= Frame.headerSize else { return nil }
        var r = ByteReader(buffer[start..<start + Frame.headerSize], context: "frame #\(framesDecoded + 1) header",
                           errorKind: .corruptFrame)
        let magic = try r.u16("magic")
        guard magic == Frame.magic else {
            throw r.fail("magic", "expected 0x\(String(Frame.magic, radix: 16)), got 0x\(String(magic, radix: 16)) (stream out of sync or not vzrepl)")
        }
        let type = try r.u8("type")
        let flags = try r.u8("flags")
        guard flags == 0 else { throw r.fail("flags", "unknown flags 0x\(String(flags, radix: 16))") }
        let length = Int(try r.u32("length"))
        guard length <= maxPayload else {
            throw r.fail("length", "payload of \(length) bytes exceeds the limit of \(maxPayload)")
        }
        guard bufferedBytes >= Frame.headerSize + length else { return nil }
        let p = start + Frame.headerSize
        let frame = Frame(type: type, payload: Array(buffer[p..<p + length]))
        start = p + length
        framesDecoded += 1
        return frame
    }
}
