import Foundation
import Glibc
import VZCore
import VZFormats
import VZPlatform
import VZTarget
import XCTest

/// Counts syncs and can fail writes or syncs of the journal file.
final class CountingStorage: UndoJournalStorage {
    let inner: UndoJournalStorage
    var syncs = 0, writes = 0
    var failSyncAt: Int?
    init(_ inner: UndoJournalStorage) { self.inner = inner }
    func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws { writes += 1; try inner.write(at: offset, bytes) }
    func sync() throws {
        syncs += 1
        if syncs == failSyncAt { throw VZError(.replicaIO, "fsync: Input/output error (errno 5)") }
        try inner.sync()
    }
    func close() { inner.close() }
}

final class UndoJournalTests: XCTestCase {
    typealias X = UndoFixture

    func testBeginWritesHeaderAndExecutableScript() throws {
        let dir = try TempDir()
        let j = try X.begin(dir, disk: "vm1-disk0", job: "vm1", generation: 12)
        let bytes = try dir.bytes("vm1-disk0.vzundo")
        XCTAssertEqual(bytes.count, 200)
        let h = try UndoJournalFormat.decodeHeader(bytes, fileName: "h")
        XCTAssertEqual(h, j.header)
        XCTAssertEqual(h.startGeneration, 12)
        XCTAssertEqual(h.job, "vm1")
        XCTAssertEqual(j.stats.bytesWritten, 200)
        var st = stat()
        XCTAssertEqual(stat("\(dir.path)/vzundo-script", &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o755)
        let script = String(decoding: try dir.bytes("vzundo-script"), as: UTF8.self)
        XCTAssertTrue(script.hasPrefix("#!/bin/sh\n"))
        XCTAssertTrue(script.contains("'/usr/local/bin/vzrepl-target' rollback --root '/srv/datastore' --job 'vm1' --disk \"$disk\""), script)
        XCTAssertEqual(try sh(["-n", "\(dir.path)/vzundo-script"]).status, 0)
        // No temp file is left behind.
        XCTAssertEqual(try dir.directory.entries(), ["vm1-disk0.vzundo", "vzundo-script"])
    }

    func testBeginRefusesWhileAnUnrecoveredJournalExists() throws {
        let dir = try TempDir()
        _ = try X.begin(dir)
        XCTAssertThrowsError(try X.begin(dir)) { e in
            XCTAssertEqual((e as? VZError)?.kind, .targetRefused)
            XCTAssertTrue("\(e)".contains("disk1.vzundo"), "\(e)")
        }
        XCTAssertThrowsError(try X.begin(dir, disk: "../x")) { XCTAssertEqual(($0 as? VZError)?.kind, .badArgument) }
    }

    func testEachBlockRecordedOnceWithOneFsyncPerBatch() throws {
        let dir = try TempDir()
        let replica = try X.makeOriginal(dir)
        let original = try replica.contents()
        var counter: CountingStorage!
        let j = try X.begin(dir, storageLayer: { counter = CountingStorage($0); return counter })
        try X.runPass(j, replica)
        // Batches: {1,2} {3,4} (2 again: skipped) {6,7} {5,8}; protecting again adds nothing.
        XCTAssertEqual(counter.syncs, 4)
        try j.protect([X.block(2), X.block(7)], replica: replica)
        try j.protect([], replica: replica)
        XCTAssertEqual(counter.syncs, 4, "nothing new to protect: no fsync")

        let bytes = try dir.bytes("disk1.vzundo")
        let r = try UndoJournalDecoder.decodeAll(bytes, fileName: "j")
        XCTAssertNil(r.tail)
        XCTAssertEqual(r.records.map { $0.extent.offset / X.bs }, [1, 2, 3, 4, 6, 7, 5, 8])
        XCTAssertEqual(r.records.map(\.kind), [.zeros, .data, .zeros, .zeros, .zeros, .data, .data, .data])
        XCTAssertEqual(Set(r.records.map { $0.extent.offset }).count, r.records.count, "each block once")
        for rec in r.records where rec.kind == .data {
            // The pre-pass original, not what the pass wrote (block 2 was written twice).
            XCTAssertEqual(rec.data, Array(original[Int(rec.extent.offset)..<Int(rec.extent.end)]))
        }
        XCTAssertEqual(j.stats.bytesWritten, UInt64(bytes.count))
        XCTAssertEqual(j.stats.dataRecords, 4)
        XCTAssertEqual(j.stats.zeroRecords, 4)
        XCTAssertEqual(j.stats.protectedBytes, 7 * X.bs + 1000)
        XCTAssertTrue(j.isProtected(block: 6))
        XCTAssertFalse(j.isProtected(block: 0))
        XCTAssertThrowsError(try j.protect([Extent(offset: X.capacity - 10, length: 11)], replica: replica))
    }

    func testAFailedFsyncIsFinal() throws {
        let dir = try TempDir()
        let replica = try X.makeOriginal(dir)
        var counter: CountingStorage!
        let j = try X.begin(dir, storageLayer: { counter = CountingStorage($0); counter.failSyncAt = 2; return counter })
        try j.protect([X.block(0)], replica: replica)
        XCTAssertThrowsError(try j.protect([X.block(2)], replica: replica)) { XCTAssertEqual(($0 as? VZError)?.kind, .replicaIO) }
        // Never retry an fsync and carry on: every later call fails without touching the file.
        let writes = counter.writes
        XCTAssertThrowsError(try j.protect([X.block(5)], replica: replica)) { e in
            XCTAssertTrue("\(e)".contains("failed earlier"), "\(e)")
        }
        XCTAssertEqual(counter.writes, writes)
        XCTAssertEqual(counter.syncs, 2)
    }

    func testDiscardRemovesTheScriptOnlyWithTheLastJournal() throws {
        let dir = try TempDir()
        let a = try X.begin(dir, disk: "a")
        let b = try X.begin(dir, disk: "b")
        try a.discard()
        XCTAssertFalse(dir.exists("a.vzundo"))
        XCTAssertTrue(dir.exists("vzundo-script"), "disk b still has an unfinished pass")
        try a.discard()   // idempotent
        try b.discard()
        XCTAssertEqual(try dir.directory.entries(), [])
        XCTAssertThrowsError(try b.protect([X.block(0)], replica: try FileReplica(dir, capacity: X.capacity)))
    }

    /// The script really runs the agent once per disk with an unfinished pass, with quoting that
    /// survives spaces and quotes in the paths.
    func testScriptRunsRollbackForEveryJournal() throws {
        let dir = try TempDir()
        let log = "\(dir.path)/calls.log"
        let fake = "\(dir.path)/fake agent's"
        try dir.write("fake agent's", Array("#!/bin/sh\necho \"$@\" >> '\(log)'\n".utf8))
        XCTAssertEqual(chmod(fake, 0o755), 0)
        let job = try dir.directory.subdirectory("job1", create: true)
        let script = RollbackScript(executablePath: fake, rootPath: "/data/store it")
        for disk in ["d1", "d2"] {
            _ = try UndoJournal.begin(directory: job, job: "job1", disk: disk, blockSize: X.blockSize, capacity: X.capacity,
                                      generation: 0, script: script, logger: X.logger)
        }
        let run = try sh(["\(dir.path)/job1/vzundo-script"])
        XCTAssertEqual(run.status, 0, run.output)
        let calls = String(decoding: try dir.bytes("calls.log"), as: UTF8.self)
        XCTAssertEqual(calls, "rollback --root /data/store it --job job1 --disk d1\nrollback --root /data/store it --job job1 --disk d2\n")
    }

    func sh(_ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: out, as: UTF8.self))
    }
}
