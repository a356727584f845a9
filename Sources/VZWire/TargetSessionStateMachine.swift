import VZCore

/// The target's side of a session (Docs/protocol.md, "Session rules"): a value fed every message
/// the source sends, which says what to do next or throws; and asked before every send, so the
/// target never sends out of turn. It does no I/O and knows nothing of files: `TargetServer` and
/// `DiskSession` read and write the stream and do what it says.
///
/// The source's order: hello; (protocol 3) diskSet; per disk openDisk, blockData/zeroExtent,
/// (protocol 3) diskChain, commitDisk; bye. The
/// target's: helloAck; per disk diskState, mapChunks covering the disk once in order, and
/// diskCommitted. keepalive may come anywhere; an `error` from the source ends the session with
/// the source's kind. Any error thrown ends the session: the machine is then `.ended`.
public struct TargetSessionStateMachine: Sendable {
    public enum State: Equatable, Sendable {
        /// Banners exchanged; the first frame must be hello.
        case awaitingHello
        /// hello received; the target owes helloAck.
        case greeting
        /// Between disks: openDisk or bye. `committed` names the disk committed last.
        case idle(committed: String?)
        /// openDisk received and its geometry accepted; the target owes diskState.
        case openingDisk(DiskGeometry)
        /// diskState sent; the target owes the map chunks from entry `next` on.
        case sendingMap(DiskGeometry, next: UInt64)
        /// The whole map is sent: blockData and zeroExtent inside the disk, then commitDisk.
        case receivingBlocks(DiskGeometry)
        /// commitDisk received; the target owes diskCommitted.
        case committing(DiskGeometry)
        /// Between disks, after the whole map of a disk opened read-only was sent (`plan`,
        /// protocol version 3): openDisk or bye; every blockData, zeroExtent and commitDisk is
        /// refused, so nothing of that disk can be written.
        case inspected(DiskGeometry)
        /// bye received, or the session failed: nothing is accepted any more.
        case ended
    }

    /// What the driver does for a received message.
    public enum Action: Equatable, Sendable {
        /// A keepalive: nothing to do.
        case ignore
        /// hello: check the job, then send helloAck.
        case greet(job: String, sourceVersion: String, passId: String = "")
        /// Open (or create) the disk's replica, then send diskState and the map.
        case openDisk(Message.OpenDisk)
        /// A block inside the open disk, checked against its geometry: decompress, verify, write.
        case applyBlock(Message.BlockData)
        /// A zero extent inside the open disk, checked against its geometry: punch it.
        case applyZero(Extent)
        /// commitDisk: commit the pass, then send diskCommitted.
        case commit(scannedBytes: UInt64)
        /// diskSet (protocol 3): compare the job's disks with the set recorded for the job (or
        /// record it) before anything is written. Names checked: valid disk names, no two equal.
        case checkDiskSet([Message.DiskSetEntry])
        /// diskChain (protocol 3): the open disk's source chain, to record at its commit.
        case recordChain([SourceChainLink])
        /// bye: the session ended normally.
        case end
    }

    /// Largest capacity the target accepts for a disk (1 PiB).
    public static let maxCapacity: UInt64 = 1 << 50

    public private(set) var state: State = .awaitingHello
    /// The source's protocol version (its banner): from 3 on it must send diskSet before the
    /// first openDisk and diskChain before each commitDisk; before 3 it may send neither.
    public let peerProtocolVersion: Int
    /// The disks of the session's diskSet (protocol 3), once received.
    public private(set) var diskSet: Set<String>?
    /// The open disk's diskChain arrived.
    public private(set) var chainReceived = false

    public init(peerProtocolVersion: Int = 2) { self.peerProtocolVersion = peerProtocolVersion }

    /// The source sends diskSet and diskChain (protocol 3).
    public var speaksDiskSets: Bool { peerProtocolVersion >= 3 }

    // MARK: receiving

    public mutating func receive(_ message: Message) throws -> Action {
        switch message {
        case .keepalive, .progress:
            return .ignore
        case let .error(kind, text):
            state = .ended
            throw TargetSessionStateMachine.peerError(kind: kind, message: text)
        default:
            do {
                return try step(message)
            } catch {
                state = .ended
                throw error
            }
        }
    }

