import Foundation
import Logging
import VZCore
import VZPlatform
import VZWire

/// What one disk's pass did, as `disk-finished` reports it.
public struct DiskResult: Sendable {
    public var disk: String
    public var mode: ReplicationMode
    public var capacityBytes: UInt64
    public var scannedBytes: UInt64 = 0
    public var changedBytes: UInt64 = 0
    public var zeroBytes: UInt64 = 0
    public var sentBytes: UInt64 = 0
    public var dataBlocks: UInt64 = 0
    public var seconds: Double = 0
    public var generation: UInt64 = 0
    public var mapStatus = "valid"

    var eventFields: [String: Any] {
        ["disk": disk, "mode": mode.rawValue, "capacityBytes": capacityBytes, "scannedBytes": scannedBytes,
         "changedBytes": changedBytes, "zeroBytes": zeroBytes, "sentBytes": sentBytes, "dataBlocks": dataBlocks,
         "seconds": (seconds * 1000).rounded() / 1000, "generation": generation, "mapStatus": mapStatus]
    }
}

/// One disk's pass on the source: open the disk session, receive the target's map, then read,
/// zero-check, hash and compress blocks on worker threads while this thread sends them in order.
final class DiskReplicator {
    let disk: JobConfig.DiskConfig
    let reader: BlockReader
    let job: JobConfig
    let channel: MessageChannel
    let events: EventEmitter
    var logger: Logger
    let workers: Int

    init(disk: JobConfig.DiskConfig, reader: BlockReader, job: JobConfig, channel: MessageChannel,
         events: EventEmitter, logger: Logger, workers: Int) {
        self.disk = disk
        self.reader = reader
        self.job = job
        self.channel = channel
        self.events = events
        self.logger = logger
        self.workers = workers
        self.logger[metadataKey: "disk"] = "\(disk.name)"
    }

    func run() throws -> DiskResult {
        let started = Date()
        var result = DiskResult(disk: disk.name, mode: job.mode, capacityBytes: reader.capacity)
        try channel.send(.openDisk(.init(disk: disk.name, capacity: reader.capacity, blockSize: job.blockSize, mode: job.mode)))
        let (state, map) = try receiveMap()
        result.mapStatus = "\(state.mapStatus)"
        if state.mapStatus == .rebuilt {
            logger.warning("the target's map was not trusted (\(state.note)); it hashed the replica instead")
            events.emit("map-untrusted", ["disk": disk.name, "reason": state.note])
        }
        events.emit("disk-started", ["disk": disk.name, "capacityBytes": reader.capacity, "mapStatus": result.mapStatus,
                                     "generation": state.generation, "blockSize": job.blockSize])
        logger.info("scanning \(reader.displayName): \(reader.capacity) bytes, \(map.count) blocks, map \(state.mapStatus) generation \(state.generation)")

        let encoder = BlockEncoder(reader: reader, map: map, knownZero: job.whitespace ? try reader.knownZeroExtents() : ExtentSet(),
                                   whitespace: job.whitespace, useMap: job.mode == .differential)
        let pipeline = OrderedPipeline<Int, BlockVerdict>(workers: workers, depth: 4 * workers + 4) { try encoder.encode(block: $0) }
        var pendingZero: Extent?
        var lastProgress = Date()
        let blockCount = map.count

        func flushZero() throws {
            if let z = pendingZero {
                try channel.send(.zeroExtent(z))
                result.zeroBytes += z.length
                pendingZero = nil
            }
        }

        // An unchanged disk sends nothing for as long as hashing takes: heartbeat meanwhile, with
        // the bytes dealt with as progress (and stop at once if a beat finds the target gone).
        let committed: Message.DiskCommitted = try channel.withHeartbeat { heartbeat in
            var done = 0
            try pipeline.run(produce: { submit in
                for i in 0..<blockCount { try submit(i) }
            }, consume: { verdict in
                switch verdict {
                case let .unchanged(scanned):
                    result.scannedBytes += scanned
                case let .zero(extent, scanned):
                    result.scannedBytes += scanned
                    if let z = pendingZero, z.end == extent.offset {
                        pendingZero = Extent(offset: z.offset, length: z.length + extent.length)
                    } else {
                        try flushZero()
                        pendingZero = extent
                    }
                case let .data(frame, _, payload, scanned):
                    result.scannedBytes += scanned
                    try flushZero()
                    try channel.sendEncoded(frame)
                    result.sentBytes += UInt64(payload)
                    result.dataBlocks += 1
                }
                done += 1
                try heartbeat.advance(by: UInt64(job.blockSize))
                if Date().timeIntervalSince(lastProgress) >= 1 {
                    lastProgress = Date()
                    events.emit("disk-progress", ["disk": disk.name, "blocksDone": done, "blocks": blockCount,
                                                  "scannedBytes": result.scannedBytes, "sentBytes": result.sentBytes,
                                                  "zeroBytes": result.zeroBytes + (pendingZero?.length ?? 0),
                                                  "capacityBytes": reader.capacity,
                                                  "percent": Double(done * 1000 / Swift.max(blockCount, 1)) / 10])
                }
            })
            try flushZero()
            try channel.send(.commitDisk(scannedBytes: result.scannedBytes))
            guard case let .diskCommitted(c) = try channel.expect("the commit of disk '\(disk.name)'") else {
                throw VZError(.protocolViolation, "target: expected diskCommitted for disk '\(disk.name)'")
            }
            return c
        }
        result.changedBytes = committed.changedBytes
        result.generation = committed.generation
        result.seconds = Date().timeIntervalSince(started)
        return result
    }

    /// The diskState and the map chunks that follow it, checked to cover the disk exactly once,
    /// in order; the map is sized by our own capacity, never by a count from the peer.
    private func receiveMap() throws -> (Message.DiskState, BlockMap) {
        guard case let .diskState(state) = try channel.expect("the state of disk '\(disk.name)'") else {
            throw VZError(.protocolViolation, "target: expected diskState for disk '\(disk.name)'")
        }
        var map = BlockMap(blockSize: job.blockSize, capacity: reader.capacity)
        guard state.entryCount == UInt64(map.count) else {
            throw VZError(.protocolViolation, "target: map of disk '\(disk.name)' has \(state.entryCount) entries, the disk has \(map.count) blocks")
        }
        var next = 0
        while next < map.count {
            guard case let .mapChunk(first, entries) = try channel.expect("the map of disk '\(disk.name)'") else {
                throw VZError(.protocolViolation, "target: expected a mapChunk for disk '\(disk.name)'")
            }
            guard first == UInt64(next), !entries.isEmpty, entries.count <= map.count - next else {
                throw VZError(.protocolViolation, "target: map chunk for disk '\(disk.name)' starts at entry \(first) with \(entries.count) entries; expected entry \(next)")
            }
            for e in entries { map[next] = e; next += 1 }
        }
        return (state, map)
    }
}
