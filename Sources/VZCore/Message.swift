/// The messages of the vzrepl protocol, version 3 (Docs/protocol.md). `S>T` goes from the source
/// agent to the target agent, `T>S` the other way.
public enum Message: Equatable, Sendable {
    /// S>T: first frame after the banners. `passId` (protocol version 3; empty: none) is the
    /// source's id of the pass, a UUID, which both agents log as `pass=`; it is only sent to a
    /// peer whose banner says 3 or more (a version-2 target would refuse the trailing field).
    case hello(job: String, sourceVersion: String, passId: String = "")
    /// T>S: the target accepts the job.
    case helloAck(targetVersion: String)
    /// S>T: start a disk session.
    case openDisk(OpenDisk)
    /// T>S: what the target has for the disk; followed by `mapChunk`s covering `entryCount` entries.
    case diskState(DiskState)
    /// T>S: `entries` of the block map starting at block `firstIndex`.
    case mapChunk(firstIndex: UInt64, entries: [BlockMap.Entry])
    /// S>T: one whole block (the last block of a disk may be short).
    case blockData(BlockData)
    /// S>T: an extent that reads as zeros on the source.
    case zeroExtent(Extent)
    /// S>T: every block of the disk was sent; commit.
    case commitDisk(scannedBytes: UInt64)
    /// T>S: the disk's pass is durable.
    case diskCommitted(DiskCommitted)
    /// S>T: the session ends normally.
    case bye
    /// Either way: the sender gives up; `kind` is a `VZError.Kind` raw value.
    case error(kind: String, message: String)
    /// Either way: "still working" during a long silence (hashing an unchanged disk, rebuilding a
    /// map, flushing a replica), so the peer's idle timeout only fires for a dead peer.
    case keepalive
    /// Either way (protocol version 2): like a keepalive, and the sender's work count, which
    /// grows while a long step advances. A count that did not grow is only a keepalive. From
    /// protocol version 3 it may also say which step the sender is in (`step`, trailing fields
    /// sent only to a version-3 peer).
    case progress(UInt64, step: WorkStep? = nil)
    /// S>T (protocol version 3): every disk of the job, sent once after helloAck and before the
    /// first openDisk, by every session of the job; the target compares it with the set it
    /// recorded for the job before anything is written.
    case diskSet([DiskSetEntry])
    /// S>T (protocol version 3): the VMDK chain the open disk was read from, leaf first (empty
    /// for a raw source); sent once per disk, after its blocks and before commitDisk. The target
    /// records it in the disk's `.vzcid` at the commit.
    case diskChain([SourceChainLink])

    public enum MessageType: UInt8 {
        case hello = 1, helloAck = 2, openDisk = 3, diskState = 4, mapChunk = 5, blockData = 6
        case zeroExtent = 7, commitDisk = 8, diskCommitted = 9, bye = 10, error = 11, keepalive = 12, progress = 13
        // 14 ... 19 are left to other version-3 additions.
        case diskSet = 20, diskChain = 21
    }

    public struct OpenDisk: Equatable, Sendable {
        public var disk: String
        public var capacity: UInt64
        public var blockSize: UInt32
        public var mode: ReplicationMode
        /// Protocol version 3 (`vzrepl-source plan`): report the disk's state and map and change
        /// nothing — no replica, journal, map or lock file is created or written; the target
        /// refuses every block, zero extent and commit for the disk. Sent as a trailing flags
        /// byte (bit 0), only when set, so a version-2 frame is unchanged.
        public var readOnly: Bool
        public init(disk: String, capacity: UInt64, blockSize: UInt32, mode: ReplicationMode, readOnly: Bool = false) {
            self.disk = disk; self.capacity = capacity; self.blockSize = blockSize; self.mode = mode; self.readOnly = readOnly
        }
        /// The trailing flags byte's bits.
        public static let readOnlyFlag: UInt8 = 1
    }

    public struct DiskState: Equatable, Sendable {
        public enum MapStatus: UInt8, Sendable {
            /// A new replica: every block reads as zeros; the map says so.
            case created = 0
            /// The `.vzmap` beside the replica passed its checks.
            case valid = 1
            /// The `.vzmap` was missing or failed its checks; the map was rebuilt by hashing the replica.
            case rebuilt = 2
            /// The replica's descriptor CID differs from the target's CID record (`.vzcid`): the
            /// replica was written out of band, so its map was rebuilt by hashing the replica.
            case replicaModified = 3
        }
        public var mapStatus: MapStatus
        public var generation: UInt64
        public var entryCount: UInt64
        /// Why the map was rebuilt, for the source's event; empty otherwise.
        public var note: String
        public init(mapStatus: MapStatus, generation: UInt64, entryCount: UInt64, note: String = "") {
            self.mapStatus = mapStatus; self.generation = generation; self.entryCount = entryCount; self.note = note
        }
    }

