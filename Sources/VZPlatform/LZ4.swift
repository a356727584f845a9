import CLZ4
import VZCore

/// lz4 block compression (liblz4). Decompression is bounded: the caller states the exact size
/// the block must have, and anything else is an error (an lz4 stream can expand ~255:1).
public enum LZ4 {
    public static func compressBound(_ n: Int) -> Int { Int(LZ4_compressBound(Int32(n))) }

    /// lz4's acceleration (1 is `LZ4_compress_default`, `lz4 -1`). 2 compresses text-like data
    /// ~25% faster for ~2% more output (issue 12: the source's CPU is the limit on a fast link,
    /// and lz4 was a quarter of it); decompression is no slower.
    public static let acceleration: Int32 = 2

    /// Compresses into `output` (at least `compressBound(input.count)` bytes); returns the
    /// compressed size, or nil when the data did not get smaller (send it raw).
    public static func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int? {
        let n = LZ4_compress_fast(input.baseAddress!.assumingMemoryBound(to: CChar.self),
                                  output.baseAddress!.assumingMemoryBound(to: CChar.self),
                                  Int32(input.count), Int32(output.count), acceleration)
        return n > 0 && Int(n) < input.count ? Int(n) : nil
    }

    /// Decompresses exactly `output.count` bytes or throws, naming `context`.
    public static func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, context: String) throws {
        guard input.count > 0, input.count <= Int(Int32.max), output.count <= Int(Int32.max) else {
            throw VZError(.corruptFrame, "\(context): lz4 payload of \(input.count) bytes is not decodable")
        }
        let n = LZ4_decompress_safe(input.baseAddress!.assumingMemoryBound(to: CChar.self),
                                    output.baseAddress!.assumingMemoryBound(to: CChar.self),
                                    Int32(input.count), Int32(output.count))
        guard n == Int32(output.count) else {
            throw VZError(.corruptFrame, n < 0
                ? "\(context): lz4 payload is malformed (LZ4_decompress_safe returned \(n))"
                : "\(context): lz4 payload decompressed to \(n) bytes, expected \(output.count)")
        }
    }
}
