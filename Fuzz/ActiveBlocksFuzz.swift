// libFuzzer target: an untrusted disk image (partition tables, ext/FAT/swap/NTFS/XFS/LVM metadata) mapped by
// ABM, and untrusted active-block filter bytes. Built by Scripts/fuzz.sh together with
// Sources/VZCore, VZFormats and VZActiveBlocks.
// Properties: never a crash or a read past the disk; the active set lies within the disk and
// covers every byte of the partition-table sector; every volume lies within the disk; mapping is
// deterministic; a filter either decodes to what re-encodes to the same bytes or is a .sourceIO error.

final class FuzzDisk: BlockReader {
    let bytes: [UInt8]
    init(_ b: [UInt8]) { bytes = b }
    var capacity: UInt64 { UInt64(bytes.count) }
    var displayName: String { "fuzz.img" }
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        precondition(offset <= capacity && UInt64(buffer.count) <= capacity - offset, "read past the end of the disk")
        bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + buffer.count])) }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func activeBlocksFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // Whole sectors, like every disk the source accepts.
    let bytes = Array(UnsafeBufferPointer(start: data, count: size - size % 512))
    let disk = FuzzDisk(bytes)
    let map = ActiveBlockMapper.map(disk, granularity: 512)
    let whole = Extent(offset: 0, length: disk.capacity)
    precondition(map.active.subtracting(ExtentSet([whole])).isEmpty, "active bytes past the disk")
    if disk.capacity >= 512 { precondition(map.active.covers(Extent(offset: 0, length: 512)), "sector 0 freed") }
    for v in map.volumes {
        precondition(v.offset <= disk.capacity && v.size <= disk.capacity - v.offset, "volume outside the disk")
        precondition(v.activeBytes <= v.size && (!v.allActive || v.activeBytes == v.size))
    }
    precondition(ActiveBlockMapper.map(disk, granularity: 512) == map, "not deterministic")
    do {
        let f = try ActiveBlockFilterFile.decode(Array(UnsafeBufferPointer(start: data, count: size)), fileName: "fuzz.vztemp")
        precondition(ActiveBlockFilterFile.encode(f) == Array(UnsafeBufferPointer(start: data, count: size)), "re-encoding differs")
    } catch let e as VZError {
        precondition(e.kind == .sourceIO && e.message.contains("fuzz.vztemp"), "bad error \(e)")
    } catch {
        fatalError("non-VZError thrown: \(error)")
    }
    return 0
}
