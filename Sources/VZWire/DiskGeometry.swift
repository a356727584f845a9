import VZCore

/// The shape of the disk a session has open, from its `openDisk`: what both sides check every
/// block, zero extent and map chunk of the disk against (Docs/protocol.md §4 and "Session rules").
/// The checks return a problem in words, or nil; the state machines turn it into an error (a
/// `protocolViolation` for what the peer sent, an `internal` error for what we were about to send).
public struct DiskGeometry: Equatable, Sendable, CustomStringConvertible {
    public let disk: String
    public let capacity: UInt64
    public let blockSize: UInt32
    /// ceil(capacity / blockSize): the map's entry count.
    public let blockCount: UInt64
    /// Opened read-only (protocol version 3, `plan`): the map is reported, nothing is written.
    public let readOnly: Bool

    /// A block frame's payload may exceed its raw length by this much (lz4 is only sent when it
    /// is smaller, so this is slack, not a need).
    public static let payloadSlack = 4096

    /// nil for a block size of 0, for which no arithmetic is possible.
    public init?(_ request: Message.OpenDisk) {
        guard request.blockSize > 0 else { return nil }
        disk = request.disk
        capacity = request.capacity
        blockSize = request.blockSize
        blockCount = BlockMap.blockCount(capacity: request.capacity, blockSize: request.blockSize)
        readOnly = request.readOnly
    }

    public var description: String { "disk '\(disk)'" }

    /// The length of the block at a block-aligned `offset` inside the disk: `blockSize`, or what
    /// remains for the last block.
    public func blockLength(at offset: UInt64) -> UInt64 { min(UInt64(blockSize), capacity - offset) }

    /// A `blockData` frame: `offset` a block boundary inside the disk, `rawLength` the length of
    /// that block, a 32-byte hash, a raw payload of exactly `rawLength` bytes, an lz4 payload of
    /// at most `rawLength + payloadSlack` (`encoding` nil: either).
    public func problem(withBlockAt offset: UInt64, rawLength: UInt32, encoding: Message.BlockData.Encoding?,
                        payloadCount: Int, hashCount: Int = 32) -> String? {
        let bs = UInt64(blockSize)
        guard offset % bs == 0, offset < capacity else {
            return "blockData at offset \(offset) is not a block boundary inside \(self) (capacity \(capacity), \(blockSize)-byte blocks)"
        }
        let expected = blockLength(at: offset)
        guard UInt64(rawLength) == expected else {
            return "blockData at offset \(offset) of \(self) has rawLength \(rawLength), expected \(expected)"
        }
        guard hashCount == 32 else {
            return "blockData at offset \(offset) of \(self) has a \(hashCount)-byte hash, not 32"
        }
        switch encoding {
        case .raw:
            guard payloadCount == Int(expected) else {
                return "blockData at offset \(offset) of \(self) has a raw payload of \(payloadCount) bytes for \(expected) bytes"
            }
        case .lz4, nil:
            guard payloadCount <= Int(expected) + DiskGeometry.payloadSlack else {
                return "blockData at offset \(offset) of \(self) has a \(payloadCount)-byte payload for \(expected) bytes"
            }
        }
        return nil
    }

    public func problem(with block: Message.BlockData) -> String? {
        problem(withBlockAt: block.offset, rawLength: block.rawLength, encoding: block.encoding,
                payloadCount: block.payload.count, hashCount: block.sha256.count)
    }

    /// A `zeroExtent`: non-empty, block-aligned, inside the disk, its length a multiple of the
    /// block size or ending at the capacity. Written so that no sum can overflow, whatever the
    /// peer sends.
    public func problem(withZeroExtent e: Extent) -> String? {
        let bs = UInt64(blockSize)
        guard e.length > 0, e.offset % bs == 0, e.offset < capacity, e.length <= capacity - e.offset,
              e.length % bs == 0 || e.offset + e.length == capacity else {
            return "zeroExtent \(e) is outside the disk '\(disk)' (capacity \(capacity)) or not block-aligned"
        }
        return nil
    }

    /// A `mapChunk` expected at entry `next`: it must start there, be non-empty, hold at most
    /// `Message.maxMapChunkEntries` and not run past the disk's last block.
    public func problem(withMapChunkAt first: UInt64, count: Int, expected next: UInt64) -> String? {
        let what = "map chunk for \(self) starts at entry \(first) with \(count) entries; expected entry \(next)"
        if first < next { return "\(what) (it overlaps entries already sent)" }
        if first > next { return "\(what) (it leaves a gap)" }
        if count == 0 { return "\(what) (it is empty)" }
        if count > Message.maxMapChunkEntries { return "\(what) (more than \(Message.maxMapChunkEntries) entries)" }
        if UInt64(count) > blockCount - next { return "\(what) (it runs past the disk's \(blockCount) entries)" }
        return nil
    }
}
