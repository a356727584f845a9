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
        // Not zero-filled first: `BlockReader.read` writes every byte of the buffer.
        var data = try [UInt8](unsafeUninitializedCapacity: length) { buffer, initialized in
            try reader.read(at: extent.offset, into: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[0..<length])))
            initialized = length
        }
        for free in inactive.pieces(within: extent) {
            let from = Int(free.offset - extent.offset)
            data.withUnsafeMutableBytes { _ = memset($0.baseAddress! + from, 0, Int(free.length)) }
        }
        return data.withUnsafeBytes { raw -> BlockVerdict in
            if whitespace && ZeroDetector.isZero(raw) {
                return useMap && previous.kind == .zero ? .unchanged(extent, scanned: extent.length) : .zero(extent, scanned: extent.length)
            }
            let hash = SHA256.digest(raw)
            if useMap && previous.kind == .data && previous.hash == hash { return .unchanged(extent, scanned: extent.length) }
            let (frame, payload) = frame(for: raw, extent: extent, hash: hash)
            return .data(frame: frame, extent: extent, payloadBytes: payload, scanned: extent.length)
        }
    }

    /// The whole frame and its payload size. Built in one uninitialized buffer (header, then
    /// the payload compressed straight into place), so nothing is zero-filled or moved.
    private func frame(for raw: UnsafeRawBufferPointer, extent: Extent, hash: SHA256Digest) -> ([UInt8], Int) {
        let start = Frame.headerSize + BlockEncoder.fixedHeader
        var payload = 0
        let capacity = start + LZ4.compressBound(raw.count)
        let frame = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
            let out = UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[0..<capacity]))
            let encoding: Message.BlockData.Encoding
            if let n = LZ4.compress(raw, into: UnsafeMutableRawBufferPointer(rebasing: out[start...])) {
                payload = n; encoding = .lz4
            } else {
                payload = raw.count; encoding = .raw
                UnsafeMutableRawBufferPointer(rebasing: out[start..<start + raw.count]).copyMemory(from: raw)
            }
            var w = ByteWriter(capacity: start)
            w.raw(Frame.header(type: Message.MessageType.blockData.rawValue, length: BlockEncoder.fixedHeader + payload))
            w.u64(extent.offset); w.u32(UInt32(raw.count)); w.u8(encoding.rawValue)
            hash.append(to: &w)
            w.bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: out[0..<start]).copyMemory(from: $0) }
            initialized = start + payload
        }
        return (frame, payload)
    }
}

extension BlockEncoder {
    /// The encoder for the blocks of `plan`, which was computed for the same disk as `map`.
    init(reader: BlockReader, map: BlockMap, plan: PassPlan) {
        precondition(plan.capacity == map.capacity && plan.blockSize == UInt64(map.blockSize), "plan and map of different disks")
        self.init(reader: reader, map: map, whitespace: plan.whitespace, useMap: plan.usesMap, inactive: plan.inactiveInCandidates)
    }
}
