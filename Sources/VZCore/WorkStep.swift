/// Which long step a peer is in and how far it got: the protocol-version-3 trailing fields of a
/// `progress` frame (Docs/protocol.md §3), so the source can show a target that rebuilds a map or
/// waits for a disk lock instead of a silence. `done` and `total` are bytes of that step (0 and 0
/// for a step that cannot be measured, such as waiting for a lock).
public struct WorkStep: Equatable, Sendable {
    public enum Phase: UInt8, Sendable, CaseIterable {
        /// Nothing more specific to say.
        case working = 0
        /// Waiting for another session's lock on the disk (`serve --lock-wait`).
        case waitingForLock = 1
        /// Reading or rebuilding the disk's map (hashing the replica when the map is untrusted).
        case map = 2
        /// Rolling back an unfinished earlier pass before this one starts.
        case recover = 3
        /// Receiving and applying blocks.
        case apply = 4
        /// Flushing the replica and writing the new map.
        case commit = 5

        /// The name in events: `waiting-for-lock`, `map`, …
        public var name: String {
            switch self {
            case .working: return "working"
            case .waitingForLock: return "waiting-for-lock"
            case .map: return "map"
            case .recover: return "recover"
            case .apply: return "apply"
            case .commit: return "commit"
            }
        }
    }

    public var phase: Phase
    public var done: UInt64
    public var total: UInt64

    public init(_ phase: Phase, done: UInt64 = 0, total: UInt64 = 0) {
        self.phase = phase; self.done = done; self.total = total
    }

    /// The encoded size of the trailing fields: u8 phase, u64 done, u64 total.
    public static let encodedSize = 17
}
