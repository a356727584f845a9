import VZCore
import VZPlatform

/// What the source decides for one block, computed on a worker thread.
enum BlockVerdict {
    /// The target already has this content (its map says so).
    case unchanged(scanned: UInt64)
    /// All zeros, and the target's map does not say zero: send as a zero extent.
    case zero(Extent, scanned: UInt64)
    /// A ready-to-send `blockData` frame.
    case data(frame: [UInt8], extent: Extent, payloadBytes: Int, scanned: UInt64)
}

/// Reads, zero-checks, hashes, compares with the target's map and compresses one block, straight
/// into its frame buffer (one allocation, no copy of the payload).
struct BlockEncoder {
    let reader: BlockReader
    let map: BlockMap
    let knownZero: ExtentSet
    let whitespace: Bool
    let useMap: Bool

    static let fixedHeader = 8 + 4 + 1 + 32

    func encode(block index: Int) throws -> BlockVerdict {
        let extent = map.extent(ofBlock: index)
        let length = Int(extent.length)
        let previous = map[index]
        if whitespace && knownZero.covers(extent) {
            return useMap && previous.kind == .zero ? .unchanged(scanned: 0) : .zero(extent, scanned: 0)
        }
        var data = [UInt8](repeating: 0, count: length)
        try data.withUnsafeMutableBytes { try reader.read(at: extent.offset, into: $0) }
        return data.withUnsafeBytes { raw -> BlockVerdict in
            if whitespace && ZeroDetector.isZero(raw) {
                return useMap && previous.kind == .zero ? .unchanged(scanned: extent.length) : .zero(extent, scanned: extent.length)
            }
            let hash = SHA256.digest(raw)
            if useMap && previous.kind == .data && previous.hash == hash { return .unchanged(scanned: extent.length) }
            let (frame, payload) = frame(for: raw, extent: extent, hash: hash)
            return .data(frame: frame, extent: extent, payloadBytes: payload, scanned: extent.length)
        }
    }

    /// The whole frame and its payload size.
    private func frame(for raw: UnsafeRawBufferPointer, extent: Extent, hash: SHA256Digest) -> ([UInt8], Int) {
        let start = Frame.headerSize + BlockEncoder.fixedHeader
        var frame = [UInt8](repeating: 0, count: start + LZ4.compressBound(raw.count))
        let compressed = frame.withUnsafeMutableBytes { out in
            LZ4.compress(raw, into: UnsafeMutableRawBufferPointer(rebasing: out[start...]))
        }
        let payload: Int
        let encoding: Message.BlockData.Encoding
        if let n = compressed {
            payload = n; encoding = .lz4
        } else {
            payload = raw.count; encoding = .raw
            frame.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[start..<start + raw.count]).copyMemory(from: raw) }
        }
        frame.removeLast(frame.count - start - payload)
        var w = ByteWriter(capacity: start)
        w.raw(Frame.header(type: Message.MessageType.blockData.rawValue, length: BlockEncoder.fixedHeader + payload))
        w.u64(extent.offset); w.u32(UInt32(raw.count)); w.u8(encoding.rawValue)
        hash.append(to: &w)
        frame.replaceSubrange(0..<start, with: w.bytes)
        return (frame, payload)
    }
}
