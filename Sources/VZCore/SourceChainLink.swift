/// One link of the VMDK chain a disk's pass was read from, as the source reports it
/// (`diskChain`, protocol 3) and the target records it in `.vzcid`: the link's file (its name,
/// or its path on the source when it lives in another folder), its CID and its parentCID.
public struct SourceChainLink: Equatable, Hashable, Sendable {
    public var file: String
    public var cid: UInt32
    public var parentCID: UInt32

    public init(file: String, cid: UInt32, parentCID: UInt32) {
        self.file = file; self.cid = cid; self.parentCID = parentCID
    }

    /// Links a chain may have on the wire and in a record (VMDKChain.maxLinks).
    public static let maxLinks = 255
    /// Bytes a link's file may take (a path on the source for a link in another folder).
    public static let maxFileBytes = 1024

    /// `a.vmdk (CID 0a1b2c3d, parent ffffffff)`, for logs and `status`.
    public var summary: String {
        "\(file) (CID \(String(format8: cid)), parent \(String(format8: parentCID)))"
    }
}

extension String {
    /// A CID as VMDK descriptors write it: 8 lowercase hex digits.
    public init(format8 v: UInt32) {
        let s = String(v, radix: 16)
        self = String(repeating: "0", count: Swift.max(0, 8 - s.count)) + s
    }
}
