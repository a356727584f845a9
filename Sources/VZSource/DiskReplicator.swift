import Foundation
import Logging
import VZCore
import VZFormats
import VZPlatform
import VZWire

/// What one disk's pass did, as `disk-finished` reports it.
public struct DiskResult: Sendable {
    public var disk: String
    public var mode: ReplicationMode
    public var capacityBytes: UInt64
    public var scannedBytes: UInt64 = 0
    public var changedBytes: UInt64 = 0
    /// Bytes ABM found active (the capacity when ABM is off).
    public var activeBytes: UInt64 = 0
    public var zeroBytes: UInt64 = 0
    public var sentBytes: UInt64 = 0
    public var dataBlocks: UInt64 = 0
    /// Every byte this disk's session wrote to the transport for it (frames, headers, map
    /// requests): what `bandwidthLimit` limits.
    public var wireBytes: UInt64 = 0
    public var seconds: Double = 0
    public var generation: UInt64 = 0
    public var mapStatus = "valid"

    var eventFields: [String: Any] {
        ["disk": disk, "mode": mode.rawValue, "capacityBytes": capacityBytes, "scannedBytes": scannedBytes,
         "changedBytes": changedBytes, "activeBytes": activeBytes, "zeroBytes": zeroBytes, "sentBytes": sentBytes, "dataBlocks": dataBlocks, "wireBytes": wireBytes,
         "seconds": (seconds * 1000).rounded() / 1000, "generation": generation, "mapStatus": mapStatus]
    }
}

/// One disk's pass on the source: open the disk session, receive the target's map, then read,
/// zero-check, hash and compress blocks on worker threads while this thread sends them in order.
/// What may be sent and received when is the session's (`SourceSessionStateMachine`): every
/// frame goes past it.
final class DiskReplicator {
    let disk: JobConfig.DiskConfig
    let reader: BlockReader
    let job: JobConfig
    let channel: MessageChannel
    let events: EventEmitter
    var logger: Logger
    let workers: Int
    /// More fields of `disk-started` from the reader factory (`chain`, `snapshots`).
    var startedFields: [String: Any] = [:]
    /// Keep the working files (the active-block filter) after the disk is done.
    let keepTemp: Bool

    init(disk: JobConfig.DiskConfig, reader: BlockReader, job: JobConfig, channel: MessageChannel,
         events: EventEmitter, logger: Logger, workers: Int, keepTemp: Bool = false) {
        self.keepTemp = keepTemp
        self.disk = disk
        self.reader = reader
        self.job = job
        self.channel = channel
        self.events = events
        self.logger = logger
        self.workers = workers
        self.logger[metadataKey: "disk"] = "\(disk.name)"
    }

