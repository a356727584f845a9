// libFuzzer target: a hostile source's frames -> the target's session state machine.
// Built by Scripts/fuzz.sh with Sources/VZCore/*.swift and the VZWire state machines as one
// module. The fuzzer's bytes are frames (decoded as on the wire); the target side answers as a
// real target would (helloAck, diskState and the map chunks, diskCommitted), so every state is
// reachable. Properties: only VZError is thrown; after a thrown error or bye the machine is
// ended and refuses everything; every block or zero extent it lets through lies inside the open
// disk, block-aligned, with a length the geometry allows.

@_cdecl("LLVMFuzzerTestOneInput")
public func sessionFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var decoder = FrameDecoder()
    decoder.append(Array(UnsafeBufferPointer(start: data, count: size)))
    var machine = TargetSessionStateMachine()
    var open: Message.OpenDisk?
    do {
        while let frame = try decoder.nextFrame() {
            guard let message = try? Message.decode(frame) else { continue }
            let action: TargetSessionStateMachine.Action
            do {
                action = try machine.receive(message)
            } catch let e as VZError {
                precondition(machine.state == .ended, "a refused message left the machine in \(machine.state): \(e)")
                precondition((try? machine.receive(.bye)) == nil, "an ended machine accepted bye")
                return 0
            }
            switch action {
            case .greet:
                try machine.send(.helloAck(targetVersion: "fuzz"))
            case let .openDisk(r):
                let blocks = BlockMap.blockCount(capacity: r.capacity, blockSize: r.blockSize)
                guard blocks <= 100_000 else { return 0 }  // keep a case fast; the geometry was accepted
                open = r
                try machine.send(.diskState(.init(mapStatus: .created, generation: 0, entryCount: blocks)))
                var first: UInt64 = 0
                while first < blocks {
                    let n = min(UInt64(Message.maxMapChunkEntries), blocks - first)
                    try machine.send(.mapChunk(firstIndex: first, entries: [BlockMap.Entry](repeating: .zero, count: Int(n))))
                    first += n
                }
            case let .applyBlock(b):
                guard let r = open else { preconditionFailure("a block before any disk was opened") }
                let bs = UInt64(r.blockSize)
                precondition(b.offset % bs == 0 && b.offset < r.capacity, "block outside the disk")
                precondition(UInt64(b.rawLength) == min(bs, r.capacity - b.offset), "block of the wrong length")
            case let .applyZero(e):
                guard let r = open else { preconditionFailure("a zero extent before any disk was opened") }
                let bs = UInt64(r.blockSize)
                precondition(e.length > 0 && e.offset % bs == 0 && e.offset < r.capacity && e.length <= r.capacity - e.offset,
                             "zero extent outside the disk")
            case .commit:
                try machine.send(.diskCommitted(.init(generation: 1, changedBytes: 0, zeroBytes: 0)))
                open = nil
            case .end:
                precondition(machine.state == .ended)
                return 0
            case .ignore:
                break
            }
        }
    } catch let e as VZError {
        // The decoder's own refusals, or a send the machine refused (a bug in this harness).
        precondition(e.kind == .corruptFrame, "unexpected \(e)")
    } catch {
        fatalError("non-VZError thrown: \(error)")
    }
    return 0
}
