import Foundation
import VZCore
import VZWire

/// `vzrepl-source plan`: what one disk's pass would read and send, without sending it. The disk
/// is opened read-only on the target (protocol version 3), which reports its state and map and
/// changes nothing; the source then does everything a pass does — ABM, the pass plan, reading,
/// zero checks, hashing, comparing with the map, lz4 — and counts instead of sending. So the
/// numbers are those of a real pass that follows, as long as neither side changes meanwhile.
extension DiskReplicator {
    /// Extents listed per kind in `disk-plan`, at most; `extentsTruncated` says when more exist.
    static let maxPlanExtents = 10_000

    func plan(session: inout SourceSessionStateMachine) throws -> [String: Any] {
        let started = Date()
        let progress = DiskProgress(disk: disk.name, capacity: reader.capacity, events: events)
        channel.onPeerBeat = { progress.targetBeat($0, waitingIn: "map") }
        defer { channel.onPeerBeat = nil }
        try channel.send(.openDisk(.init(disk: disk.name, capacity: reader.capacity, blockSize: job.blockSize, mode: job.mode,
                                         readOnly: true)), in: &session)
        let (state, map) = try receiveMap(&session)
        guard case .inspected = session.state else {
            throw VZError(.internal, "source: the session is \(session.state) after a read-only disk's map")
        }
        // The target waits for our next openDisk or bye while we hash: heartbeat meanwhile.
        return try channel.withHeartbeat { heartbeat in
            var filter: ActiveBlockFilter?
            if job.abm { filter = try ActiveBlockFilter.build(disk: disk, reader: reader, job: job, events: events, logger: logger) }
            defer { if let filter, !keepTemp { filter.remove(logger: logger) } }
            let plan = PassPlan(capacity: reader.capacity, blockSize: job.blockSize, mode: job.mode, whitespace: job.whitespace,
                                knownZero: job.whitespace ? try reader.knownZeroExtents() : ExtentSet(), active: filter?.active)
            let encoder = BlockEncoder(reader: reader, map: map, plan: plan)
            let pipeline = OrderedPipeline<PassPlan.Block, BlockVerdict>(workers: workers, depth: 4 * workers + 4) { try encoder.encode($0) }
            progress.bytesTotal = plan.candidateBytes
            progress.blocks = plan.candidateBlockCount
            var tally = PlanTally()
            var done = 0
            try pipeline.run(produce: { submit in
                for block in plan.blocks { try submit(block) }
            }, consume: { verdict in
                tally.add(verdict)
                done += 1
                try heartbeat.advance(by: verdict.extent.length)
                // Nothing is sent by a plan: its phase stays `scan`.
                progress.scanned(bytesDone: tally.bytesDone, blocksDone: done, scannedBytes: tally.scannedBytes,
                                 sentBytes: 0, zeroBytes: 0)
            })
            tally.close()
            let read = Array(plan.blocksToRead.prefix(DiskReplicator.maxPlanExtents))
            var fields: [String: Any] = [
                "disk": disk.name, "capacityBytes": reader.capacity, "blockSize": job.blockSize, "mode": job.mode.rawValue,
                "mapStatus": "\(state.mapStatus)", "generation": state.generation,
                "activeBytes": filter?.active.totalLength ?? reader.capacity,
                "candidateBytes": plan.candidateBytes, "blocks": plan.candidateBlockCount,
                "scannedBytes": tally.scannedBytes, "unchangedBytes": tally.unchangedBytes,
                "dataBlocks": tally.dataBlocks, "dataBytes": tally.dataBytes, "sentBytes": tally.sentBytes,
                "zeroBytes": tally.zeroBytes, "changedBytes": tally.dataBytes + tally.zeroBytes,
                "readExtents": read.map { [$0.offset, $0.length] },
                "sendExtents": tally.extents.map { [$0.extent.offset, $0.extent.length, $0.zero ? "zero" : "data"] as [Any] },
                "extentsTruncated": plan.blocksToRead.extents.count > read.count || tally.truncated,
                "seconds": (Date().timeIntervalSince(started) * 1000).rounded() / 1000,
            ]
            if !state.note.isEmpty { fields["note"] = state.note }
            return fields.merging(startedFields) { a, _ in a }
        }
    }
}

/// The counts of `disk-plan`, from the verdicts in disk order: the same coalescing of zero blocks
/// as a pass, and the extents a pass would send (adjacent blocks of one kind joined).
struct PlanTally {
    var bytesDone: UInt64 = 0
    var scannedBytes: UInt64 = 0
    var unchangedBytes: UInt64 = 0
    var dataBlocks: UInt64 = 0
    var dataBytes: UInt64 = 0
    var sentBytes: UInt64 = 0
    var zeroBytes: UInt64 = 0
    var extents: [(extent: Extent, zero: Bool)] = []
    var truncated = false
    private var open: (extent: Extent, zero: Bool)?

    mutating func add(_ verdict: BlockVerdict) {
        bytesDone += verdict.extent.length
        switch verdict {
        case let .unchanged(e, scanned):
            scannedBytes += scanned
            unchangedBytes += e.length
        case let .zero(e, scanned):
            scannedBytes += scanned
            zeroBytes += e.length
            extend(e, zero: true)
        case let .data(_, e, payload, scanned):
            scannedBytes += scanned
            dataBlocks += 1
            dataBytes += e.length
            sentBytes += UInt64(payload)
            extend(e, zero: false)
        }
    }

    private mutating func extend(_ e: Extent, zero: Bool) {
        if let o = open, o.zero == zero, o.extent.end == e.offset {
            open = (Extent(offset: o.extent.offset, length: o.extent.length + e.length), zero)
            return
        }
        close()
        open = (e, zero)
    }

    mutating func close() {
        guard let o = open else { return }
        if extents.count < DiskReplicator.maxPlanExtents { extents.append(o) } else { truncated = true }
        open = nil
    }
}
