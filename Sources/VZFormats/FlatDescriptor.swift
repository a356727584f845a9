import VZCore

/// The text descriptor of the replica: an ESXi-style flat disk (createType "vmfs", one VMFS
/// extent), which `qemu-img` and ESXi both open. See VMDK-FORMATS.md §1.
public struct FlatDescriptor: Equatable, Sendable {
    public var cid: UInt32
    public var capacity: UInt64
    public var flatFileName: String

    public init(cid: UInt32, capacity: UInt64, flatFileName: String) {
        self.cid = cid; self.capacity = capacity; self.flatFileName = flatFileName
    }

    /// A fresh random CID: never ffffffff (no parent) or fffffffe (reserved).
    public static func randomCID() -> UInt32 {
        UInt32.random(in: 1...UInt32.max - 2)
    }

    public var sectors: UInt64 { (capacity + 511) / 512 }
    /// The CID as the descriptor writes it: 8 lowercase hex digits.
    public var cidHex: String { String(format8: cid) }

    public func text() -> String {
        let cidHex = String(format8: cid)
        // Geometry as ESXi writes it for SCSI disks: 255 heads, 63 sectors.
        let cylinders = Swift.min(sectors / (255 * 63), 65535)
        return """
        # Disk DescriptorFile
        version=1
        encoding="UTF-8"
        CID=\(cidHex)
        parentCID=ffffffff
        createType="vmfs"

        # Extent description
        RW \(sectors) VMFS "\(flatFileName)"

        # The Disk Data Base
        #DDB

        ddb.adapterType = "lsilogic"
        ddb.geometry.cylinders = "\(cylinders)"
        ddb.geometry.heads = "255"
        ddb.geometry.sectors = "63"
        ddb.longContentID = "\(String(repeating: "0", count: 24))\(cidHex)"
        ddb.thinProvisioned = "1"
        ddb.virtualHWVersion = "14"
        ddb.comment = "vzrepl replica"

        """
    }

    /// Reads back what `text()` wrote (and tolerates NUL padding and comments), for the CID check.
    public static func parse(_ bytes: [UInt8], fileName: String) throws -> FlatDescriptor {
        guard bytes.count <= 64 * 1024 else { throw VZError(.replicaIO, "\(fileName): descriptor larger than 64 KiB") }
        guard let text = String(validating: bytes.filter { $0 != 0 }, as: UTF8.self) else {
            throw VZError(.replicaIO, "\(fileName): descriptor is not UTF-8 text")
        }
        var cid: UInt32?
        var sectors: UInt64?
        var flat: String?
        for raw in text.split(whereSeparator: \.isNewline) {  // LF, CR and CRLF alike
            let line = raw.trimmingSpaces()
            if line.hasPrefix("#") || line.isEmpty { continue }
            if line.lowercased().hasPrefix("cid=") {
                guard let v = UInt32(line.dropFirst(4), radix: 16) else {
                    throw VZError(.replicaIO, "\(fileName): field 'CID': '\(line.dropFirst(4))' is not hex")
                }
                cid = v
            } else if line.hasPrefix("RW ") || line.hasPrefix("RDONLY ") {
                let parts = line.split(separator: " ", maxSplits: 3)
                guard parts.count >= 4, parts[2] == "VMFS" || parts[2] == "FLAT", let n = UInt64(parts[1]) else {
                    throw VZError(.replicaIO, "\(fileName): extent line '\(line)' is not 'RW <sectors> VMFS \"file\"'")
                }
                sectors = n
                flat = (parts[3].split(separator: " ").first ?? "").trimmingCharacters(quote: "\"")
            }
        }
        guard let c = cid else { throw VZError(.replicaIO, "\(fileName): field 'CID': missing") }
        guard let s = sectors, let f = flat else { throw VZError(.replicaIO, "\(fileName): no extent line") }
        guard s <= UInt64(1) << 41 else {  // 1 PiB in sectors; also keeps s * 512 from overflowing
            throw VZError(.replicaIO, "\(fileName): extent of \(s) sectors is larger than 1 PiB")
        }
        return FlatDescriptor(cid: c, capacity: s * 512, flatFileName: f)
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }

    func trimmingCharacters(quote: Character) -> String {
        var s = self
        if s.first == quote { s.removeFirst() }
        if s.last == quote { s.removeLast() }
        return String(s)
    }
}
