import Foundation
import VZCore
import VZTarget

/// The in-process power-loss layer the power-loss tests share (FAULTS.md): the journal file and
/// the replica keep every write in memory until it is fsynced; a "crash" at the k-th fsync stops
/// everything and drops (or keeps, or keeps some of) the unsynced writes. The durable state is
/// what reached the real files. Thread-safe: the apply path writes on its writer thread while
/// the journal reads originals on the submitting thread.
struct Crash: Error {}

/// What survives of the unsynced writes at the crash.
enum Survivors: CaseIterable {
    case none, all, everyOther

    func keeps(_ i: Int) -> Bool {
        switch self { case .none: return false; case .all: return true; case .everyOther: return i % 2 == 0 }
    }
}

/// The crash budget: the fsync that finds it spent crashes, and everything after it fails.
final class CrashWorld: @unchecked Sendable {
    private let lock = NSLock()
    private var budget: Int
    private(set) var crashed = false
    /// One entry an fsync: true when it ran on the main (submitting) thread.
    private(set) var syncThreads: [Bool] = []

    init(syncBudget: Int) { budget = syncBudget }

    func operation() throws {
        lock.lock(); defer { lock.unlock() }
        if crashed { throw Crash() }
    }

    func sync() throws {
        lock.lock(); defer { lock.unlock() }
        if crashed { throw Crash() }
        syncThreads.append(Thread.isMainThread)
        if budget == 0 { crashed = true; throw Crash() }
        budget -= 1
    }
}

/// The journal's storage through the layer (written only from the submitting thread).
final class CrashStorage: UndoJournalStorage {
    let inner: UndoJournalStorage
    let world: CrashWorld
    /// false: a broken fsync that persists nothing (the negative control).
    let honest: Bool
    private var pending: [(UInt64, [UInt8])] = []

    init(_ inner: UndoJournalStorage, _ world: CrashWorld, honest: Bool = true) {
        self.inner = inner
        self.world = world
        self.honest = honest
    }

    func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws {
        try world.operation()
        pending.append((offset, Array(bytes)))
    }

    func sync() throws {
        try world.sync()
        if honest { for (o, b) in pending { try b.withUnsafeBytes { try inner.write(at: o, $0) } } }
        pending = []
    }

    func crash(_ survivors: Survivors) throws {
        for (i, (o, b)) in pending.enumerated() where survivors.keeps(i) { try b.withUnsafeBytes { try inner.write(at: o, $0) } }
        pending = []
    }

    func close() { inner.close() }
}

/// The replica through the layer: unsynced writes are readable through it (the overlay), and
/// `check` sees every write before it is taken (the tests' durability invariant).
final class CrashReplica: Replica, @unchecked Sendable {
    let disk: FileReplica
    let world: CrashWorld
    let check: (Extent) -> Void
    private let lock = NSLock()
    private var pending: [UndoFixture.Op] = []

    init(_ disk: FileReplica, _ world: CrashWorld, check: @escaping (Extent) -> Void) {
        self.disk = disk
        self.world = world
        self.check = check
    }

    var capacity: UInt64 { disk.capacity }
    var displayName: String { "crash layer over \(disk.displayName)" }

    static func extent(_ op: UndoFixture.Op) -> Extent {
        switch op {
        case .write(let o, let b): return Extent(offset: o, length: UInt64(b.count))
        case .zeros(let e): return e
        }
    }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try world.operation()
        try disk.read(at: offset, into: buffer)
        lock.lock(); defer { lock.unlock() }
        let want = Extent(offset: offset, length: UInt64(buffer.count))
        for op in pending {
            guard let x = Self.extent(op).intersection(want) else { continue }
            for p in x.offset..<x.end {
                switch op {
                case .write(let o, let b): buffer[Int(p - offset)] = b[Int(p - o)]
                case .zeros: buffer[Int(p - offset)] = 0
                }
            }
        }
    }

    func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws {
        try world.operation()
        check(Extent(offset: offset, length: UInt64(bytes.count)))
        lock.lock(); pending.append(.write(offset, Array(bytes))); lock.unlock()
    }

    func writeZeros(_ extent: Extent) throws {
        try world.operation()
        check(extent)
        lock.lock(); pending.append(.zeros(extent)); lock.unlock()
    }

    func isHole(_ extent: Extent) throws -> Bool {
        try world.operation()
        lock.lock()
        let touched = pending.contains { Self.extent($0).intersection(extent) != nil }
        lock.unlock()
        return touched ? false : try disk.isHole(extent)
    }

    func flush() throws {
        try world.sync()
        lock.lock(); defer { lock.unlock() }
        for op in pending { try UndoFixture.apply(op, to: disk) }
        try disk.flush()
        pending = []
    }

    func crash(_ survivors: Survivors) throws {
        lock.lock(); defer { lock.unlock() }
        for (i, op) in pending.enumerated() where survivors.keeps(i) { try UndoFixture.apply(op, to: disk) }
        pending = []
    }
}
