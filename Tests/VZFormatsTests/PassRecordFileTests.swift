import VZCore
import XCTest
@testable import VZFormats

/// `DISK.vzpass` (Docs/formats.md §7): the byte layout as documented, a round trip, and every
/// kind of damage refused with the file and the field named.
final class PassRecordFileTests: XCTestCase {
    let id = PassIdentifier.bytes(of: "469755c1-02f8-4871-94db-91e9fe925e35")!

    func record() -> PassRecordFile {
        PassRecordFile(generation: 7, committedUnixMillis: 1_700_000_001_234, startedUnixMillis: 1_700_000_000_000,
                       scannedBytes: 0x1122_3344, changedBytes: 65536, zeroBytes: 4096, passId: id)
    }

    func testLayoutIsAsDocumented() throws {
        let b = record().encode()
        XCTAssertEqual(b.count, 84)
        XCTAssertEqual(Array(b[0..<8]), Array("VZPASSRC".utf8))
        func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * $1) } }
        XCTAssertEqual(b[8..<16], [1, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(u64(16), 7)
        XCTAssertEqual(u64(24), 1_700_000_001_234)
        XCTAssertEqual(u64(32), 1_700_000_000_000)
        XCTAssertEqual(u64(40), 0x1122_3344)
        XCTAssertEqual(u64(48), 65536)
        XCTAssertEqual(u64(56), 4096)
        XCTAssertEqual(Array(b[64..<80]), id)
        let crc = UInt32(b[80]) | UInt32(b[81]) << 8 | UInt32(b[82]) << 16 | UInt32(b[83]) << 24
        XCTAssertEqual(crc, CRC32C.checksum(b[0..<80]))
        let back = try PassRecordFile.decode(b, fileName: "d.vzpass")
        XCTAssertEqual(back, record())
        XCTAssertEqual(back.passIdString, "469755c1-02f8-4871-94db-91e9fe925e35")
        XCTAssertNil(PassRecordFile(generation: 1, committedUnixMillis: 0, startedUnixMillis: 0, scannedBytes: 0, changedBytes: 0,
                                    zeroBytes: 0, passId: nil).passIdString)
    }

    func testDamageIsRefusedNamingTheField() {
        let good = record().encode()
        func refuse(_ bytes: [UInt8], _ field: String) {
            XCTAssertThrowsError(try PassRecordFile.decode(bytes, fileName: "vm1/d.vzpass")) { e in
                XCTAssertEqual((e as? VZError)?.kind, .corruptMap)
                XCTAssertTrue("\(e)".contains("vm1/d.vzpass") && "\(e)".contains(field), "\(e)")
            }
        }
        refuse(Array(good.prefix(83)), "84")
        refuse(good + [0], "84")
        var b = good; b[0] ^= 1; refuse(b, "magic")
        b = good; b[8] = 2; refuse(b, "version")
        b = good; b[12] = 1; refuse(b, "reserved")
        // Any other byte: the checksum.
        for i in 16..<84 { b = good; b[i] ^= 0x40; refuse(b, "crc32c") }
    }
}