    public struct BlockData: Equatable, Sendable {
        public enum Encoding: UInt8, Sendable { case raw = 0, lz4 = 1 }
        public var offset: UInt64
        public var rawLength: UInt32
        public var encoding: Encoding
        public var sha256: [UInt8]
        /// A slice of the received frame (no copy on the receive path).
        public var payload: ArraySlice<UInt8>
        public init(offset: UInt64, rawLength: UInt32, encoding: Encoding, sha256: [UInt8], payload: [UInt8]) {
            self.init(offset: offset, rawLength: rawLength, encoding: encoding, sha256: sha256, payload: payload[...])
        }
        public init(offset: UInt64, rawLength: UInt32, encoding: Encoding, sha256: [UInt8], payload: ArraySlice<UInt8>) {
            self.offset = offset; self.rawLength = rawLength; self.encoding = encoding
            self.sha256 = sha256; self.payload = payload
        }
    }

    public struct DiskCommitted: Equatable, Sendable {
        public var generation: UInt64
        public var changedBytes: UInt64
        public var zeroBytes: UInt64
        public init(generation: UInt64, changedBytes: UInt64, zeroBytes: UInt64) {
            self.generation = generation; self.changedBytes = changedBytes; self.zeroBytes = zeroBytes
        }
    }

    /// One disk of a `diskSet`: its name and its capacity on the source now.
    public struct DiskSetEntry: Equatable, Sendable {
        public var name: String
        public var capacity: UInt64
        public init(name: String, capacity: UInt64) { self.name = name; self.capacity = capacity }
    }

    /// Most disks in one `diskSet` (a job's limit: DiskSetFile.maxDisks).
    public static let maxDiskSetEntries = 4096

    /// Largest number of map entries in one `mapChunk` frame (33 bytes each: ~132 KiB a frame).
    public static let maxMapChunkEntries = 4096
    public static let maxNameLength = 255
    /// A pass id is a UUID, 36 characters; the reader takes up to 64.
    public static let maxPassIdLength = 64

    public var type: MessageType {
        switch self {
        case .hello: return .hello
        case .helloAck: return .helloAck
        case .openDisk: return .openDisk
        case .diskState: return .diskState
        case .mapChunk: return .mapChunk
        case .blockData: return .blockData
        case .zeroExtent: return .zeroExtent
        case .commitDisk: return .commitDisk
        case .diskCommitted: return .diskCommitted
        case .bye: return .bye
        case .error: return .error
        case .keepalive: return .keepalive
        case .progress: return .progress
        case .diskSet: return .diskSet
        case .diskChain: return .diskChain
        }
    }

