import VZCore

/// Where a job's replicas live: the flat-file store in a job directory today, a store of
/// HotAdd-attached block devices later. The session, recovery and `status` reach replicas only
/// through this, by their `DiskFiles`.
public protocol ReplicaStore: AnyObject {
    associatedtype Stored: Replica
    /// The disk's replica, or nil when it has none. A replica of another size than
    /// `expectedCapacity` is refused: the source disk changed size.
    func open(_ files: DiskFiles, expectedCapacity: UInt64?) throws -> Stored?
    /// The size of the disk's committed replica without opening it for writing, or nil when it
    /// has none (the session's disk-set check compares it with the source's capacity).
    func committedCapacity(_ files: DiskFiles) throws -> UInt64?
    /// Creates an empty (all-zero) replica atomically: it exists whole or not at all.
    func create(_ files: DiskFiles, capacity: UInt64) throws -> Stored
    /// Removes a replica that never committed (an unfinished seed), with its descriptor.
    func removeUncommitted(_ files: DiskFiles) throws
    /// Marks new content at a commit: the CID record (`.vzcid`) with the generation just
    /// committed and the source chain the pass was read from (nil: the source did not say),
    /// then the fresh CID in the replica's descriptor.
    func recordCID(_ cid: UInt32, generation: UInt64, chain: [SourceChainLink]?, of replica: Stored) throws
    /// Why the replica's content cannot be taken to be what the last commit left (its CID is not
    /// the recorded one: written out of band), or nil when it can (or nothing was recorded yet).
    func outOfBandChange(of replica: Stored) throws -> String?
    /// The disks that have any file in the store, sorted.
    func disks() throws -> [String]
}
