// libFuzzer target: untrusted .vzmap bytes (a map on the target's disk may be torn or tampered).
// Built by Scripts/fuzz.sh together with Sources/VZCore/*.swift and Sources/VZFormats/*.swift.
// Properties: only .corruptMap VZErrors; whatever decodes re-encodes to the same map.

@_cdecl("LLVMFuzzerTestOneInput")
public func vzmapFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        _ = try VzmapFile.decodeHeader(bytes, fileName: "fuzz.vzmap")
    } catch let e as VZError {
        precondition(e.kind == .corruptMap && e.message.contains("fuzz.vzmap"), "bad error \(e)")
    } catch {
        fatalError("non-VZError thrown: \(error)")
    }
    do {
        let (header, map) = try VzmapFile.decode(bytes, fileName: "fuzz.vzmap")
        precondition(UInt64(map.count) == header.entryCount)
        let again = VzmapFile.encode(map, generation: header.generation, createdUnixSeconds: header.createdUnixSeconds)
        // Bytes 56..<64 (reserved, header CRC) may differ: `reserved` is not required to be zero.
        precondition(again.count == bytes.count && again[..<56] == bytes[..<56] && again[64...] == bytes[64...],
                     "re-encoding differs")
        let (h2, m2) = try VzmapFile.decode(again, fileName: "fuzz.vzmap")
        precondition(h2 == header && m2 == map)
    } catch let e as VZError {
        precondition(e.kind == .corruptMap && e.message.contains("fuzz.vzmap"), "bad error \(e)")
    } catch {
        fatalError("non-VZError thrown: \(error)")
    }
    return 0
}
