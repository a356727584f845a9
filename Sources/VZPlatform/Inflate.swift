import CZlib
import VZCore

/// zlib decompression (Debian's zlib1g), for the compressed grains of streamOptimized VMDKs.
/// Bounded: the caller gives the buffer the data must fill, and data that would inflate past it
/// is an error, never a larger allocation (a deflate stream can expand ~1000:1).
public enum Inflate {
    /// Inflates `input` (a zlib stream, RFC 1950; a raw deflate stream, RFC 1951, is accepted
    /// too, since the VMDK spec names raw deflate) into `output` and returns the number of bytes
    /// produced, which is at most `output.count`. Throws `errorKind`, naming `context`, when the
    /// input is malformed or holds more than `output.count` bytes.
    /// Calls inflateInit2_ / inflate / inflateEnd (inflateInit2 is a C macro Swift cannot see).
    public static func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer,
                                  context: String, errorKind: VZError.Kind = .sourceIO) throws -> Int {
        guard input.count > 0, input.count <= Int(UInt32.max), output.count <= Int(UInt32.max) else {
            throw VZError(errorKind, "\(context): compressed payload of \(input.count) bytes is not decodable")
        }
        do {
            return try run(input, output, windowBits: 15, context: context, errorKind: errorKind)
        } catch let zlibError as VZError {
            // Lenient: some writers emit raw deflate, as the technote says, instead of a zlib stream.
            if let n = try? run(input, output, windowBits: -15, context: context, errorKind: errorKind) { return n }
            throw zlibError
        }
    }

    private static func run(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, windowBits: Int32,
                            context: String, errorKind: VZError.Kind) throws -> Int {
        var s = z_stream()
        let initResult = inflateInit2_(&s, windowBits, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard initResult == Z_OK else { throw VZError(errorKind, "\(context): inflateInit2 failed (\(initResult))") }
        defer { inflateEnd(&s) }
        s.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self))
        s.avail_in = uInt(input.count)
        // One spare byte past the caller's buffer would need an allocation; instead a stream that
        // fills the buffer exactly is checked for more output with a 1-byte scratch below.
        s.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self)
        s.avail_out = uInt(output.count)
        var r = inflate(&s, Z_FINISH)
        if (r == Z_BUF_ERROR || r == Z_OK) && s.avail_out == 0 {
            // The buffer is full and the stream has not ended: is there more data?
            var scratch: UInt8 = 0
            r = withUnsafeMutablePointer(to: &scratch) { p -> Int32 in
                s.next_out = p
                s.avail_out = 1
                return inflate(&s, Z_FINISH)
            }
            if s.avail_out == 0 {
                throw VZError(errorKind, "\(context): compressed grain inflates to more than \(output.count) bytes")
            }
        }
        guard r == Z_STREAM_END else {
            let why = s.msg.map { String(cString: $0) } ?? "zlib error \(r)"
            throw VZError(errorKind, "\(context): compressed grain is malformed (\(why))")
        }
        return output.count - Int(s.avail_out)
    }
}
