/// A bidirectional byte stream between the two agents: a child process's stdio, an SSH exec
/// channel, or stdin/stdout of `vzrepl-target serve --stdio`. Reads and writes may happen on
/// different threads at the same time; each direction is used by one thread only.
public protocol ByteStream: AnyObject {
    /// Reads up to `buffer.count` bytes; returns 0 at end of stream. Throws `VZError` on failure.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// Writes all of `bytes` or throws.
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Closes the writing direction (the peer reads end of stream).
    func closeWrite()
    /// Releases everything; after this neither direction may be used.
    func close()
}

extension ByteStream {
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }
}
