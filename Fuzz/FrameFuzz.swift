// libFuzzer target: bytes from the wire -> FrameDecoder -> Message.decode.
// Built by Scripts/fuzz.sh together with Sources/VZCore/*.swift as one module (no imports).
// Properties: only VZError is ever thrown; no frame exceeds the limit; a message that decodes
// re-encodes to exactly the bytes it came from (the encoding is canonical).

@_cdecl("LLVMFuzzerTestOneInput")
public func frameFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    // The first byte picks how the stream is cut into reads (1..256 bytes a read), so the
    // decoder's "need more bytes" paths are exercised too.
    let chunk = Int(input[0]) + 1
    let stream = input[1...]
    var decoder = FrameDecoder()
    var pos = stream.startIndex
    do {
        while pos < stream.endIndex {
            let end = min(stream.endIndex, pos + chunk)
            decoder.append(Array(stream[pos..<end]))
            pos = end
            while let frame = try decoder.nextFrame() {
                precondition(frame.payload.count <= Frame.maxPayload, "frame over the limit")
                let message: Message
                do {
                    message = try Message.decode(frame, frameNumber: decoder.framesDecoded)
                } catch let e as VZError {
                    precondition(e.message.contains("frame #\(decoder.framesDecoded)"), "error does not name the frame: \(e)")
                    continue
                }
                // Canonical encoding. `.error` keeps only 2000 characters of a message, so a
                // longer one legitimately re-encodes shorter.
                if case let .error(_, text) = message, text.count > 2000 { continue }
                let again = message.encodedFrame()
                precondition(again == frame.encoded(), "re-encoding differs: \(message)")
            }
        }
    } catch let e as VZError {
        precondition(e.kind == .corruptFrame, "unexpected kind \(e)")
    } catch {
        fatalError("non-VZError thrown: \(error)")
    }
    precondition(decoder.bufferedBytes <= Frame.headerSize + Frame.maxPayload)
    return 0
}
