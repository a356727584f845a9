import Foundation
import VZTestSupport
import XCTest

/// Issue 9: the target records the source chain of every commit in `.vzcid` (protocol 3), and a
/// chain whose base lives on another datastore is read through the job's `datastores` mapping.
/// The CIDs are read here from the descriptors' text, not by the agents' parsers; the replica is
/// held to `qemu-img convert -O raw`.
final class VMDKChainRecordTests: XCTestCase {
    var h: AgentHarness!
    let mib: UInt64 = 1 << 20
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    struct Link: Equatable, CustomStringConvertible {
        var file: String, cid: UInt32, parentCID: UInt32
        var description: String { "\(file) \(String(format: "%08x", cid)) \(String(format: "%08x", parentCID))" }
    }

    /// `CID=` and `parentCID=` of a VMDK's descriptor (a text file, or one embedded in a sparse
    /// file), found in its first 64 KiB as text.
    func cids(of path: String) throws -> (cid: UInt32, parentCID: UInt32) {
        let d = try XCTUnwrap(FileManager.default.contents(atPath: path))
        let text = String(decoding: d.prefix(65536).map { $0 == 0 ? 0x0A : $0 }, as: UTF8.self)
        func value(_ key: String) throws -> UInt32 {
            let line = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix(key + "=") }, "\(path): no \(key)")
            return try XCTUnwrap(UInt32(line.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces), radix: 16), String(line))
        }
        return (try value("CID"), try value("parentCID"))
    }

    /// `.vzcid` version 2 read by hand (Docs/formats.md §4): the chain, or nil when not known.
    func recordedChain(_ disk: String = "disk0", file: StaticString = #filePath, line: UInt = #line) throws -> [Link]? {
        let b = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: h.root + "/vm1/\(disk).vzcid"), file: file, line: line))
        func u16(_ at: Int) -> Int { Int(b[at]) | Int(b[at + 1]) << 8 }
        func u32(_ at: Int) -> UInt32 { b[at..<at + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        XCTAssertEqual(Array(b[0..<8]), Array("VZCIDREC".utf8), file: file, line: line)
        XCTAssertEqual(u32(8), 2, "version", file: file, line: line)
        let known = u32(28) & 1 != 0
        var at = 34, links: [Link] = []
        for _ in 0..<u16(32) {
            let n = u16(at)
            links.append(Link(file: String(decoding: b[at + 2..<at + 2 + n], as: UTF8.self), cid: u32(at + 2 + n), parentCID: u32(at + 6 + n)))
            at += 10 + n
        }
        XCTAssertEqual(at + 4, b.count, file: file, line: line)
        return known ? links : nil
    }

    func status() throws -> (text: String, json: [[String: Any]]) {
        let t = try AgentHarness.run([AgentHarness.target, "status", "--root", h.root])
        let j = try AgentHarness.run([AgentHarness.target, "status", "--root", h.root, "--json"])
        XCTAssertEqual(t.status, 0, t.stderr)
        return (t.stdout, try XCTUnwrap(try JSONSerialization.jsonObject(with: j.output) as? [[String: Any]]))
    }

    func testVMDK_TheChainOfEachCommitIsRecordedAndShown() throws {
        let dir = h.dir + "/vm"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let leaf = try QemuFixtures.chain(in: dir, size: 8 * mib)
        let expected = try ["leaf.vmdk", "mid.vmdk", "base.vmdk"].map { f -> Link in
            let c = try cids(of: dir + "/" + f)
            return Link(file: f, cid: c.cid, parentCID: c.parentCID)
        }
        XCTAssertEqual(expected[2].parentCID, 0xFFFF_FFFF)
        XCTAssertEqual(expected[0].parentCID, expected[1].cid)
        let job = try h.writeJob(disks: [("disk0", leaf)])
        let r = try h.replicate(job, timeout: 120)
        XCTAssertEqual(r.status, 0, r.stdout)
        XCTAssertEqual(try recordedChain(), expected)

        let (text, json) = try status()
        XCTAssertTrue(text.contains("vm1/disk0: source chain: " + expected.map {
            "\($0.file) (CID \(String(format: "%08x", $0.cid)), parent \(String(format: "%08x", $0.parentCID)))"
        }.joined(separator: " -> ")), text)
        let chain = try XCTUnwrap(json.first?["chain"] as? [[String: String]], "\(json)")
        XCTAssertEqual(chain.map { $0["file"] }, expected.map(\.file))
        XCTAssertEqual(chain.map { $0["cid"] }, expected.map { String(format: "%08x", $0.cid) })
        XCTAssertEqual(chain.map { $0["parentCID"] }, expected.map { String(format: "%08x", $0.parentCID) })

        // A new snapshot on top: the next commit records four links.
        try QemuFixtures.create(dir + "/top.vmdk", subformat: "monolithicSparse", size: 8 * mib, backing: "leaf.vmdk",
                                writes: [.init(0x44, at: 0, 65536)])
        let top = try cids(of: dir + "/top.vmdk")
        let r2 = try h.replicate(try h.writeJob(disks: [("disk0", dir + "/top.vmdk")]), timeout: 120)
        XCTAssertEqual(r2.status, 0, r2.stdout)
        XCTAssertEqual(try recordedChain(), [Link(file: "top.vmdk", cid: top.cid, parentCID: top.parentCID)] + expected)
        let oracle = h.dir + "/oracle.raw"
        try QemuFixtures.oracle(dir + "/top.vmdk", into: oracle)
        XCTAssertTrue(try AgentHarness.filesEqual(oracle, h.root + "/vm1/disk0-flat.vmdk"))

        // resize keeps the recorded chain; a raw source records an empty one.
        let rs = try AgentHarness.run([AgentHarness.target, "resize", "--root", h.root, "--job", "vm1", "--disk", "disk0",
                                       "--capacity", "\(16 * mib)", "--log-file", h.dir + "/resize.log"])
        XCTAssertEqual(rs.status, 0, rs.stdout)
        XCTAssertEqual(try recordedChain()?.count, 4)
        let raw = h.dir + "/raw.img"
        try AgentHarness.makeImage(raw, size: 16 * mib)
        XCTAssertEqual(try h.replicate(try h.writeJob(disks: [("disk0", raw)])).status, 0)
        XCTAssertEqual(try recordedChain(), [])
        XCTAssertTrue(try status().text.contains("vm1/disk0: source chain: none (not a VMDK)"))
    }

    /// Rewrites the `parentFileNameHint` of a sparse VMDK's embedded descriptor in place (the
    /// descriptor region is NUL-padded; the new text must fit in it).
    func setHint(_ path: String, _ hint: String) throws {
        var d = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: path)))
        let start = try XCTUnwrap(Self.find(Array("# Disk DescriptorFile".utf8), in: d))
        let end = d[start...].firstIndex(of: 0) ?? d.count
        var text = String(decoding: d[start..<end], as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasPrefix("parentFileNameHint=") ? "parentFileNameHint=\"\(hint)\"" : String($0)
        }
        text = lines.joined(separator: "\n")
        let bytes = Array(text.utf8)
        let regionEnd = d[end...].firstIndex { $0 != 0 } ?? d.count
        XCTAssertLessThan(start + bytes.count, regionEnd, "the new descriptor does not fit")
        d.replaceSubrange(start..<start + bytes.count, with: bytes)
        for i in start + bytes.count..<max(end, start + bytes.count) { d[i] = 0 }
        try Data(d).write(to: URL(fileURLWithPath: path))
    }

    static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && Array(hay[i..<i + needle.count]) == needle { return i }
        return nil
    }

    /// A linked clone: the leaf in `ds1/web01`, its base in `ds2/tpl`, the hint an ESXi absolute
    /// path `/vmfs/volumes/ds2/tpl/base.vmdk`. Read only through `"datastores"`; a hint that
    /// leaves the mapped datastore, or goes through a symlink in it, is refused.
    func testVMDK_ABaseOnAnotherDatastoreIsReadThroughTheMapping() throws {
        let ds1 = h.dir + "/ds1", ds2 = h.dir + "/ds2"
        try FileManager.default.createDirectory(atPath: ds1 + "/web01", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: ds2 + "/tpl", withIntermediateDirectories: true)
        try QemuFixtures.create(ds2 + "/tpl/base.vmdk", subformat: "monolithicSparse", size: 8 * mib,
                                writes: [.init(0x11, at: 0, 2 * mib), .init(0x12, at: 6 * mib, mib)])
        let leaf = ds1 + "/web01/leaf.vmdk"
        try QemuFixtures.create(leaf, subformat: "monolithicSparse", size: 8 * mib, backing: "../../ds2/tpl/base.vmdk",
                                writes: [.init(0x21, at: mib, mib)])
        let oracle = h.dir + "/oracle.raw"
        try QemuFixtures.oracle(leaf, into: oracle)
        let base = try cids(of: ds2 + "/tpl/base.vmdk"), top = try cids(of: leaf)
        let mapped = ["ds2": ds2]
        let basePath = URL(fileURLWithPath: ds2).resolvingSymlinksInPath().path + "/tpl/base.vmdk"
        func pass(_ datastores: [String: String]?) throws -> AgentHarness.Result {
            try h.cleanUpRoot()
            let extra: [String: Any] = datastores.map { ["datastores": $0] } ?? [:]
            return try h.replicate(try h.writeJob(disks: [("disk0", leaf)], extra: extra), timeout: 120)
        }

        // qemu's relative hint: outside the disk's folder, so only with the mapping.
        let unmapped = try pass(nil)
        XCTAssertEqual(unmapped.status, 3, unmapped.stdout)
        XCTAssertTrue((unmapped.events("error").first?["message"] as? String ?? "").contains("\"datastores\" mapping"), unmapped.stdout)
        XCTAssertEqual((FileManager.default.enumerator(atPath: h.root)?.allObjects as? [String]) ?? [], [])
        let relative = try pass(mapped)
        XCTAssertEqual(relative.status, 0, relative.stdout)
        XCTAssertTrue(try AgentHarness.filesEqual(oracle, h.root + "/vm1/disk0-flat.vmdk"))

        // ESXi's absolute hint, mapped to the mount.
        try setHint(leaf, "/vmfs/volumes/ds2/tpl/base.vmdk")
        XCTAssertEqual(try cids(of: leaf).cid, top.cid)
        XCTAssertEqual(try pass(nil).status, 3)
        let r = try pass(mapped)
        XCTAssertEqual(r.status, 0, r.stdout)
        XCTAssertTrue(try AgentHarness.filesEqual(oracle, h.root + "/vm1/disk0-flat.vmdk"), "the replica differs from qemu-img's reading")
        XCTAssertEqual(try recordedChain(), [Link(file: "leaf.vmdk", cid: top.cid, parentCID: top.parentCID),
                                             Link(file: basePath, cid: base.cid, parentCID: 0xFFFF_FFFF)])
        XCTAssertEqual((r.events("disk-started").first?["chain"] as? [[String: Any]])?.compactMap { $0["file"] as? String },
                       ["leaf.vmdk", basePath])

        // Leaving the datastore it names, and a symlink inside the datastore: refused.
        try setHint(leaf, "/vmfs/volumes/ds2/../ds1/x/../../../etc/base.vmdk")
        let escape = try pass(mapped)
        XCTAssertEqual(escape.status, 3, escape.stdout)
        XCTAssertTrue((escape.events("error").first?["message"] as? String ?? "").contains("leaves the datastore it names"), escape.stdout)
        try FileManager.default.createSymbolicLink(atPath: ds2 + "/link", withDestinationPath: ds2 + "/tpl")
        try setHint(leaf, "/vmfs/volumes/ds2/link/base.vmdk")
        let viaLink = try pass(mapped)
        XCTAssertEqual(viaLink.status, 3, viaLink.stdout)
        XCTAssertTrue((viaLink.events("error").first?["message"] as? String ?? "").contains("symbolic link"), viaLink.stdout)
        XCTAssertEqual((FileManager.default.enumerator(atPath: h.root)?.allObjects as? [String]) ?? [], [])
    }
}
