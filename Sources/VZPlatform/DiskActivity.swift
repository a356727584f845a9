import VZCore

/// This process's file I/O as one growing count: bytes read and written through `PosixFile`,
/// plus one for every fsync, rename, unlink and hole punched once it has completed. The target
/// agent's heartbeat reports it to the source (`MessageChannel.withHeartbeat(counting:)`), so the
/// long steps deep in the target — rebuilding a map by hashing the replica, rolling back,
/// journaling, the fsyncs of a commit — prove they advance without each being given a counter.
/// One long fsync is one step: it counts when it returns.
public enum DiskActivity {
    public static let counter = ProgressCounter()
}