    public func encodedFrame() -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        switch self {
        case let .hello(job, version, passId):
            w.string(job); w.string(version)
            if !passId.isEmpty { w.string(passId) }
        case let .helloAck(version):
            w.string(version)
        case let .openDisk(o):
            w.string(o.disk); w.u64(o.capacity); w.u32(o.blockSize); w.u8(o.mode.wireValue)
            if o.readOnly { w.u8(OpenDisk.readOnlyFlag) }
        case let .diskState(s):
            w.u8(s.mapStatus.rawValue); w.u64(s.generation); w.u64(s.entryCount)
            // The reader takes at most 4096 bytes of note (a long datastore path could exceed it).
            w.string(Message.truncated(s.note, maxBytes: 4096))
        case let .mapChunk(first, entries):
            w = ByteWriter(capacity: 12 + entries.count * BlockMap.Entry.encodedSize)
            w.u64(first); w.u32(UInt32(entries.count))
            for e in entries { e.encode(into: &w) }
        case let .blockData(b):
            return Message.encodeBlockData(b)
        case let .zeroExtent(e):
            w.u64(e.offset); w.u64(e.length)
        case let .commitDisk(scanned):
            w.u64(scanned)
        case let .diskCommitted(c):
            w.u64(c.generation); w.u64(c.changedBytes); w.u64(c.zeroBytes)
        case let .progress(count, step):
            w.u64(count)
            if let step { w.u8(step.phase.rawValue); w.u64(step.done); w.u64(step.total) }
        case let .diskSet(disks):
            w.u16(UInt16(clamping: disks.count))
            for d in disks.prefix(Message.maxDiskSetEntries) { w.string(d.name); w.u64(d.capacity) }
        case let .diskChain(links):
            w.u16(UInt16(clamping: links.count))
            for l in links.prefix(SourceChainLink.maxLinks) { w.string(l.file); w.u32(l.cid); w.u32(l.parentCID) }
        case .bye, .keepalive:
            break
        case let .error(kind, message):
            w.string(kind); w.string(Message.truncated(message, maxBytes: 2000))
        }
        return Frame.header(type: type.rawValue, length: w.bytes.count) + w.bytes
    }

    /// Block frames are the hot path: one allocation, payload copied once.
    private static func encodeBlockData(_ b: BlockData) -> [UInt8] {
        let fixed = 8 + 4 + 1 + 32
        var out = Frame.header(type: MessageType.blockData.rawValue, length: fixed + b.payload.count)
        out.reserveCapacity(Frame.headerSize + fixed + b.payload.count)
        var w = ByteWriter(capacity: fixed)
        w.u64(b.offset); w.u32(b.rawLength); w.u8(b.encoding.rawValue); w.raw(b.sha256)
        out.append(contentsOf: w.bytes)
        out.append(contentsOf: b.payload)
        return out
    }

    /// At most `maxBytes` of UTF-8, cut at a character boundary.
    static func truncated(_ s: String, maxBytes: Int) -> String {
        guard s.utf8.count > maxBytes else { return s }
        var out = ""
        var bytes = 0
        for ch in s {
            let n = ch.utf8.count
            if bytes + n > maxBytes { break }
            out.append(ch)
            bytes += n
        }
        return out
    }

    public static func decode(_ frame: Frame, frameNumber: Int = 0) throws -> Message {
        guard let t = MessageType(rawValue: frame.type) else {
            throw VZError(.protocolViolation, "frame #\(frameNumber): unknown message type \(frame.type)")
        }
        var r = ByteReader(frame.payload, context: "frame #\(frameNumber) (\(t))")
        let m: Message
        switch t {
        case .hello:
            let job = try r.string("job", maxLength: maxNameLength)
            let version = try r.string("sourceVersion", maxLength: 200)
            // Version 3: a trailing pass id; a version-2 hello ends after sourceVersion.
            let passId = r.remaining > 0 ? try r.string("passId", maxLength: maxPassIdLength) : ""
            m = .hello(job: job, sourceVersion: version, passId: passId)
        case .helloAck:
            m = .helloAck(targetVersion: try r.string("targetVersion", maxLength: 200))
        case .openDisk:
            let disk = try r.string("disk", maxLength: maxNameLength)
            let capacity = try r.u64("capacity")
            let blockSize = try r.u32("blockSize")
            let modeByte = try r.u8("mode")
            guard let mode = ReplicationMode(wireValue: modeByte) else { throw r.fail("mode", "unknown mode \(modeByte)") }
            var readOnly = false
            if r.remaining > 0 {
                // Version 3: flags.
                let flags = try r.u8("flags")
                guard flags & ~OpenDisk.readOnlyFlag == 0 else { throw r.fail("flags", "unknown flags 0x\(String(flags, radix: 16))") }
                readOnly = flags & OpenDisk.readOnlyFlag != 0
            }
            m = .openDisk(OpenDisk(disk: disk, capacity: capacity, blockSize: blockSize, mode: mode, readOnly: readOnly))
        case .diskState:
            let sb = try r.u8("mapStatus")
            guard let status = DiskState.MapStatus(rawValue: sb) else { throw r.fail("mapStatus", "unknown status \(sb)") }
            m = .diskState(DiskState(mapStatus: status, generation: try r.u64("generation"),
                                     entryCount: try r.u64("entryCount"), note: try r.string("note")))
        case .mapChunk:
            let first = try r.u64("firstIndex")
            let count = Int(try r.u32("count"))
            guard count <= maxMapChunkEntries else {
                throw r.fail("count", "\(count) entries exceed the limit of \(maxMapChunkEntries)")
            }
            guard r.remaining == count * BlockMap.Entry.encodedSize else {
                throw r.fail("entries", "expected \(count * BlockMap.Entry.encodedSize) bytes for \(count) entries, got \(r.remaining)")
            }
            var entries: [BlockMap.Entry] = []
            entries.reserveCapacity(count)
            for i in 0..<count { entries.append(try BlockMap.Entry.decode(&r, field: "entries[\(i)]")) }
            m = .mapChunk(firstIndex: first, entries: entries)
        case .blockData:
            let offset = try r.u64("offset")
            let rawLength = try r.u32("rawLength")
            let eb = try r.u8("encoding")
            guard let enc = BlockData.Encoding(rawValue: eb) else { throw r.fail("encoding", "unknown encoding \(eb)") }
            let sha = Array(try r.raw(32, "sha256"))
            let payload = try r.raw(r.remaining, "payload")
            if enc == .raw && payload.count != Int(rawLength) {
                throw r.fail("payload", "raw payload of \(payload.count) bytes, rawLength says \(rawLength)")
            }
            return .blockData(BlockData(offset: offset, rawLength: rawLength, encoding: enc, sha256: sha, payload: payload))
        case .zeroExtent:
            m = .zeroExtent(Extent(offset: try r.u64("offset"), length: try r.u64("length")))
        case .commitDisk:
            m = .commitDisk(scannedBytes: try r.u64("scannedBytes"))
        case .diskCommitted:
            m = .diskCommitted(DiskCommitted(generation: try r.u64("generation"), changedBytes: try r.u64("changedBytes"),
                                             zeroBytes: try r.u64("zeroBytes")))
        case .bye:
            m = .bye
        case .keepalive:
            m = .keepalive
        case .progress:
            let count = try r.u64("count")
            guard r.remaining > 0 else { m = .progress(count); break }
            // Version 3: the step the sender is in.
            let pb = try r.u8("phase")
            guard let phase = WorkStep.Phase(rawValue: pb) else { throw r.fail("phase", "unknown phase \(pb)") }
            m = .progress(count, step: WorkStep(phase, done: try r.u64("done"), total: try r.u64("total")))
        case .diskSet:
            let count = Int(try r.u16("count"))
            guard count >= 1, count <= maxDiskSetEntries else { throw r.fail("count", "\(count) disks, a job has 1 to \(maxDiskSetEntries)") }
            // Each entry takes at least 10 bytes: a count the frame cannot hold is refused before the loop.
            guard r.remaining >= count * 10 else { throw r.fail("count", "\(count) disks do not fit in the \(r.remaining) bytes left") }
            var disks: [DiskSetEntry] = []
            disks.reserveCapacity(count)
            for i in 0..<count {
                disks.append(DiskSetEntry(name: try r.string("disks[\(i)].name", maxLength: maxNameLength),
                                          capacity: try r.u64("disks[\(i)].capacity")))
            }
            m = .diskSet(disks)
        case .diskChain:
            let count = Int(try r.u16("count"))
            guard count <= SourceChainLink.maxLinks else { throw r.fail("count", "\(count) links, more than \(SourceChainLink.maxLinks)") }
            guard r.remaining >= count * 10 else { throw r.fail("count", "\(count) links do not fit in the \(r.remaining) bytes left") }
            var links: [SourceChainLink] = []
            for i in 0..<count {
                let file = try r.string("links[\(i)].file", maxLength: SourceChainLink.maxFileBytes)
                guard !file.isEmpty else { throw r.fail("links[\(i)].file", "is empty") }
                links.append(SourceChainLink(file: file, cid: try r.u32("links[\(i)].cid"), parentCID: try r.u32("links[\(i)].parentCID")))
            }
            m = .diskChain(links)
        case .error:
            m = .error(kind: try r.string("kind", maxLength: 64), message: try r.string("message"))
        }
        try r.expectEnd()
        return m
    }
}

/// How a disk's blocks are chosen. The job file names it; CBT comes with its own issue.
public enum ReplicationMode: String, Codable, Sendable, CaseIterable {
    /// Hash every block and send those that differ from the target's map.
    case differential
    /// Send every non-zero block, ignoring the map (a re-seed).
    case full

    var wireValue: UInt8 { self == .differential ? 0 : 1 }
    init?(wireValue: UInt8) {
        switch wireValue {
        case 0: self = .differential
        case 1: self = .full
        default: return nil
        }
    }
}
