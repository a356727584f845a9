import Foundation
import Glibc
import Logging
import VZCore
import VZFormats
import VZPlatform
import VZTarget
import XCTest

/// A temp directory per test, removed afterwards.
final class TempDir {
    let path: String
    let directory: Directory

    init() throws {
        var template = Array("/tmp/vzundo-test-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw VZError(.internal, "mkdtemp failed")
        }
        path = String(cString: p)
        directory = try Directory.openRoot(path)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func bytes(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: "\(path)/\(name)")))
    }

    func write(_ name: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: "\(path)/\(name)"))
    }

    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: "\(path)/\(name)") }
}

/// A test-only replica over a sparse file (independent of the session's FlatReplica).
final class FileReplica: Replica {
    let file: PosixFile
    let capacity: UInt64
    var displayName: String { file.path }

    init(_ dir: TempDir, name: String = "disk.img", capacity: UInt64? = nil) throws {
        file = try dir.directory.open(name, flags: O_RDWR | O_CREAT, mode: 0o644)
        if let c = capacity { try file.truncate(to: c) }
        self.capacity = try file.size()
    }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws { try file.read(at: offset, into: buffer) }
    func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws { try file.write(at: offset, bytes) }
    func writeZeros(_ extent: Extent) throws { try file.punchHole(extent) }
    func isHole(_ extent: Extent) throws -> Bool {
        guard let data = try file.nextData(from: extent.offset) else { return true }
        return data >= extent.end
    }
    func flush() throws { try file.sync() }

    func write(at offset: UInt64, _ bytes: [UInt8]) throws { try file.write(at: offset, bytes) }
    func contents() throws -> [UInt8] {
        var b = [UInt8](repeating: 0, count: Int(capacity))
        try b.withUnsafeMutableBytes { try file.read(at: 0, into: $0) }
        return b
    }
    func holes() throws -> ExtentSet { try file.holes(below: capacity) }
}

/// A replica that fails with `InterruptedError` after `budget` mutations (write, writeZeros) or
/// at flush: a rollback killed at that point.
final class InterruptingReplica: Replica {
    struct InterruptedError: Error {}
    let inner: Replica
    var budget: Int
    var failFlush: Bool
    init(_ inner: Replica, budget: Int, failFlush: Bool = false) { self.inner = inner; self.budget = budget; self.failFlush = failFlush }
    var capacity: UInt64 { inner.capacity }
    var displayName: String { inner.displayName }
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws { try inner.read(at: offset, into: buffer) }
    func spend() throws { if budget <= 0 { throw InterruptedError() }; budget -= 1 }
    func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws { try spend(); try inner.write(at: offset, bytes) }
    func writeZeros(_ extent: Extent) throws { try spend(); try inner.writeZeros(extent) }
    func isHole(_ extent: Extent) throws -> Bool { try inner.isHole(extent) }
    func flush() throws { if failFlush { throw InterruptedError() }; try inner.flush() }
}

enum UndoFixture {
    static let blockSize: UInt32 = 64 << 10
    static var bs: UInt64 { UInt64(blockSize) }
    /// 8 whole blocks and a short last one.
    static let capacity: UInt64 = 8 * (64 << 10) + 1000
    static let script = RollbackScript(executablePath: "/usr/local/bin/vzrepl-target", rootPath: "/srv/datastore")

    static var logger: Logger {
        var l = Logger(label: "vzrepl.journal.test")
        l.logLevel = .critical
        return l
    }

    static func pattern(_ seed: Int, _ count: Int) -> [UInt8] {
        var x = UInt32(truncatingIfNeeded: seed &* 2654435761 &+ 1)
        return (0..<count).map { _ in x ^= x << 13; x ^= x >> 17; x ^= x << 5; return UInt8(truncatingIfNeeded: x) }
    }

    static func block(_ i: UInt64, capacity: UInt64 = capacity) -> Extent {
        Extent(offset: i * bs, length: min(bs, capacity - i * bs))
    }

    /// The original replica: data in 0, 2, 5, 7, 8 (short); allocated zeros in 3; holes in 1, 4, 6.
    static func makeOriginal(_ dir: TempDir) throws -> FileReplica {
        let r = try FileReplica(dir, capacity: capacity)
        for i: UInt64 in [0, 2, 5, 7, 8] { try r.write(at: i * bs, pattern(Int(i) + 100, Int(block(i).length))) }
        try r.write(at: 3 * bs, [UInt8](repeating: 0, count: Int(bs)))
        try r.flush()
        return r
    }

    /// A pass in batches: (extents to protect, then writes). Block 2 is rewritten in a later batch,
    /// an unaligned extent covers 6 and 7, block 5 becomes a hole.
    enum Op { case write(UInt64, [UInt8]), zeros(Extent) }
    static var passBatches: [([Extent], [Op])] {
        [
            ([block(1), block(2)], [.write(1 * bs, pattern(1, Int(bs))), .write(2 * bs, pattern(2, Int(bs)))]),
            ([block(2), block(3), block(4)], [.write(2 * bs, pattern(22, Int(bs))), .write(3 * bs + 7, pattern(3, 100)),
                                              .write(4 * bs, pattern(4, Int(bs)))]),
            ([Extent(offset: 6 * bs + 10, length: bs + 5)], [.write(6 * bs + 10, pattern(6, Int(bs) + 5))]),
            ([block(5), block(8)], [.zeros(block(5)), .write(8 * bs, pattern(8, 1000))]),
        ]
    }

    static func apply(_ op: Op, to replica: Replica) throws {
        switch op {
        case .write(let o, let b): try b.withUnsafeBytes { try replica.write(at: o, $0) }
        case .zeros(let e): try replica.writeZeros(e)
        }
    }

    static func begin(_ dir: TempDir, disk: String = "disk1", job: String = "job1", generation: UInt64 = 5,
                      capacity: UInt64 = capacity,
                      storageLayer: @escaping (UndoJournalStorage) -> UndoJournalStorage = { $0 }) throws -> UndoJournal {
        try UndoJournal.begin(directory: dir.directory, job: job, disk: disk, blockSize: blockSize, capacity: capacity,
                              generation: generation, script: script, logger: logger, storageLayer: storageLayer)
    }

    /// Runs the whole pass through the journal.
    static func runPass(_ journal: UndoJournal, _ replica: Replica) throws {
        for (extents, ops) in passBatches {
            try journal.protect(extents, replica: replica)
            for op in ops { try apply(op, to: replica) }
        }
        try replica.flush()
    }

    static func blockSet(_ indices: [UInt64], capacity: UInt64 = capacity) -> ExtentSet {
        ExtentSet(indices.map { block($0, capacity: capacity) })
    }
}
