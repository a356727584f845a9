import VZCore

/// The source's side of a session, the mirror of `TargetSessionStateMachine` (Docs/protocol.md,
/// "Session rules"): asked before every send, it says whether the source may send it now; fed
/// every message the target sends, it says what to do next or throws. No I/O: `SourceAgent` and
/// `DiskReplicator` read and write the stream and do what it says.
///
/// It checks the map's framing (entry count = the disk's block count, chunks contiguous, in
/// order, non-empty, not past the disk) and the geometry of every block and zero extent before
/// it leaves; the driver sizes the map from its own capacity, never from a count the target sent.
/// Any error thrown by `receive` ends the session: the machine is then `.ended`.
public struct SourceSessionStateMachine: Sendable {
    public enum State: Equatable, Sendable {
        /// Banners exchanged; the source sends hello.
        case start
        /// hello sent; only helloAck is accepted.
        case awaitingHelloAck
        /// Between disks: the source sends openDisk or bye. `committed` names the disk committed last.
        case idle(committed: String?)
        /// openDisk sent; only diskState is accepted.
        case awaitingDiskState(DiskGeometry)
        /// diskState received; only the map chunk starting at entry `next` is accepted.
        case receivingMap(DiskGeometry, next: UInt64)
        /// The whole map is in: the source sends blocks and zero extents, then commitDisk. The
        /// target sends nothing (but keepalive or error) meanwhile.
        case sendingBlocks(DiskGeometry)
        /// commitDisk sent; only diskCommitted is accepted.
        case awaitingCommit(DiskGeometry)
        /// Between disks, after the whole map of a disk opened read-only arrived (`plan`): the
        /// source sends openDisk or bye, never a block, zero extent or commit of that disk.
        case inspected(DiskGeometry)
        /// bye sent, or the session failed.
        case ended
    }

    /// What the driver does for a received message.
    public enum Action: Equatable, Sendable {
        /// A keepalive: nothing to do.
        case ignore
        /// helloAck: the target accepted the job.
        case connected(targetVersion: String)
        /// diskState, its entry count checked; `mapComplete` when the disk has no blocks.
        case diskState(Message.DiskState, mapComplete: Bool)
        /// A map chunk that continues the map; `mapComplete` when it was the last.
        case mapChunk(firstIndex: Int, entries: [BlockMap.Entry], mapComplete: Bool)
        /// diskCommitted: the disk's pass is durable.
        case committed(Message.DiskCommitted)
    }

    public private(set) var state: State = .start
    /// The target's protocol version (its banner): from 3 on the source sends diskSet before the
    /// first openDisk and diskChain before each commitDisk; before 3 neither.
    public let peerProtocolVersion: Int
    public private(set) var diskSetSent = false
    public private(set) var chainSent = false

    public init(peerProtocolVersion: Int = 2) { self.peerProtocolVersion = peerProtocolVersion }

    /// The target takes diskSet and diskChain (protocol 3).
    public var speaksDiskSets: Bool { peerProtocolVersion >= 3 }

    // MARK: sending

    /// Checks that the source may send `message` now, and moves on as if it was sent. keepalive
    /// and error may always be sent (error ends the session). Sending out of turn is a bug of
    /// the source: the error is `internal`.
    public mutating func send(_ message: Message) throws {
        switch (state, message) {
        case (_, .keepalive), (_, .progress):
            return
        case (_, .error):
            state = .ended
        case (_, .helloAck), (_, .diskState), (_, .mapChunk), (_, .diskCommitted):
            throw VZError(.internal, "source: refusing to send \(message.type): only the target sends it")
        case (.start, .hello):
            state = .awaitingHelloAck
        case (.idle(nil), .diskSet) where speaksDiskSets && !diskSetSent:
            diskSetSent = true
        case (_, .diskSet) where !speaksDiskSets, (_, .diskChain) where !speaksDiskSets:
            throw refusal(message, "to a version-\(peerProtocolVersion) target")
        case (.idle, .openDisk(let request)), (.inspected, .openDisk(let request)):
            guard let g = DiskGeometry(request) else { throw refusal(message, "with a block size of 0") }
            // A read-only open (plan) needs no disk set: it changes nothing the set guards.
            guard diskSetSent || !speaksDiskSets || request.readOnly else { throw refusal(message, "before diskSet") }
            state = .awaitingDiskState(g)
            chainSent = false
        case (.sendingBlocks, .diskChain) where !chainSent:
            chainSent = true
        case (.sendingBlocks, .commitDisk) where speaksDiskSets && !chainSent:
            throw refusal(message, "before diskChain")
        case (.idle, .bye), (.inspected, .bye):
            state = .ended
        case (.inspected(let g), .blockData), (.inspected(let g), .zeroExtent), (.inspected(let g), .commitDisk):
            throw VZError(.internal, "source: refusing to send \(message.type) for \(g), which was opened read-only")
        case let (.sendingBlocks(g), .blockData(b)):
            if let problem = g.problem(with: b) { throw VZError(.internal, "source: refusing to send \(problem)") }
        case let (.sendingBlocks(g), .zeroExtent(e)):
            if let problem = g.problem(withZeroExtent: e) { throw VZError(.internal, "source: refusing to send \(problem)") }
        case let (.sendingBlocks(g), .commitDisk):
            state = .awaitingCommit(g)
        default:
            throw refusal(message, state.phrase)
        }
    }

