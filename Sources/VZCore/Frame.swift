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
///
/// A large frame (a block) whose header has arrived but whose payload has not gets its payload
/// array at once; a reader can then read the rest straight into it (`fillPending`) rather than
/// into a buffer that is copied twice (into the decoder, then out into the frame).
public struct FrameDecoder {
    private var buffer: [UInt8] = []
    private var start = 0
    /// The payload of a large frame being received: its type, the array, and how much is filled.
    private var pending: (type: UInt8, payload: [UInt8], filled: Int)?
    public var maxPayload: Int
    /// Frames decoded so far, for error messages ("frame #12").
    public private(set) var framesDecoded = 0
    /// Payloads at least this large are received in place.
    public static let directPayload = 64 * 1024

    public init(maxPayload: Int = Frame.maxPayload) {
        self.maxPayload = min(maxPayload, Frame.maxPayload)
    }

    /// Bytes received and not yet returned as a frame.
    public var bufferedBytes: Int { buffer.count - start + (pending.map { Frame.headerSize + $0.filled } ?? 0) }

    /// Bytes still missing from a large frame's payload that `fillPending` can take; 0 when no
    /// such frame is in progress (then `append`).
    public var pendingSpace: Int { pending.map { $0.payload.count - $0.filled } ?? 0 }

    /// Lets `body` write up to `pendingSpace` bytes (> 0) of the pending payload in place; `body`
    /// returns how many it wrote (nil: none, passed through). Only bytes of this frame fit, so
    /// the stream stays in step.
    public mutating func fillPending(_ body: (UnsafeMutableRawBufferPointer) throws -> Int?) rethrows -> Int? {
        guard var p = pending, p.filled < p.payload.count else { preconditionFailure("fillPending without pendingSpace") }
        pending = nil  // keeps the array uniquely referenced while body writes into it
        defer { pending = p }
        let filled = p.filled
        let n = try p.payload.withUnsafeMutableBytes { try body(UnsafeMutableRawBufferPointer(rebasing: $0[filled...])) }
        if let n { precondition(n >= 0 && n <= p.payload.count - filled, "fillPending: body wrote \(n) bytes"); p.filled += n }
        return n
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        var bytes = bytes
        if pending != nil, pendingSpace > 0, !bytes.isEmpty {
            let n = min(pendingSpace, bytes.count)
            _ = fillPending { room in
                room.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<n]))
                return n
            }
            bytes = UnsafeRawBufferPointer(rebasing: bytes[n...])
        }
        guard !bytes.isEmpty else { return }
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    public mutating func nextFrame() throws -> Frame? {
        if let p = pending {
            guard p.filled == p.payload.count else { return nil }
            pending = nil
            framesDecoded += 1
            return Frame(type: p.type, payload: p.payload)
        }
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
        let p = start + Frame.headerSize
        guard bufferedBytes >= Frame.headerSize + length else {
            if length >= FrameDecoder.directPayload {
                // Sized by the header, which was checked against maxPayload above. Not
                // zero-filled: bytes past `filled` are never read before they are written.
                let have = buffer.count - p
                let payload = [UInt8](unsafeUninitializedCapacity: length) { out, initialized in
                    buffer.withUnsafeBytes { UnsafeMutableRawBufferPointer(out).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[p...])) }
                    initialized = length
                }
                pending = (type, payload, have)
                buffer.removeAll(keepingCapacity: true)
                start = 0
            }
            return nil
        }
        let frame = Frame(type: type, payload: Array(buffer[p..<p + length]))
        start = p + length
        framesDecoded += 1
        return frame
    }
}
