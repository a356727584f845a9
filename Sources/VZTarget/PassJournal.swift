import VZCore

/// Before-image protection for one pass over one replica. The apply path calls `protect` with a
/// batch of extents before it writes any of them, so an implementation can make all of their
/// originals durable with one fsync (group commit). `.vzundo` (UndoJournal) is the real one.
public protocol PassJournal: AnyObject {
    /// Makes the current contents of `extents` durable, so that they can be restored, before the
    /// caller overwrites them. Extents already protected in this pass are skipped.
    func protect(_ extents: [Extent], replica: Replica) throws
    /// Called after the new `.vzmap` is durable (the commit point): the journal is no longer needed.
    func discard() throws
}

/// No protection: a test-only switch for the benchmark's unjournaled reference run.
public final class NoJournal: PassJournal {
    public init() {}
    public func protect(_ extents: [Extent], replica: Replica) throws {}
    public func discard() throws {}
}
