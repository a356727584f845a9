/// The block size of a job: the unit of hashing, of the map and of every block frame. A power of
/// two from 64 KiB to 8 MiB; one rule, checked where a block size enters (the job file, the wire,
/// a map or journal header).
public enum BlockSize {
    public static let minBytes: UInt32 = 64 << 10
    public static let maxBytes: UInt32 = 8 << 20
    public static let defaultBytes: UInt32 = 1 << 20

    /// Why `bytes` is not a block size, or nil.
    public static func problem(with bytes: UInt32) -> String? {
        guard bytes >= minBytes, bytes <= maxBytes, bytes & (bytes - 1) == 0 else {
            return "\(bytes) is not a power of two from 65536 (64 KiB) to 8388608 (8 MiB)"
        }
        return nil
    }
}
