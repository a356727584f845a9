// libFuzzer target: a VMDK as the source agent meets it — a text descriptor, or a sparse file
// (hosted sparse, streamOptimized, with its embedded descriptor), opened as the one file d.vmdk
// of a folder, then read and asked for its known zeros. Inputs starting "COWD" or with the
// SEsparse magic are also opened as that extent directly (their descriptor is another file);
// every input is also parsed as a .vmx and a .vmsd.
// Built by Scripts/fuzz.sh together with Sources/VZCore/*.swift and Sources/VZFormats/*.swift.
// Properties: only VZErrors, each naming the file; no trap; memory bounded by the input
// (libFuzzer's -malloc_limit_mb catches an allocation sized by an unchecked field).

/// The input as the only file of the folder. zlib is not linked here: "inflate" copies the
/// payload (bounded by the output, as the real one is), which still drives the marker and
/// size checks around it.
final class FuzzFolder: VMDKFileAccess {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    func size(of name: String) throws -> UInt64 {
        guard name == "d.vmdk" else { throw VZError(.sourceIO, "\(name): no such file") }
        return UInt64(bytes.count)
    }
    func read(_ name: String, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let size = try size(of: name)
        guard offset <= size, UInt64(buffer.count) <= size - offset else {
            throw VZError(.sourceIO, "\(name): end of file at offset \(offset)")
        }
        bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + buffer.count])) }
    }
    func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, context: String) throws -> Int {
        guard input.count <= output.count else { throw VZError(.sourceIO, "\(context): inflates to more than \(output.count) bytes") }
        output.copyMemory(from: input)
        return input.count
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func vmdkFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    func check(naming file: String = ".vmdk", _ body: () throws -> Void) {
        do { try body() } catch let e as VZError {
            precondition(e.message.contains(file), "error does not name the file: \(e)")
        } catch {
            fatalError("non-VZError thrown: \(error)")
        }
    }
    check { _ = try VMDKDescriptor.parse(bytes, fileName: "fuzz.vmdk") }
    check { _ = try SparseExtentHeader.parse(bytes, fileName: "fuzz.vmdk", fileSize: UInt64(bytes.count)) }
    check(naming: "fuzz.vmx") { _ = try VMXFile.parse(bytes, fileName: "fuzz.vmx").diskFileName(node: "scsi0:0") }
    check(naming: "fuzz.vmsd") { _ = try SnapshotDatabase.parse(bytes, fileName: "fuzz.vmsd") }
    func readExtent(_ e: VMDKExtentReader) throws {
        _ = try e.allocation()
        var buffer = [UInt8](repeating: 0, count: 4096)
        for at in [0, e.byteCount / 2, e.byteCount - min(4096, e.byteCount)] {
            let n = Int(min(UInt64(buffer.count), e.grainRemainder(at: at)))
            _ = try buffer.withUnsafeMutableBytes { try e.read(at: at, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }
    if bytes.count >= 32 {
        let sectors = UInt64(bytes[16]) << 8 | UInt64(bytes[17]) + 1   // an extent line's size, from the input
        if Array(bytes.prefix(4)) == Array("COWD".utf8) {
            check { try readExtent(try COWDExtent(access: FuzzFolder(bytes), fileName: "d.vmdk", sectors: sectors, descriptor: "fuzz.vmdk")) }
        }
        if Array(bytes.prefix(8)) == [0xBE, 0xBA, 0xFE, 0xCA, 0, 0, 0, 0] {
            check { try readExtent(try SESparseExtent(access: FuzzFolder(bytes), fileName: "d.vmdk", sectors: sectors * 8, descriptor: "fuzz.vmdk")) }
        }
    }
    check {
        let chain = try VMDKChain(leaf: "d.vmdk", folder: "/vm", access: FuzzFolder(bytes))
        precondition(chain.capacity > 0)
        let zeros = try chain.knownZeroExtents()
        precondition(zeros.totalLength <= chain.capacity, "known zeros \(zeros.totalLength) beyond the capacity")
        // The first, a middle and the last 4 KiB (a capacity up to 1 PiB is never read whole).
        var buffer = [UInt8](repeating: 0, count: 4096)
        for at in [0, chain.capacity / 2, chain.capacity - min(4096, chain.capacity)] {
            let n = Int(min(4096, chain.capacity - at))
            try buffer.withUnsafeMutableBytes { try chain.read(at: at, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }
    return 0
}
