import Foundation
import Glibc
import XCTest
import VZCore
@testable import VZPlatform

/// Confinement of `Directory` (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): nothing planted in
/// the datastore can make the target open or create a file outside it.
final class DirectoryTests: XCTestCase {
    /// The root sits one level inside its own temp directory, so where "../x" would land is that
    /// directory, not the shared /tmp (which other processes write to).
    private var rootParent = ""
    private var root = ""
    private var outside = ""

    override func setUpWithError() throws {
        rootParent = try makeTempDir("vzroot")
        root = rootParent + "/root"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
        outside = try makeTempDir("vzoutside")
        try "secret\n".write(toFile: "\(outside)/victim", atomically: false, encoding: .utf8)
        let fm = FileManager.default
        try fm.createDirectory(atPath: "\(root)/sub", withIntermediateDirectories: false)
        try "inside\n".write(toFile: "\(root)/sub/file", atomically: false, encoding: .utf8)
        try fm.createSymbolicLink(atPath: "\(root)/etc", withDestinationPath: "/etc")
        try fm.createSymbolicLink(atPath: "\(root)/passwd", withDestinationPath: "/etc/passwd")
        try fm.createSymbolicLink(atPath: "\(root)/out", withDestinationPath: outside)
        try fm.createSymbolicLink(atPath: "\(root)/victim", withDestinationPath: "\(outside)/victim")
        try fm.createSymbolicLink(atPath: "\(root)/newfile", withDestinationPath: "\(outside)/created-through-link")
        try fm.createSymbolicLink(atPath: "\(root)/dotdot", withDestinationPath: "../")
        try fm.createSymbolicLink(atPath: "\(root)/inlink", withDestinationPath: "sub/file")
    }

