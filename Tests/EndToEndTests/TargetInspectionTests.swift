import Foundation
import VZCore
import VZFormats
import XCTest

/// `vzrepl-target status` and `verify`: what a field engineer and the controller read about the
/// replicas, with the events' names (Docs/events.md) in `--json`.
final class TargetInspectionTests: XCTestCase {
    var h: AgentHarness!
    let bs = 65536
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    var dir: String { h.root + "/vm1" }

    /// One committed pass of a 16-block disk (generation 1).
    func seed() throws {
        let src = h.dir + "/d.raw"
        try AgentHarness.makeImage(src, size: UInt64(16 * bs))
        try AgentHarness.write(AgentHarness.randomBytes(4 * bs, seed: 3), to: src, at: UInt64(2 * bs))
        let r = try h.replicate(try h.writeJob(disks: [("disk0", src)], blockSize: bs))
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func status() throws -> (json: [String: Any], table: String) {
        let j = try AgentHarness.run([AgentHarness.target, "status", "--root", h.root, "--json"])
        XCTAssertEqual(j.status, 0, j.stderr)
        let list = try XCTUnwrap(try JSONSerialization.jsonObject(with: j.output) as? [[String: Any]], j.stdout)
        XCTAssertEqual(list.count, 1)
        let t = try AgentHarness.run([AgentHarness.target, "status", "--root", h.root])
        XCTAssertEqual(t.status, 0, t.stderr)
        return (list[0], t.stdout)
    }

    func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
        try AgentHarness.write(Data(bytes), to: path, at: offset)
    }

    /// Regression: `status --json` said `mapState: ok` where the events say `mapStatus: valid`.
    func testRegression_StatusJSONUsesTheEventsNames() throws {
        try seed()
        let (s, table) = try status()
        XCTAssertEqual(s["mapStatus"] as? String, "valid")
        XCTAssertNil(s["mapState"])
        XCTAssertEqual(s["generation"] as? Int, 1)
        XCTAssertEqual(s["blockSize"] as? Int, bs)
        XCTAssertEqual(s["capacityBytes"] as? Int, 16 * bs)
        XCTAssertEqual(s["undo"] as? String, "none")
        XCTAssertTrue(table.contains("MAP"), table)
        XCTAssertTrue(table.split(separator: "\n")[1].contains(" valid "), table)
    }

    /// Regression: a map whose entries fail their checksum was shown `MAP ok` (only the header
    /// was checked).
    func testRegression_StatusChecksTheWholeMap() throws {
        try seed()
        try patch(dir + "/disk0.vzmap", at: 64 + 33 * 3 + 5, [0xEE])   // inside entries[3].hash
        let (s, table) = try status()
        XCTAssertEqual(s["mapStatus"] as? String, "corrupt")
        XCTAssertTrue((s["mapReason"] as? String ?? "").contains("entriesCRC32C"), "\(s)")
        XCTAssertEqual(s["generation"] as? Int, 1, "the header is intact: recovery sees generation 1")
        XCTAssertTrue(table.split(separator: "\n")[1].contains(" corrupt "), table)
        XCTAssertTrue(table.contains("vm1/disk0: map corrupt: "), table)
    }

