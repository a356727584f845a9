// libFuzzer target: a hostile source's frames -> the target's session state machine.
// Built by Scripts/fuzz.sh with Sources/VZCore/*.swift and the VZWire state machines as one
// module. The fuzzer's bytes are frames (decoded as on the wire); the target side answers as a
// real target would (helloAck, diskState and the map chunks, diskCommitted), so every state is
// reachable. Properties: only VZError is thrown; after a thrown error or bye the machine is
// ended and refuses everything; every block or zero extent it lets through lies inside the open
// disk, block-aligned, with a length the geometry allows. Each input is run against a machine for
// a protocol-2 source and one for a protocol-3 source; for protocol 3 also: every disk opened is
// in the session's diskSet, and every commit comes after the disk's diskChain.

@_cdecl("LLVMFuzzerTestOneInput")
public func sessionFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    for version in [2, 3] { runSession(bytes, peerProtocolVersion: version) }
    return 0
}

func runSession(_ bytes: [UInt8], peerProtocolVersion: Int) {
    var decoder = FrameDecoder()
    decoder.append(bytes)
    var machine = TargetSessionStateMachine(peerProtocolVersion: peerProtocolVersion)
    var open: Message.OpenDisk?
    var diskSet: Set<String>?
    var chained = false
    do {
        while let frame = try decoder.nextFrame() {
            guard let message = try? Message.decode(frame) else { continue }
            let action: TargetSessionStateMachine.Action
            do {
                action = try machine.receive(message)
            } catch let e as VZError {
                precondition(machine.state == .ended, "a refused message left the machine in \(machine.state): \(e)")
                precondition((try? machine.receive(.bye)) == nil, "an ended machine accepted bye")
                return
            }
            switch action {
            case .greet:
                try machine.send(.helloAck(targetVersion: "fuzz"))
            case let .openDisk(r):
                let blocks = BlockMap.blockCount(capacity: r.capacity, blockSize: r.blockSize)
                guard blocks <= 100_000 else { return }  // keep a case fast; the geometry was accepted
                if peerProtocolVersion >= 3 { precondition(diskSet?.contains(r.disk) == true, "a disk outside the diskSet was opened") }
                open = r
                chained = false
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
                if peerProtocolVersion >= 3 { precondition(chained, "a commit before the disk's chain") }
                try machine.send(.diskCommitted(.init(generation: 1, changedBytes: 0, zeroBytes: 0)))
                open = nil
            case let .checkDiskSet(disks):
                precondition(peerProtocolVersion >= 3 && diskSet == nil && open == nil, "a diskSet out of turn")
                diskSet = Set(disks.map(\.name))
                precondition(diskSet!.count == disks.count && diskSet!.allSatisfy { NameRules.problem(withDisk: $0) == nil },
                             "a diskSet with a bad or repeated name")
            case .recordChain:
                precondition(peerProtocolVersion >= 3 && open != nil && !chained, "a diskChain out of turn")
                chained = true
            case .end:
                precondition(machine.state == .ended)
                return
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
}
