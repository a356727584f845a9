// libFuzzer target: the target's small records, untrusted bytes read back from the datastore
// (torn, bit-flipped or tampered): the job's disk set `vzdisks` (DiskSetFile) and the CID record
// `DISK.vzcid` (CIDRecordFile, versions 1 and 2).
// Built by Scripts/fuzz.sh together with Sources/VZCore/*.swift and Sources/VZFormats/*.swift.
// Properties: only .corruptMap VZErrors naming the file; whatever decodes re-encodes to the same
// bytes (version 2 of .vzcid; a version-1 record re-encodes as version 2 with the same fields).

@_cdecl("LLVMFuzzerTestOneInput")
public func recordFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    func check(_ file: String, _ body: () throws -> Void) {
        do { try body() } catch let e as VZError {
            precondition(e.kind == .corruptMap && e.message.contains(file), "bad error \(e)")
        } catch {
            fatalError("non-VZError thrown: \(error)")
        }
    }
    check("fuzz/vzdisks") {
        let set = try DiskSetFile.decode(bytes, fileName: "fuzz/vzdisks")
        precondition(set.encode() == bytes, "vzdisks re-encodes differently")
        precondition(set.disks.allSatisfy { NameRules.problem(withDisk: $0) == nil }, "an invalid disk name decoded")
    }
    check("fuzz.vzcid") {
        let r = try CIDRecordFile.decode(bytes, fileName: "fuzz.vzcid")
        let again = r.encode()
        if bytes.count > 8, bytes[8] == 2 { precondition(again == bytes, "vzcid re-encodes differently") }
        let back = try CIDRecordFile.decode(again, fileName: "fuzz.vzcid")
        precondition(back == r, "vzcid does not round-trip")
        if let chain = r.chain { precondition(CIDRecordFile.problem(with: chain) == nil, "a chain that cannot be recorded decoded") }
    }
    return 0
}
