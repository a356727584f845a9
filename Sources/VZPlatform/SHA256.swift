import COpenSSL
import VZCore

/// SHA-256 through OpenSSL's EVP interface (SHA-NI/AVX2 where the CPU has them).
public enum SHA256 {
    // EVP_sha256() returns a static object; fetching it once avoids a lookup per block.
    private static let md = EVP_sha256()

    public static func digest(_ bytes: UnsafeRawBufferPointer) -> SHA256Digest {
        var out = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var len: UInt32 = 0
        let ok = withUnsafeMutableBytes(of: &out) { o in
            EVP_Digest(bytes.baseAddress, bytes.count, o.baseAddress!.assumingMemoryBound(to: UInt8.self), &len, md, nil)
        }
        precondition(ok == 1 && len == 32, "EVP_Digest(SHA-256) failed")
        // The tuple holds the digest bytes in order; SHA256Digest stores them as little-endian words.
        return SHA256Digest(w0: UInt64(littleEndian: out.0), w1: UInt64(littleEndian: out.1),
                            w2: UInt64(littleEndian: out.2), w3: UInt64(littleEndian: out.3))
    }

    public static func digest(_ bytes: [UInt8]) -> SHA256Digest { bytes.withUnsafeBytes { digest($0) } }
}