    func run(session: inout SourceSessionStateMachine) throws -> DiskResult {
        let started = Date()
        let wireAtStart = channel.bytesSent
        var result = DiskResult(disk: disk.name, mode: job.mode, capacityBytes: reader.capacity)
        let progress = DiskProgress(disk: disk.name, capacity: reader.capacity, events: events)
        // While the target opens the disk (waits for its lock, recovers, rebuilds a map) it sends
        // only heartbeats: each can be a progress event.
        var waiting = "map"
        channel.onPeerBeat = { progress.targetBeat($0, waitingIn: waiting) }
        defer { channel.onPeerBeat = nil }
        try channel.send(.openDisk(.init(disk: disk.name, capacity: reader.capacity, blockSize: job.blockSize, mode: job.mode)),
                         in: &session)
        let (state, map) = try receiveMap(&session)
        result.mapStatus = "\(state.mapStatus)"
        if state.mapStatus == .replicaModified {
            logger.warning("the replica was modified on the target outside vzrepl (\(state.note)); it hashed the replica instead of trusting its map")
            events.emit("replica-modified", ["disk": disk.name, "reason": state.note])
        }
        if state.mapStatus == .rebuilt {
            logger.warning("the target's map was not trusted (\(state.note)); it hashed the replica instead")
            events.emit("map-untrusted", ["disk": disk.name, "reason": state.note])
        }
        events.emit("disk-started", ["disk": disk.name, "capacityBytes": reader.capacity, "mapStatus": result.mapStatus,
                                     "generation": state.generation, "blockSize": job.blockSize]
                                     .merging(startedFields) { a, _ in a })
        logger.info("scanning \(reader.displayName): \(reader.capacity) bytes, \(map.count) blocks, map \(state.mapStatus) generation \(state.generation)")

        // ABM reads only metadata, but a large disk takes a moment: keep the link alive meanwhile.
        var filter: ActiveBlockFilter?
        if job.abm {
            filter = try channel.withHeartbeat { _ in
                try ActiveBlockFilter.build(disk: disk, reader: reader, job: job, events: events, logger: logger)
            }
        }
        defer { if let filter, !keepTemp { filter.remove(logger: logger) } }
        result.activeBytes = filter?.active.totalLength ?? reader.capacity
        let plan = PassPlan(capacity: reader.capacity, blockSize: job.blockSize, mode: job.mode, whitespace: job.whitespace,
                            knownZero: job.whitespace ? try reader.knownZeroExtents() : ExtentSet(), active: filter?.active)
        let encoder = BlockEncoder(reader: reader, map: map, plan: plan)
        let pipeline = OrderedPipeline<PassPlan.Block, BlockVerdict>(workers: workers, depth: 4 * workers + 4) { try encoder.encode($0) }
        var pendingZero: Extent?
        let blockCount = plan.candidateBlockCount
        progress.bytesTotal = plan.candidateBytes
        progress.blocks = blockCount
        var bytesDone: UInt64 = 0

        func flushZero() throws {
            if let z = pendingZero {
                try channel.send(.zeroExtent(z), in: &session)
                result.zeroBytes += z.length
                pendingZero = nil
            }
        }

        // An unchanged disk sends nothing for as long as hashing takes: heartbeat meanwhile, with
        // the bytes dealt with as progress (and stop at once if a beat finds the target gone).
        let committed: Message.DiskCommitted = try channel.withHeartbeat { heartbeat in
            var done = 0
            try pipeline.run(produce: { submit in
                for block in plan.blocks { try submit(block) }
            }, consume: { verdict in
                switch verdict {
                case let .unchanged(_, scanned):
                    result.scannedBytes += scanned
                case let .zero(extent, scanned):
                    result.scannedBytes += scanned
                    if let z = pendingZero, z.end == extent.offset {
                        pendingZero = Extent(offset: z.offset, length: z.length + extent.length)
                    } else {
                        try flushZero()
                        pendingZero = extent
                    }
                case let .data(frame, extent, payload, scanned):
                    result.scannedBytes += scanned
                    try flushZero()
                    try session.sendBlockData(offset: extent.offset, rawLength: UInt32(extent.length), payloadCount: payload)
                    try channel.sendEncoded(frame)
                    result.sentBytes += UInt64(payload)
                    result.dataBlocks += 1
                }
                done += 1
                bytesDone += verdict.extent.length
                try heartbeat.advance(by: verdict.extent.length)
                progress.scanned(bytesDone: bytesDone, blocksDone: done, scannedBytes: result.scannedBytes, sentBytes: result.sentBytes,
                                 zeroBytes: result.zeroBytes + (pendingZero?.length ?? 0))
            })
            try flushZero()
            if session.speaksDiskSets {
                try channel.send(.diskChain((reader as? VMDKChain)?.sourceChain ?? []), in: &session)
            }
            waiting = "commit"
            try channel.send(.commitDisk(scannedBytes: result.scannedBytes), in: &session)
            let answer = try channel.nextAction(of: &session)
            guard case let .committed(c) = answer else { throw SourceSessionStateMachine.unexpected(answer) }
            return c
        }
        result.changedBytes = committed.changedBytes
        result.generation = committed.generation
        result.seconds = Date().timeIntervalSince(started)
        result.wireBytes = channel.bytesSent - wireAtStart
        return result
    }

    /// The diskState and the map chunks that follow it; the session checks that they cover the
    /// disk exactly once, in order. The map is sized by our own capacity, never by a count from
    /// the peer.
    func receiveMap(_ session: inout SourceSessionStateMachine) throws -> (Message.DiskState, BlockMap) {
        var map = BlockMap(blockSize: job.blockSize, capacity: reader.capacity)
        let answer = try channel.nextAction(of: &session)
        guard case let .diskState(state, mapComplete) = answer else { throw SourceSessionStateMachine.unexpected(answer) }
        var complete = mapComplete
        while !complete {
            let chunk = try channel.nextAction(of: &session)
            guard case let .mapChunk(first, entries, last) = chunk else { throw SourceSessionStateMachine.unexpected(chunk) }
            for (i, e) in entries.enumerated() { map[first + i] = e }
            complete = last
        }
        return (state, map)
    }
}
