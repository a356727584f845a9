import VZCore

/// The target's side of a session (Docs/protocol.md, "Session rules"): a value fed every message
/// the source sends, which says what to do next or throws; and asked before every send, so the
/// target never sends out of turn. It does no I/O and knows nothing of files: `TargetServer` and
/// `DiskSession` read and write the stream and do what it says.
///
/// The source's order: hello; per disk openDisk, blockData/zeroExtent, commitDisk; bye. The
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
        /// bye: the session ended normally.
        case end
    }

    /// Largest capacity the target accepts for a disk (1 PiB).
    public static let maxCapacity: UInt64 = 1 << 50

    public private(set) var state: State = .awaitingHello

    public init() {}

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
        case .idle: why = "without bye"
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

        case let (.idle, .openDisk(request)):
            state = .openingDisk(try TargetSessionStateMachine.accept(request))
            return .openDisk(request)
        case (.idle, .bye):
            state = .ended
            return .end
        case let (.idle(committed?), .commitDisk):
            throw VZError(.protocolViolation, "source: commitDisk twice: disk '\(committed)' is already committed")

        case let (.receivingBlocks(g), .blockData(b)):
            if let problem = g.problem(with: b) { throw VZError(.protocolViolation, "source: \(problem)") }
            return .applyBlock(b)
        case let (.receivingBlocks(g), .zeroExtent(e)):
            if let problem = g.problem(withZeroExtent: e) { throw VZError(.protocolViolation, "source: \(problem)") }
            return .applyZero(e)
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
        case (_, .hello), (_, .openDisk), (_, .blockData), (_, .zeroExtent), (_, .commitDisk), (_, .bye):
            throw VZError(.internal, "target: refusing to send \(message.type): only the source sends it")
        case (.greeting, .helloAck):
            state = .idle(committed: nil)
        case let (.openingDisk(g), .diskState(s)):
            guard s.entryCount == g.blockCount else {
                throw refusal(message, "with \(s.entryCount) entries for \(g), which has \(g.blockCount) blocks")
            }
            state = g.blockCount == 0 ? .receivingBlocks(g) : .sendingMap(g, next: 0)
        case let (.sendingMap(g, next), .mapChunk(first, entries)):
            if let problem = g.problem(withMapChunkAt: first, count: entries.count, expected: next) {
                throw VZError(.internal, "target: refusing to send a \(problem)")
            }
            let after = next + UInt64(entries.count)
            state = after == g.blockCount ? .receivingBlocks(g) : .sendingMap(g, next: after)
        case let (.committing(g), .diskCommitted):
            state = .idle(committed: g.disk)
        default:
            throw refusal(message, state.phrase)
        }
    }

    private func refusal(_ m: Message, _ phrase: String) -> VZError {
        VZError(.internal, "target: refusing to send \(m.type) \(phrase)")
    }
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
        case .ended: return "after the session ended"
        }
    }
}
