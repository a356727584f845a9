// libFuzzer target: a VMDK descriptor read back from the replica directory.
// Built by Scripts/fuzz.sh together with Sources/VZCore/*.swift and Sources/VZFormats/*.swift.
// Properties: only VZErrors; what parses, written out with text() and parsed again, is equal.

@_cdecl("LLVMFuzzerTestOneInput")
public func descriptorFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        let d = try FlatDescriptor.parse(bytes, fileName: "fuzz.vmdk")
        let again = try FlatDescriptor.parse(Array(d.text().utf8), fileName: "again.vmdk")
        precondition(again == d, "text() of \(d) parses as \(again)")
    } catch let e as VZError {
        precondition(e.message.contains("vmdk"), "error does not name the file: \(e)")
    } catch {
        fatalError("non-VZError thrown: \(error)")
    }
    return 0
}
