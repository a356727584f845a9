import Foundation
import Glibc
import Logging
import VZCore
import VZFormats
import VZPlatform
import VZWire

/// One disk opened read-only (protocol version 3, for `vzrepl-source plan`): the target reports
/// what a pass would start from — the disk's state and map — and changes nothing under the
/// datastore root. No job directory, replica, journal, map, CID record or lock file is created or
/// written; no unfinished pass is recovered (the note says one is pending: the real pass recovers
/// it first); the replica is opened O_RDONLY and the lock taken shared, only while the map is
/// read. The session machine then refuses every block, zero extent and commit for the disk.
final class DiskInspection {
    let jobDirectory: Directory?
    let request: Message.OpenDisk
    let files: DiskFiles
    let channel: MessageChannel
    private(set) var session: TargetSessionStateMachine
    let options: DiskSession.Options
    var logger: Logger

    init(jobDirectory: Directory?, request: Message.OpenDisk, channel: MessageChannel, session: TargetSessionStateMachine,
         options: DiskSession.Options, logger: Logger) {
        self.jobDirectory = jobDirectory
        self.request = request
        self.files = DiskFiles(disk: request.disk)
        self.channel = channel
        self.session = session
        self.options = options
        self.logger = logger
        self.logger[metadataKey: "disk"] = "\(request.disk)"
    }

    func run() throws {
        if let why = NameRules.problem(withDisk: request.disk) { throw VZError(.pathOutsideRoot, "disk name \(why)") }
        try DiskSession.checkMapMemory(request, limit: options.mapMemoryLimit)
        let loaded = try channel.withHeartbeat(counting: DiskActivity.counter) { heartbeat in try load(heartbeat) }
        logger.info("disk inspected read-only (plan): map \(loaded.state.mapStatus) generation \(loaded.state.generation)")
        try channel.send(.diskState(loaded.state), in: &session)
        var first = 0
        while first < loaded.map.count {
            let n = Swift.min(Message.maxMapChunkEntries, loaded.map.count - first)
            try channel.send(.mapChunk(firstIndex: UInt64(first), entries: (first..<first + n).map { loaded.map[$0] }), in: &session)
            first += n
        }
    }

    private func load(_ heartbeat: Heartbeat) throws -> MapStore.Loaded {
        let created = {
            MapStore.Loaded(map: BlockMap(blockSize: self.request.blockSize, capacity: self.request.capacity, filledWith: .zero),
                            state: .init(mapStatus: .created, generation: 0,
                                         entryCount: BlockMap.blockCount(capacity: self.request.capacity, blockSize: self.request.blockSize),
                                         note: "no replica yet: the pass would create it"))
        }
        guard let directory = jobDirectory else { return created() }
        heartbeat.step = WorkStep(.waitingForLock)
        let lock = try DiskLock.acquireShared(directory: directory, files: files, wait: options.lockWait)
        defer { lock?.release() }
        let store = FlatReplicaStore(directory: directory)
        guard let replica = try store.open(files, expectedCapacity: request.capacity, readOnly: true) else { return created() }
        heartbeat.step = WorkStep(.map, total: request.capacity)
        var loaded = try MapStore.load(directory: directory, files: files, replica: replica, blockSize: request.blockSize,
                                       workers: options.workers, distrust: try store.outOfBandChange(of: replica), logger: logger,
                                       onHashed: { heartbeat.step = WorkStep(.map, done: $0, total: replica.capacity) })
        if directory.exists(files.journal) {
            let pending = "an unfinished pass is pending (\(files.journal)): the pass would recover it first"
            loaded.state.note = loaded.state.note.isEmpty ? pending : "\(loaded.state.note); \(pending)"
        }
        return loaded
    }
}
