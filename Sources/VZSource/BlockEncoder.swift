import Glibc
import VZCore
import VZPlatform

/// What the source decides for one block, computed on a worker thread.
enum BlockVerdict {
    /// The target already has this content (its map says so).
    case unchanged(Extent, scanned: UInt64)
    /// All zeros, and the target's map does not say zero: send as a zero extent.
    case zero(Extent, scanned: UInt64)
    /// A ready-to-send `blockData` frame.
    case data(frame: [UInt8], extent: Extent, payloadBytes: Int, scanned: UInt64)

    /// The block the verdict is about.
    var extent: Extent {
        switch self {
        case let .unchanged(e, _), let .zero(e, _), let .data(_, e, _, _): return e
        }
    }
}

/// Reads, zero-checks, hashes, compares with the target's map and compresses one block of a
/// `PassPlan`, straight into its frame buffer (one allocation, no copy of the payload). Blocks the
/// plan classified as known zero are never read.
struct BlockEncoder {
    let reader: BlockReader
    let map: BlockMap
    /// Check each block read for zeros (white-space detection).
    let whitespace: Bool
    /// Compare with the target's map (differential mode; `PassPlan.usesMap`).
    let useMap: Bool
    /// Bytes ABM proved free inside blocks that are read anyway (`PassPlan.inactiveInCandidates`):
    /// zeroed after the read.
    var inactive = ExtentSet()

    static let fixedHeader = 8 + 4 + 1 + 32

    func encode(_ block: PassPlan.Block) throws -> BlockVerdict {
        let extent = block.extent
        let length = Int(extent.length)
        let previous = map[Int(block.index)]
        if block.knownZero {
            return useMap && previous.kind == .zero ? .unchanged(extent, scanned: 0) : .zero(extent, scanned: 0)
        }
        // The block is read straight into the payload place of a raw frame, so a block that goes
        // raw is never copied. Not zero-filled first: `BlockReader.read` writes every byte.
        let start = Frame.headerSize + BlockEncoder.fixedHeader
        var rawFrame = try [UInt8](unsafeUninitializedCapacity: start + length) { buffer, initialized in
            try reader.read(at: extent.offset, into: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[start..<start + length])))
            initialized = start + length  // the header bytes are written below, before any use
        }
        for free in inactive.pieces(within: extent) {
            let from = start + Int(free.offset - extent.offset)
            rawFrame.withUnsafeMutableBytes { _ = memset($0.baseAddress! + from, 0, Int(free.length)) }
        }
        enum Outcome { case verdict(BlockVerdict), compressed(frame: [UInt8], payload: Int), raw(SHA256Digest) }
        let outcome = rawFrame.withUnsafeBytes { all -> Outcome in
            let raw = UnsafeRawBufferPointer(rebasing: all[start...])
            if whitespace && ZeroDetector.isZero(raw) {
                return .verdict(useMap && previous.kind == .zero ? .unchanged(extent, scanned: extent.length) : .zero(extent, scanned: extent.length))
            }
            let hash = SHA256.digest(raw)
            if useMap && previous.kind == .data && previous.hash == hash { return .verdict(.unchanged(extent, scanned: extent.length)) }
            guard let (frame, payload) = compressedFrame(for: raw, extent: extent, hash: hash) else { return .raw(hash) }
            return .compressed(frame: frame, payload: payload)
        }
        switch outcome {
        case let .verdict(v):
            return v
        case let .compressed(frame, payload):
            return .data(frame: frame, extent: extent, payloadBytes: payload, scanned: extent.length)
        case let .raw(hash):
            rawFrame.withUnsafeMutableBytes { out in
                writeHeader(into: UnsafeMutableRawBufferPointer(rebasing: out[0..<start]), extent: extent, encoding: .raw, payload: length, hash: hash)
            }
            return .data(frame: rawFrame, extent: extent, payloadBytes: length, scanned: extent.length)
        }
    }

    /// An lz4 frame for `raw`, or nil when the data does not compress: send it raw. Built in one uninitialized buffer
    /// (header, then the payload compressed straight into place), so nothing is zero-filled or moved.
    private func compressedFrame(for raw: UnsafeRawBufferPointer, extent: Extent, hash: SHA256Digest) -> ([UInt8], Int)? {
        let start = Frame.headerSize + BlockEncoder.fixedHeader
        let capacity = start + LZ4.compressBound(raw.count)
        var payload: Int?
        let frame = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
            initialized = 0
            let out = UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[0..<capacity]))
            let body = UnsafeMutableRawBufferPointer(rebasing: out[start...])
            guard let n = LZ4.compress(raw, into: body) else { return }
            writeHeader(into: UnsafeMutableRawBufferPointer(rebasing: out[0..<start]), extent: extent, encoding: .lz4, payload: n, hash: hash)
            payload = n
            initialized = start + n
        }
        return payload.map { (frame, $0) }
    }

    private func writeHeader(into out: UnsafeMutableRawBufferPointer, extent: Extent, encoding: Message.BlockData.Encoding,
                             payload: Int, hash: SHA256Digest) {
        var w = ByteWriter(capacity: out.count)
        w.raw(Frame.header(type: Message.MessageType.blockData.rawValue, length: BlockEncoder.fixedHeader + payload))
        w.u64(extent.offset); w.u32(UInt32(extent.length)); w.u8(encoding.rawValue)
        hash.append(to: &w)
        precondition(w.bytes.count == out.count, "blockData header size")
        w.bytes.withUnsafeBytes { out.copyMemory(from: $0) }
    }
}

extension BlockEncoder {
    /// The encoder for the blocks of `plan`, which was computed for the same disk as `map`.
    init(reader: BlockReader, map: BlockMap, plan: PassPlan) {
        precondition(plan.capacity == map.capacity && plan.blockSize == UInt64(map.blockSize), "plan and map of different disks")
        self.init(reader: reader, map: map, whitespace: plan.whitespace, useMap: plan.usesMap, inactive: plan.inactiveInCandidates)
    }
}
