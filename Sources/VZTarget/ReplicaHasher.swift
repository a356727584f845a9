import VZCore
import VZPlatform

/// Hashes a replica block by block into a `BlockMap`, on all cores: the fallback when the
/// `.vzmap` cannot be trusted, and the check of `vzrepl-target verify`. Known-zero extents (a
/// flat replica's holes) are zero blocks without reading them.
public enum ReplicaHasher {
    public static func hash(_ replica: some Replica, blockSize: UInt32, workers: Int = 2,
                            onBlock: ((Int, BlockMap.Entry) throws -> Void)? = nil) throws -> BlockMap {
        var map = BlockMap(blockSize: blockSize, capacity: replica.capacity)
        let holes = try replica.knownZeroExtents()
        let layout = map  // an immutable copy for the workers; `map` is filled by the consumer
        let pipeline = OrderedPipeline<Int, BlockMap.Entry>(workers: workers, depth: 2 * workers + 2) { index in
            let extent = layout.extent(ofBlock: index)
            if holes.covers(extent) { return .zero }
            var buffer = [UInt8](repeating: 0, count: Int(extent.length))
            try buffer.withUnsafeMutableBytes { try replica.read(at: extent.offset, into: $0) }
            return buffer.withUnsafeBytes { ZeroDetector.isZero($0) ? .zero : .data(SHA256.digest($0)) }
        }
        let count = map.count
        var index = 0
        try pipeline.run(produce: { submit in
            for i in 0..<count { try submit(i) }
        }, consume: { entry in
            map[index] = entry
            try onBlock?(index, entry)
            index += 1
        })
        return map
    }
}