    private func outsideEntries() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: outside).sorted()
    }

    func testSymlinkedFileCannotBeOpened() throws {
        let dir = try Directory.openRoot(root)
        for name in ["passwd", "victim", "inlink"] {
            assertVZError(.pathOutsideRoot, [name], name) { try dir.open(name, flags: O_RDONLY) }
            assertVZError(.pathOutsideRoot, [name], name) { try dir.open(name, flags: O_RDWR) }
            assertVZError(.pathOutsideRoot, [], name) { try dir.readFile(name, maxSize: 1 << 20) }
        }
        XCTAssertEqual(try String(contentsOfFile: "\(outside)/victim", encoding: .utf8), "secret\n")
    }

    func testCannotCreateThroughADanglingSymlink() throws {
        let dir = try Directory.openRoot(root)
        assertVZError(.pathOutsideRoot, ["newfile"]) { try dir.open("newfile", flags: O_WRONLY | O_CREAT) }
        assertVZError(.pathOutsideRoot) { try dir.open("newfile", flags: O_WRONLY | O_CREAT | O_TRUNC) }
        XCTAssertEqual(try outsideEntries(), ["victim"], "a file was created outside the root")
    }

    func testSubdirectoryThroughSymlinkRefused() throws {
        let dir = try Directory.openRoot(root)
        for name in ["etc", "out", "dotdot"] {
            assertVZError(.pathOutsideRoot, [name], name) { try dir.subdirectory(name, create: false) }
            // With create: mkdirat finds the name taken (EEXIST) and the open must still refuse.
            assertVZError(.pathOutsideRoot, [name], name) { try dir.subdirectory(name, create: true) }
        }
        XCTAssertEqual(try outsideEntries(), ["victim"])
        // A real sub-directory opens, and what is inside it is reachable.
        let sub = try dir.subdirectory("sub", create: false)
        XCTAssertEqual(try sub.readFile("file", maxSize: 100), Array("inside\n".utf8))
        XCTAssertEqual(sub.path, "\(root)/sub")
    }

    func testNamesThatAreNotOneComponentRefused() throws {
        let dir = try Directory.openRoot(root)
        for name in ["", ".", "..", "../x", "sub/file", "/etc/passwd", "a\u{0}b", String(repeating: "x", count: 256)] {
            assertVZError(.pathOutsideRoot, [], "'\(name)'") { try dir.open(name, flags: O_RDONLY) }
            assertVZError(.pathOutsideRoot, [], "'\(name)'") { try dir.subdirectory(name, create: true) }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: rootParent), ["root"], "'../x' landed beside the root")
    }

    func testWriteAtomicallyLeavesExactContentAndNoTempFile() throws {
        let dir = try Directory.openRoot(root)
        let sub = try dir.subdirectory("job1", create: true)
        let big = randomBytes(300_000, seed: 1)
        try sub.writeAtomically("scsi0.vzmap", big)
        XCTAssertEqual(try sub.readFile("scsi0.vzmap", maxSize: 1 << 20), big)
        XCTAssertEqual(try sub.entries(), ["scsi0.vzmap"])
        // Replacing with shorter content leaves exactly the new bytes.
        try sub.writeAtomically("scsi0.vzmap", [1, 2, 3])
        XCTAssertEqual(try sub.readFile("scsi0.vzmap", maxSize: 1 << 20), [1, 2, 3])
        XCTAssertEqual(try sub.entries(), ["scsi0.vzmap"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(root)/job1"), ["scsi0.vzmap"])
        try sub.writeAtomically("empty", [])
        XCTAssertEqual(try sub.readFile("empty", maxSize: 10), [])
    }

    /// Replacing a name that is a symlink replaces the link itself (rename does not follow it):
    /// the file outside stays as it was.
    func testWriteAtomicallyOverASymlinkDoesNotWriteOutside() throws {
        let dir = try Directory.openRoot(root)
        try dir.writeAtomically("victim", Array("replaced\n".utf8))
        XCTAssertEqual(try String(contentsOfFile: "\(outside)/victim", encoding: .utf8), "secret\n")
        XCTAssertEqual(try dir.readFile("victim", maxSize: 100), Array("replaced\n".utf8))
        var st = stat()
        XCTAssertEqual(lstat("\(root)/victim", &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFREG)
    }

    func testReadFileLimitsAndMissingFiles() throws {
        let dir = try Directory.openRoot(root)
        XCTAssertNil(try dir.readFile("nope", maxSize: 10))
        XCTAssertNil(try dir.openIfExists("nope", flags: O_RDONLY))
        try dir.writeAtomically("ten", [UInt8](repeating: 7, count: 10))
        XCTAssertEqual(try dir.readFile("ten", maxSize: 10)?.count, 10)
        assertVZError(.replicaIO, ["ten", "10 bytes"]) { try dir.readFile("ten", maxSize: 9) }
        try dir.remove("ten")
        try dir.remove("ten")  // idempotent
        XCTAssertFalse(dir.exists("ten"))
    }

    func testRemoveOfASymlinkRemovesOnlyTheLink() throws {
        let dir = try Directory.openRoot(root)
        try dir.remove("victim")
        XCTAssertFalse(dir.exists("victim"))
        XCTAssertEqual(try String(contentsOfFile: "\(outside)/victim", encoding: .utf8), "secret\n")
    }

    func testOpenRootOfMissingDirectory() {
        assertVZError(.replicaIO, ["\(root)/missing"]) { try Directory.openRoot("\(root)/missing") }
    }

    /// A source disk's folder: the same confinement, every error `.sourceIO`, a file with more
    /// than one link still read, and nothing written through it.
    func testSourceFolderIsConfinedAndReadOnly() throws {
        let dir = try Directory.openSourceFolder(root)
        for name in ["passwd", "victim", "inlink"] {
            assertVZError(.sourceIO, [name, "symbolic link"], name) { try dir.open(name, flags: O_RDONLY) }
        }
        for name in ["", ".", "..", "../x", "sub/file", "/etc/passwd", "a\u{0}b"] {
            assertVZError(.sourceIO, [], "'\(name)'") { try dir.open(name, flags: O_RDONLY) }
        }
        assertVZError(.sourceIO, ["sub", "a directory"]) { try dir.open("sub", flags: O_RDONLY) }
        XCTAssertEqual(link("\(root)/sub/file", "\(root)/linked"), 0)
        var bytes = [UInt8](repeating: 0, count: 7)
        try bytes.withUnsafeMutableBytes { try dir.open("linked", flags: O_RDONLY).read(at: 0, into: $0) }
        XCTAssertEqual(bytes, Array("inside\n".utf8))
        assertVZError(.internal, ["read-only"]) { try dir.open("new", flags: O_WRONLY | O_CREAT) }
        assertVZError(.internal, ["read-only"]) { try dir.subdirectory("newdir", create: true) }
        assertVZError(.internal, ["read-only"]) { try dir.remove("linked") }
        XCTAssertFalse(dir.exists("new") || dir.exists("newdir"))
        assertVZError(.sourceIO, ["\(root)/missing"]) { try Directory.openSourceFolder("\(root)/missing") }
    }

    /// A folder below, by a relative path: each component opened beneath, none a symlink.
    func testSubdirectoryAtPath() throws {
        try FileManager.default.createDirectory(atPath: "\(root)/sub/deeper", withIntermediateDirectories: false)
        let dir = try Directory.openSourceFolder(root)
        XCTAssertEqual(try dir.subdirectory(atPath: "sub/deeper").path, "\(root)/sub/deeper")
        XCTAssertEqual(try dir.subdirectory(atPath: "sub").open("file", flags: O_RDONLY).size(), 7)
        for path in ["", "/sub", "sub/..", "../root/sub", "out", "etc/ssh", "sub/missing"] {
            assertVZError(.sourceIO, [], "'\(path)'") { try dir.subdirectory(atPath: path) }
        }
    }
}