    /// A pending `.vzundo` is shown with its start generation, pass id and what recovery will do;
    /// a journal whose header is damaged is shown as blocking recovery.
    func testStatusShowsAPendingOrCorruptJournal() throws {
        try seed()
        let passID = UndoJournalFormat.PassID(bytes: Array(0xA0..<0xB0))
        let header = UndoJournalFormat.Header(job: "vm1", disk: "disk0", blockSize: UInt32(bs), capacity: UInt64(16 * bs),
                                              startGeneration: 1, passID: passID, createdUnixSeconds: 1_700_000_000)
        var journal = try UndoJournalFormat.encodeHeader(header)
        FileManager.default.createFile(atPath: dir + "/disk0.vzundo", contents: Data(journal))
        var (s, table) = try status()
        XCTAssertEqual(s["undo"] as? String, "pending")
        XCTAssertEqual(s["undoStartGeneration"] as? Int, 1)
        XCTAssertEqual(s["undoPassId"] as? String, "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf")
        XCTAssertEqual(s["undoAction"] as? String, "rollBack")
        XCTAssertTrue(table.contains("vm1/disk0: unfinished pass a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf from generation 1: recovery will rollBack"), table)
        // What is known about the pending pass, and the last committed one beside it.
        XCTAssertEqual(s["pending"] as? Bool, true)
        XCTAssertEqual(s["undoStartedAt"] as? String, "2023-11-14T22:13:20.000Z")
        XCTAssertEqual(s["undoBytes"] as? Int, journal.count)
        let last = try XCTUnwrap(s["lastPass"] as? [String: Any], "\(s)")
        XCTAssertEqual(last["generation"] as? Int, 1)
        XCTAssertEqual(last["changedBytes"] as? Int, 4 * bs)
        XCTAssertNotNil((last["passId"] as? String).flatMap(PassIdentifier.bytes(of:)), "\(last)")
        XCTAssertTrue(s.keys.contains("cbtChangeId") && s["cbtChangeId"] is NSNull, "cbtChangeId is present and null: \(s)")
        XCTAssertEqual(s["mapEntries"] as? Int, 16)
        XCTAssertEqual(s["mapBytes"] as? Int, 64 + 16 * 33 + 8)

        journal[20] = 1   // flags: the header checksum no longer matches
        FileManager.default.createFile(atPath: dir + "/disk0.vzundo", contents: Data(journal))
        (s, table) = try status()
        XCTAssertEqual(s["undo"] as? String, "corrupt")
        XCTAssertTrue((s["undoReason"] as? String ?? "").contains("field 'headerCRC32C'"), "\(s)")
        XCTAssertTrue(table.split(separator: "\n")[1].contains(" corrupt "), table)
        XCTAssertTrue(table.contains("vm1/disk0: undo journal corrupt: "), table)
    }

    func testVerifyJSON() throws {
        try seed()
        func verify(_ disk: String = "disk0") throws -> (Int32, [String: Any]) {
            let r = try AgentHarness.run([AgentHarness.target, "verify", "--root", h.root, "--job", "vm1", "--disk", disk, "--json"])
            return (r.status, try XCTUnwrap(try JSONSerialization.jsonObject(with: r.output) as? [String: Any], r.stdout))
        }
        var (code, v) = try verify()
        XCTAssertEqual(code, 0)
        XCTAssertEqual(v["ok"] as? Bool, true)
        XCTAssertEqual(v["job"] as? String, "vm1")
        XCTAssertEqual(v["disk"] as? String, "disk0")
        XCTAssertEqual(v["blocks"] as? Int, 16)
        XCTAssertEqual(v["generation"] as? Int, 1)

        try patch(dir + "/disk0-flat.vmdk", at: UInt64(9 * bs + 7), [0x42])   // block 9 was zeros
        (code, v) = try verify()
        XCTAssertEqual(code, 1)
        XCTAssertEqual(v["ok"] as? Bool, false)
        let m = try XCTUnwrap(v["mismatch"] as? [String: Any], "\(v)")
        XCTAssertEqual(m["block"] as? Int, 9)
        XCTAssertEqual(m["offset"] as? Int, 9 * bs)
        XCTAssertEqual(m["expected"] as? String, "zeros")
        XCTAssertTrue((m["actual"] as? String ?? "").hasPrefix("sha256 "), "\(m)")

        (code, v) = try verify("nodisk")
        XCTAssertEqual(code, 2)
        XCTAssertEqual(v["ok"] as? Bool, false)
        let e = try XCTUnwrap(v["error"] as? [String: Any], "\(v)")
        XCTAssertEqual(e["kind"] as? String, "badArgument")
        XCTAssertTrue((e["message"] as? String ?? "").contains("nodisk"), "\(e)")
    }
}