    /// The check of `send(.blockData(…))` for a frame encoded elsewhere (the pipeline encodes
    /// block frames on worker threads, straight into their buffers).
    public mutating func sendBlockData(offset: UInt64, rawLength: UInt32, payloadCount: Int) throws {
        guard case let .sendingBlocks(g) = state else {
            throw VZError(.internal, "source: refusing to send blockData \(state.phrase)")
        }
        if let problem = g.problem(withBlockAt: offset, rawLength: rawLength, encoding: nil, payloadCount: payloadCount) {
            throw VZError(.internal, "source: refusing to send \(problem)")
        }
    }

    private func refusal(_ m: Message, _ phrase: String) -> VZError {
        VZError(.internal, "source: refusing to send \(m.type) \(phrase)")
    }

    // MARK: receiving

    public mutating func receive(_ message: Message) throws -> Action {
        switch message {
        case .keepalive, .progress:
            return .ignore
        case let .error(kind, text):
            state = .ended
            throw SourceSessionStateMachine.peerError(kind: kind, message: text)
        default:
            do {
                return try step(message)
            } catch {
                state = .ended
                throw error
            }
        }
    }

    /// The stream ended between frames. The source reads nothing after bye, so this is always
    /// the loss of the connection, named by what was awaited.
    public mutating func receiveEndOfStream() throws {
        if state == .ended { return }
        let phrase = state.phrase
        state = .ended
        throw VZError(.connectionLost, "target: connection closed \(phrase)")
    }

    /// The error an `error` frame from the target stands for: the target's kind and message.
    public static func peerError(kind: String, message: String) -> VZError {
        VZError(VZError.Kind(rawValue: kind) ?? .targetRefused, "target: \(message)")
    }

    private mutating func step(_ m: Message) throws -> Action {
        switch (state, m) {
        case let (.awaitingHelloAck, .helloAck(version)):
            state = .idle(committed: nil)
            return .connected(targetVersion: version)
        case let (.awaitingDiskState(g), .diskState(s)):
            guard s.entryCount == g.blockCount else {
                throw VZError(.protocolViolation, "target: map of \(g) has \(s.entryCount) entries, the disk has \(g.blockCount) blocks")
            }
            state = g.blockCount == 0 ? afterMap(g) : .receivingMap(g, next: 0)
            return .diskState(s, mapComplete: g.blockCount == 0)
        case let (.receivingMap(g, next), .mapChunk(first, entries)):
            if let problem = g.problem(withMapChunkAt: first, count: entries.count, expected: next) {
                throw VZError(.protocolViolation, "target: \(problem)")
            }
            let after = next + UInt64(entries.count)
            let complete = after == g.blockCount
            state = complete ? afterMap(g) : .receivingMap(g, next: after)
            return .mapChunk(firstIndex: Int(first), entries: entries, mapComplete: complete)
        case let (.awaitingCommit(g), .diskCommitted(c)):
            state = .idle(committed: g.disk)
            return .committed(c)
        default:
            throw VZError(.protocolViolation, "target: unexpected \(m.type) frame \(state.phrase)")
        }
    }
}

extension SourceSessionStateMachine {
    /// Once the map is in: blocks for a disk being replicated, nothing for one opened read-only.
    private func afterMap(_ g: DiskGeometry) -> State { g.readOnly ? .inspected(g) : .sendingBlocks(g) }
}

extension SourceSessionStateMachine.State {
    /// Where the session is, for messages: "while waiting for the map of disk 'd0'".
    var phrase: String {
        switch self {
        case .start: return "before hello"
        case .awaitingHelloAck: return "while waiting for the target's answer to hello"
        case .idle(nil): return "between disks, before openDisk"
        case let .idle(committed?): return "between disks (after disk '\(committed)' was committed)"
        case let .awaitingDiskState(g): return "while waiting for the state of \(g)"
        case let .receivingMap(g, next): return "while waiting for the map of \(g) (entry \(next) of \(g.blockCount))"
        case let .sendingBlocks(g): return "while the source sends the blocks of \(g)"
        case let .awaitingCommit(g): return "while waiting for the commit of \(g)"
        case let .inspected(g): return "between disks (after the map of \(g), opened read-only)"
        case .ended: return "after the session ended"
        }
    }
}
