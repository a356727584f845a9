// libFuzzer target: a job file as the controller writes it (or as someone mistypes it).
// Built by Scripts/fuzz.sh together with Sources/VZCore/*.swift.
// Properties: only .badJobFile VZErrors naming the file; a job that parses re-encodes and parses equal.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func jobConfigFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        let job = try JobConfig.parse(bytes, fileName: "fuzz.json")
        let encoded = try JSONEncoder().encode(job)
        let again = try JobConfig.parse(Array(encoded), fileName: "again.json")
        precondition(again == job, "re-encoded job differs")
    } catch let e as VZError {
        precondition(e.kind == .badJobFile && e.message.hasPrefix("fuzz.json: "), "bad error \(e)")
    } catch {
        fatalError("non-VZError thrown: \(error)")
    }
    return 0
}