    /// The stream ended between frames: normal only after bye.
    public mutating func receiveEndOfStream() throws -> Action {
        let why: String
        switch state {
        case .ended: return .end
        case .awaitingHello: why = "while waiting for hello"
        case .idle, .inspected: why = "without bye"
        case let .receivingBlocks(g): why = "while waiting for blocks of \(g)"
        default: why = state.phrase
        }
        state = .ended
        throw VZError(.connectionLost, "source: connection closed \(why)")
    }

    /// The error an `error` frame from the source stands for: the source's kind, its message.
    public static func peerError(kind: String, message: String) -> VZError {
        VZError(VZError.Kind(rawValue: kind) ?? .connectionLost, "the source gave up: \(message)")
    }

    private mutating func step(_ m: Message) throws -> Action {
        switch (state, m) {
        case let (.awaitingHello, .hello(job, version, passId)):
            // It goes into every log line and the undo journal: only a UUID is accepted.
            guard passId.isEmpty || PassIdentifier.isValid(passId) else {
                throw VZError(.protocolViolation, "source: hello field 'passId': '\(passId.prefix(64))' is not a UUID (8-4-4-4-12 hex digits)")
            }
            state = .greeting
            return .greet(job: job, sourceVersion: version, passId: passId.lowercased())
        case (.awaitingHello, _):
            throw violation(m, "before hello (the first frame must be hello)")

        case let (.idle(nil), .diskSet(disks)) where speaksDiskSets && diskSet == nil:
            diskSet = try TargetSessionStateMachine.accept(disks)
            return .checkDiskSet(disks)
        case (_, .diskSet) where !speaksDiskSets, (_, .diskChain) where !speaksDiskSets:
            throw violation(m, "from a version-\(peerProtocolVersion) source (\(m.type) is version 3)")
        case (.idle, .diskSet) where diskSet != nil:
            throw VZError(.protocolViolation, "source: a second diskSet")
        case (.idle, .openDisk(let request)), (.inspected, .openDisk(let request)):
            // A read-only open (plan) may come without a disk set: nothing it does is guarded by one.
            if speaksDiskSets && !(request.readOnly && diskSet == nil) {
                guard let set = diskSet else {
                    throw VZError(.protocolViolation, "source: openDisk (disk '\(request.disk)') before diskSet (a version-3 source sends the job's disk set first)")
                }
                guard set.contains(request.disk) else {
                    throw VZError(.protocolViolation, "source: openDisk of disk '\(request.disk)', which is not in the session's diskSet (\(set.sorted().joined(separator: ", ")))")
                }
            }
            state = .openingDisk(try TargetSessionStateMachine.accept(request))
            chainReceived = false
            return .openDisk(request)
        case (.idle, .bye), (.inspected, .bye):
            state = .ended
            return .end
        case (.inspected(let g), .blockData), (.inspected(let g), .zeroExtent), (.inspected(let g), .commitDisk):
            throw VZError(.protocolViolation, "source: \(m.type) for \(g), which was opened read-only: the target writes nothing for it")
        case let (.idle(committed?), .commitDisk):
            throw VZError(.protocolViolation, "source: commitDisk twice: disk '\(committed)' is already committed")

        case let (.receivingBlocks(g), .blockData(b)):
            if let problem = g.problem(with: b) { throw VZError(.protocolViolation, "source: \(problem)") }
            return .applyBlock(b)
        case let (.receivingBlocks(g), .zeroExtent(e)):
            if let problem = g.problem(withZeroExtent: e) { throw VZError(.protocolViolation, "source: \(problem)") }
            return .applyZero(e)
        case let (.receivingBlocks(g), .diskChain(links)):
            guard !chainReceived else { throw VZError(.protocolViolation, "source: diskChain twice for \(g)") }
            chainReceived = true
            return .recordChain(links)
        case let (.receivingBlocks(g), .commitDisk) where speaksDiskSets && !chainReceived:
            throw VZError(.protocolViolation, "source: commitDisk before diskChain for \(g) (a version-3 source sends the disk's chain first)")
        case let (.receivingBlocks(g), .commitDisk(scanned)):
            state = .committing(g)
            return .commit(scannedBytes: scanned)
        case let (.receivingBlocks(g), .openDisk(other)):
            throw VZError(.protocolViolation, "source: a second openDisk (disk '\(other.disk)') while \(g) is open")
        case let (.receivingBlocks(g), .bye):
            throw VZError(.protocolViolation, "source: bye while \(g) is open (no commitDisk)")
        case let (.committing(g), .commitDisk):
            throw VZError(.protocolViolation, "source: commitDisk twice for \(g)")

        default:
            throw violation(m, state.phrase)
        }
    }

    private func violation(_ m: Message, _ phrase: String) -> VZError {
        VZError(.protocolViolation, "source: unexpected \(m.type) frame \(phrase)")
    }

    /// The names of a diskSet: valid disk names (the rules of openDisk's), none twice.
    static func accept(_ disks: [Message.DiskSetEntry]) throws -> Set<String> {
        var names = Set<String>()
        for (i, d) in disks.enumerated() {
            if let why = NameRules.problem(withDisk: d.name) {
                throw VZError(.protocolViolation, "source: diskSet field 'disks[\(i)].name': disk name \(why)")
            }
            guard names.insert(d.name).inserted else {
                throw VZError(.protocolViolation, "source: diskSet field 'disks[\(i)].name': disk '\(d.name)' appears twice")
            }
        }
        return names
    }

    /// The geometries the target works with: a power-of-two block size from 64 KiB to 8 MiB, a
    /// capacity from 1 byte to 1 PiB (so that the map's entry count fits in memory).
    static func accept(_ request: Message.OpenDisk) throws -> DiskGeometry {
        let bs = request.blockSize
        guard bs >= JobConfig.minBlockSize, bs <= JobConfig.maxBlockSize, bs & (bs - 1) == 0,
              let geometry = DiskGeometry(request) else {
            throw VZError(.targetRefused, "disk '\(request.disk)': block size \(bs) is not a power of two from 64 KiB to 8 MiB")
        }
        guard request.capacity > 0, request.capacity <= maxCapacity else {
            throw VZError(.targetRefused, "disk '\(request.disk)': capacity \(request.capacity) is outside 1 byte ... 1 PiB")
        }
        return geometry
    }

    // MARK: sending

    /// Checks that the target may send `message` now, and moves on as if it was sent. keepalive
    /// and error may always be sent (error ends the session).
    public mutating func send(_ message: Message) throws {
        switch (state, message) {
        case (_, .keepalive), (_, .progress):
            return
        case (_, .error):
            state = .ended
        case (_, .hello), (_, .openDisk), (_, .blockData), (_, .zeroExtent), (_, .commitDisk), (_, .bye), (_, .diskSet), (_, .diskChain):
            throw VZError(.internal, "target: refusing to send \(message.type): only the source sends it")
        case (.greeting, .helloAck):
            state = .idle(committed: nil)
        case let (.openingDisk(g), .diskState(s)):
            guard s.entryCount == g.blockCount else {
                throw refusal(message, "with \(s.entryCount) entries for \(g), which has \(g.blockCount) blocks")
            }
            state = g.blockCount == 0 ? afterMap(g) : .sendingMap(g, next: 0)
        case let (.sendingMap(g, next), .mapChunk(first, entries)):
            if let problem = g.problem(withMapChunkAt: first, count: entries.count, expected: next) {
                throw VZError(.internal, "target: refusing to send a \(problem)")
            }
            let after = next + UInt64(entries.count)
            state = after == g.blockCount ? afterMap(g) : .sendingMap(g, next: after)
        case let (.committing(g), .diskCommitted):
            state = .idle(committed: g.disk)
        default:
            throw refusal(message, state.phrase)
        }
    }

    private func refusal(_ m: Message, _ phrase: String) -> VZError {
        VZError(.internal, "target: refusing to send \(m.type) \(phrase)")
    }

    /// Once the map is sent: blocks for a disk being replicated, nothing for one opened read-only.
    private func afterMap(_ g: DiskGeometry) -> State { g.readOnly ? .inspected(g) : .receivingBlocks(g) }
}

extension TargetSessionStateMachine.State {
    /// Where the session is, for messages: "between disks", "while disk 'd0' commits".
    var phrase: String {
        switch self {
        case .awaitingHello: return "before hello"
        case .greeting: return "before the target's helloAck"
        case .idle(nil): return "between disks, before openDisk"
        case let .idle(committed?): return "between disks (after disk '\(committed)' was committed)"
        case let .openingDisk(g): return "while the target opens \(g), before its diskState"
        case let .sendingMap(g, next): return "while the target sends the map of \(g) (at entry \(next) of \(g.blockCount))"
        case let .receivingBlocks(g): return "while receiving the blocks of \(g)"
        case let .committing(g): return "while \(g) commits"
        case let .inspected(g): return "between disks (after the map of \(g), opened read-only)"
        case .ended: return "after the session ended"
        }
    }
}
