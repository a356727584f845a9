import XCTest
@testable import VZCore

final class JobConfigTests: XCTestCase {
    static let execSample = #"""
    {
      "job": "vm-101",
      "mode": "differential",
      "blockSize": 1048576,
      "whitespace": true,
      "target": { "transport": "exec", "command": ["vzrepl-target", "serve", "--stdio", "--root", "/srv/replicas"] },
      "disks": [
        { "name": "scsi0", "source": "/vmfs/volumes/ds1/vm-101/vm-101-flat.vmdk", "capacityBytes": 10737418240 },
        { "name": "scsi1.data", "source": "/dev/sdb" }
      ]
    }
    """#

    static let sshSample = #"""
    {
      "job": "web_01",
      "mode": "full",
      "blockSize": 65536,
      "target": {
        "transport": "ssh", "host": "dr.example.net", "port": 2222, "user": "vzrepl",
        "identity": "/etc/vzrepl/id_ed25519",
        "hostKeySHA256": "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
        "idleTimeoutSeconds": 120, "connectTimeoutSeconds": 15.5
      },
      "disks": [ { "name": "disk-0", "source": "/dev/vg0/web" } ]
    }
    """#

    static let knownHostsSample = #"""
    { "job": "j", "target": { "transport": "ssh", "host": "h", "user": "u", "identity": "/k", "knownHosts": "/etc/ssh/known" },
      "disks": [ { "name": "d", "source": "/x" } ] }
    """#

    private func parse(_ text: String, file: String = "job.json") throws -> JobConfig {
        try JobConfig.parse(Array(text.utf8), fileName: file)
    }

    func testValidSamplesParse() throws {
        let e = try parse(Self.execSample)
        XCTAssertEqual(e.job, "vm-101")
        XCTAssertEqual(e.mode, .differential)
        XCTAssertEqual(e.blockSize, 1 << 20)
        XCTAssertEqual(e.target.transport, .exec)
        XCTAssertEqual(e.target.command?.first, "vzrepl-target")
        XCTAssertEqual(e.disks.map(\.name), ["scsi0", "scsi1.data"])
        XCTAssertEqual(e.disks[0].capacityBytes, 10 << 30)
        XCTAssertNil(e.disks[1].capacityBytes)

        let s = try parse(Self.sshSample)
        XCTAssertEqual(s.mode, .full)
        XCTAssertEqual(s.blockSize, 65536)
        XCTAssertEqual(s.target.port, 2222)
        XCTAssertEqual(s.target.connectTimeoutSeconds, 15.5)

        XCTAssertEqual(try parse(Self.knownHostsSample).target.knownHosts, "/etc/ssh/known")
    }

    func testDefaults() throws {
        let c = try parse(#"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#)
        XCTAssertEqual(c.mode, .differential)
        XCTAssertEqual(c.blockSize, JobConfig.defaultBlockSize)
        XCTAssertTrue(c.whitespace)
    }

    func testEncodeThenParseIsIdentity() throws {
        let c = try parse(Self.sshSample)
        let data = try JSONEncoder().encode(c)
        XCTAssertEqual(try JobConfig.parse(Array(data), fileName: "re.json"), c)
    }

    func testEveryPowerOfTwoBlockSizeInRange() throws {
        for shift in 0..<32 {
            let size = UInt64(1) << shift
            let text = Self.execSample.replacingOccurrences(of: "1048576", with: "\(size)")
            if (16...23).contains(shift) {
                XCTAssertEqual(try parse(text).blockSize, UInt32(size))
            } else {
                assertVZError(.badJobFile, containing: ["job.json", "field 'blockSize'"], "2^\(shift)") { try parse(text) }
            }
        }
    }

    /// (description, the JSON to parse, the field the message must name)
    private static let invalid: [(String, String, String)] = [
        ("block size not a power of two", #"{"job":"j","blockSize":1000000,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "blockSize"),
        ("block size 3 MiB", #"{"job":"j","blockSize":3145728,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "blockSize"),
        ("block size 0", #"{"job":"j","blockSize":0,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "blockSize"),
        ("block size too large", #"{"job":"j","blockSize":16777216,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "blockSize"),
        ("block size a string", #"{"job":"j","blockSize":"1M","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "blockSize"),
        ("disks missing", #"{"job":"j","target":{"transport":"exec","command":["t"]}}"#, "disks"),
        ("disks empty", #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[]}"#, "disks"),
        ("disks an object", #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":{"name":"d","source":"/x"}}"#, "disks"),
        ("disk name with slash", #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"a/b","source":"/x"}]}"#, "disks[0].name"),
        ("disk name ..", #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"ok","source":"/x"},{"name":"..","source":"/y"}]}"#, "disks[1].name"),
        ("disk name with .. inside", #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"a..b","source":"/x"}]}"#, "disks[0].name"),
        ("disk name starting with a dot", #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":".hidden","source":"/x"}]}"#, "disks[0].name"),
        ("disk name with a space", #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"my disk","source":"/x"}]}"#, "disks[0].name"),
        ("disk name empty", #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"","source":"/x"}]}"#, "disks[0].name"),
        ("duplicate disk names", #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"},{"name":"e","source":"/y"},{"name":"d","source":"/z"}]}"#, "disks[2].name"),
        ("disk source missing", #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d"}]}"#, "disks[0].source"),
        ("disk source empty", #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":""}]}"#, "disks[0].source"),
        ("job missing", #"{"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "job"),
        ("job name with slash", #"{"job":"a/b","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "job"),
        ("job a number", #"{"job":5,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "job"),
        ("mode unknown", #"{"job":"j","mode":"incremental","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "mode"),
        ("whitespace a string", #"{"job":"j","whitespace":"yes","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "whitespace"),
        ("target missing", #"{"job":"j","disks":[{"name":"d","source":"/x"}]}"#, "target"),
        ("transport unknown", #"{"job":"j","target":{"transport":"ftp"},"disks":[{"name":"d","source":"/x"}]}"#, "target.transport"),
        ("exec without command", #"{"job":"j","target":{"transport":"exec"},"disks":[{"name":"d","source":"/x"}]}"#, "target.command"),
        ("exec with empty command", #"{"job":"j","target":{"transport":"exec","command":[]},"disks":[{"name":"d","source":"/x"}]}"#, "target.command"),
        ("exec with empty program", #"{"job":"j","target":{"transport":"exec","command":[""]},"disks":[{"name":"d","source":"/x"}]}"#, "target.command"),
        ("command not strings", #"{"job":"j","target":{"transport":"exec","command":[1,2]},"disks":[{"name":"d","source":"/x"}]}"#, "target.command[0]"),
        ("ssh without host", #"{"job":"j","target":{"transport":"ssh","user":"u","identity":"/k","hostKeySHA256":"SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"},"disks":[{"name":"d","source":"/x"}]}"#, "target.host"),
        ("ssh without user", #"{"job":"j","target":{"transport":"ssh","host":"h","identity":"/k","hostKeySHA256":"SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"},"disks":[{"name":"d","source":"/x"}]}"#, "target.user"),
        ("ssh without identity", #"{"job":"j","target":{"transport":"ssh","host":"h","user":"u","hostKeySHA256":"SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"},"disks":[{"name":"d","source":"/x"}]}"#, "target.identity"),
        ("ssh without pin", #"{"job":"j","target":{"transport":"ssh","host":"h","user":"u","identity":"/k"},"disks":[{"name":"d","source":"/x"}]}"#, "target.hostKeySHA256"),
        ("ssh with an MD5 pin", #"{"job":"j","target":{"transport":"ssh","host":"h","user":"u","identity":"/k","hostKeySHA256":"MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48"},"disks":[{"name":"d","source":"/x"}]}"#, "target.hostKeySHA256"),
        ("ssh port 0", #"{"job":"j","target":{"transport":"ssh","host":"h","port":0,"user":"u","identity":"/k","knownHosts":"/kh"},"disks":[{"name":"d","source":"/x"}]}"#, "target.port"),
        ("ssh port a string", #"{"job":"j","target":{"transport":"ssh","host":"h","port":"22","user":"u","identity":"/k","knownHosts":"/kh"},"disks":[{"name":"d","source":"/x"}]}"#, "target.port"),
        ("idle timeout negative", #"{"job":"j","target":{"transport":"exec","command":["t"],"idleTimeoutSeconds":-1},"disks":[{"name":"d","source":"/x"}]}"#, "target.idleTimeoutSeconds"),
        ("connect timeout too long", #"{"job":"j","target":{"transport":"exec","command":["t"],"connectTimeoutSeconds":7200},"disks":[{"name":"d","source":"/x"}]}"#, "target.connectTimeoutSeconds"),
        ("bandwidth limit 0", #"{"job":"j","bandwidthLimit":0,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "bandwidthLimit"),
        ("bandwidth limit negative", #"{"job":"j","bandwidthLimit":-5,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "bandwidthLimit"),
        ("bandwidth limit a fraction", #"{"job":"j","bandwidthLimit":100000.5,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "bandwidthLimit"),
        ("bandwidth limit a string", #"{"job":"j","bandwidthLimit":"4M","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "bandwidthLimit"),
        ("bandwidth limit too low for 8 MiB blocks", #"{"job":"j","blockSize":8388608,"bandwidthLimit":100000,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "bandwidthLimit"),
        ("parallel disks 0", #"{"job":"j","parallelDisks":0,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "parallelDisks"),
        ("parallel disks 17", #"{"job":"j","parallelDisks":17,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "parallelDisks"),
        ("parallel disks a bool", #"{"job":"j","parallelDisks":true,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "parallelDisks"),
        ("host null", #"{"job":"j","target":{"transport":"ssh","host":null,"user":"u","identity":"/k","knownHosts":"/kh"},"disks":[{"name":"d","source":"/x"}]}"#, "target.host"),
    ]

    func testBandwidthLimitAndParallelDisks() throws {
        let text = #"{"job":"j","bandwidthLimit":4194304,"parallelDisks":3,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#
        let c = try parse(text)
        XCTAssertEqual(c.bandwidthLimit, 4_194_304)
        XCTAssertEqual(c.parallelDisks, 3)
        let d = try parse(#"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#)
        XCTAssertNil(d.bandwidthLimit)
        XCTAssertEqual(d.parallelDisks, 1)
        XCTAssertEqual(try parse(#"{"job":"j","bandwidthLimit":65536,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#).bandwidthLimit, 65536)
    }

    func testInvalidCasesNameTheField() {
        for (what, json, field) in Self.invalid {
            assertVZError(.badJobFile, containing: ["bad-job.json", "field '\(field)'"], what) {
                try parse(json, file: "bad-job.json")
            }
        }
    }

    /// A number that is valid JSON but does not fit the field's type (negative, too large, a
    /// fraction) must be reported against the field, not as "not valid JSON".
    func testRegression_OutOfRangeNumbersNameTheField() {
        let cases: [(String, String, String)] = [
            ("block size negative", #"{"job":"j","blockSize":-1,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "blockSize"),
            ("block size over 32 bits", #"{"job":"j","blockSize":5000000000,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "blockSize"),
            ("block size a fraction", #"{"job":"j","blockSize":65536.5,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#, "blockSize"),
            ("capacity negative", #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x","capacityBytes":-5}]}"#, "disks[0].capacityBytes"),
        ]
        for (what, json, field) in cases {
            assertVZError(.badJobFile, containing: ["bad-job.json", "field '\(field)'"], what) {
                try parse(json, file: "bad-job.json")
            }
        }
    }

    /// Regression: a field the agent does not know (a typo, or a field of a newer release) was
    /// ignored silently, so `"blocksize": 65536` ran with 1 MiB blocks.
    func testRegression_UnknownFieldsAreRefusedWithTheirPath() {
        let base = #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#
        let cases: [(String, String, String)] = [
            (#"{"job":"j","blocksize":65536,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#,
             "blocksize", "job.json: field 'blocksize': unknown field (known: job, mode, blockSize, whitespace, target, disks, abm, workDir, abmJournalOverlay, datastores, bandwidthLimit, parallelDisks)"),
            (#"{"job":"j","compress":true,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#,
             "compress", "unknown field"),
            (#"{"job":"j","target":{"transport":"exec","command":["t"],"idleTimeout":5},"disks":[{"name":"d","source":"/x"}]}"#,
             "target.idleTimeout", "unknown field (known: transport, command, host, port, user, identity, hostKeySHA256, knownHosts, idleTimeoutSeconds, progressTimeoutSeconds, connectTimeoutSeconds)"),
            (#"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"},{"name":"e","source":"/y","blocksize":1}]}"#,
             "disks[1].blocksize", "job.json: field 'disks[1].blocksize': unknown field (known: name, source, capacityBytes, format, node)"),
            (#"{"job":"j","zz":1,"aa":2,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#,
             "aa", "also unknown: zz"),
        ]
        XCTAssertNoThrow(try parse(base))
        for (json, field, text) in cases {
            assertVZError(.badJobFile, containing: ["field '\(field)': unknown field", text], field) { try parse(json) }
            XCTAssertThrowsError(try JobConfig.decode(Array(json.utf8), fileName: "job.json")) { e in
                XCTAssertEqual((e as? JobFileError)?.field, field)
            }
        }
    }

    /// Regression: integers went through Double, so a capacity above 2^53 was silently rounded
    /// (2^62 + 512 became 2^62), and an odd one became a whole number of sectors.
    func testRegression_LargeIntegersAreExactOrRefused() throws {
        func job(capacity: String) -> String {
            #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x","capacityBytes":"# + capacity + "}]}"
        }
        XCTAssertEqual(try parse(job(capacity: "4611686018427388416")).disks[0].capacityBytes, (1 << 62) + 512)
        XCTAssertEqual(try parse(job(capacity: "18446744073709551104")).disks[0].capacityBytes, UInt64.max - 511)
        assertVZError(.badJobFile, containing: ["field 'disks[0].capacityBytes'", "9007199254740993", "512-byte sectors"]) {
            try parse(job(capacity: "9007199254740993"))
        }
        for bad in ["18446744073709551616", "-512", "512.5", "1e300"] {
            assertVZError(.badJobFile, containing: ["field 'disks[0].capacityBytes'", "whole number from 0 to 18446744073709551615"], bad) {
                try parse(job(capacity: bad))
            }
        }
        for bad in ["0", "1000"] {
            assertVZError(.badJobFile, containing: ["field 'disks[0].capacityBytes'", "\(bad) is not a disk size"], bad) {
                try parse(job(capacity: bad))
            }
        }
        assertVZError(.badJobFile, containing: ["field 'disks[0].capacityBytes': expected a non-negative whole number"]) {
            try parse(job(capacity: #""10G""#))
        }
        XCTAssertNil(try parse(job(capacity: "null")).disks[0].capacityBytes)
    }

    /// Regression: `idleTimeoutSeconds: 1e-300` was accepted (any value above 0).
    func testRegression_TimeoutsHaveASaneMinimum() throws {
        func job(_ field: String, _ value: String) -> String {
            #"{"job":"j","target":{"transport":"exec","command":["t"],""# + field + #"":"# + value + #"},"disks":[{"name":"d","source":"/x"}]}"#
        }
        for (field, max) in [("idleTimeoutSeconds", "86400"), ("connectTimeoutSeconds", "3600")] {
            for bad in ["1e-300", "0.5", "0", "-1"] {
                assertVZError(.badJobFile, containing: ["field 'target.\(field)'", "between 1 and \(max) seconds"], "\(field) \(bad)") {
                    try parse(job(field, bad))
                }
            }
            XCTAssertNoThrow(try parse(job(field, "1")), field)
            XCTAssertNoThrow(try parse(job(field, max)), field)
        }
    }

    func testTypeErrorsKeepTheirMessages() {
        let cases: [(String, String)] = [
            (#"{"job":"j","blockSize":"1M","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#,
             "field 'blockSize': expected a non-negative whole number"),
            (#"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":{"name":"d"}}"#, "field 'disks': expected a list"),
            (#"{"job":"j","target":["exec"],"disks":[{"name":"d","source":"/x"}]}"#, "field 'target': expected an object"),
            (#"{"job":"j","target":{"transport":"ssh","host":"h","port":22.5,"user":"u","identity":"/k","knownHosts":"/kh"},"disks":[{"name":"d","source":"/x"}]}"#,
             "field 'target.port': 22.5 is not exactly a whole number from 0 to 65535"),
            (#"{"job":"j","whitespace":1,"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#,
             "field 'whitespace': expected true or false"),
            ("[1]", "x.json: the file must hold one JSON object"),
        ]
        for (json, text) in cases {
            assertVZError(.badJobFile, containing: [text], text) { try parse(json, file: "x.json") }
        }
    }

    func testNotJSON() {
        for text in ["", "{", "job: j", "[1,2]", "null", "{\"job\":\"j\",}"] {
            assertVZError(.badJobFile, containing: ["x.json"], "'\(text)'") { try parse(text, file: "x.json") }
        }
        assertVZError(.badJobFile, containing: ["x.json", "not valid JSON"]) { try parse("{", file: "x.json") }
    }

    func testNameRules() {
        for ok in ["a", "vm-101", "scsi0.0", "A_b-c.d", String(repeating: "x", count: 64)] {
            XCTAssertNil(NameRules.problem(with: ok), ok)
        }
        for bad in ["", ".", "..", "a..b", "a/b", "/abs", ".x", "-x", "a b", "é", "a\u{0}b", "a\\b", String(repeating: "x", count: 65)] {
            XCTAssertNotNil(NameRules.problem(with: bad), bad)
        }
    }
}

final class VMDKJobFormatTests: XCTestCase {
    private func parse(_ text: String) throws -> JobConfig {
        try JobConfig.parse(Array(text.utf8), fileName: "job.json")
    }

    func testVMDK_DiskFormatIsOptionalAndChecked() throws {
        func job(_ disk: String) -> String {
            #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":["# + disk + "]}"
        }
        XCTAssertNil(try parse(job(#"{"name":"d","source":"/x"}"#)).disks[0].format)
        XCTAssertEqual(try parse(job(#"{"name":"d","source":"/x","format":"raw"}"#)).disks[0].format, .raw)
        XCTAssertEqual(try parse(job(#"{"name":"d","source":"/x","format":"vmdk"}"#)).disks[0].format, .vmdk)
        assertVZError(.badJobFile, containing: ["field 'disks[0].format'", "'qcow2' is not a disk format (raw, vmdk)"]) {
            try parse(job(#"{"name":"d","source":"/x","format":"qcow2"}"#))
        }
    }
}

extension VMDKJobFormatTests {
    func testVMDK_NodeGoesWithAVMXSource() throws {
        func job(_ disk: String) -> String {
            #"{"job":"j","target":{"transport":"exec","command":["t"]},"disks":["# + disk + "]}"
        }
        XCTAssertEqual(try JobConfig.parse(Array(job(#"{"name":"d","source":"/ds/vm/vm.vmx","node":"scsi0:1"}"#).utf8), fileName: "job.json").disks[0].node, "scsi0:1")
        for (disk, parts) in [(#"{"name":"d","source":"/ds/vm/vm.vmx"}"#, ["field 'disks[0].node'", "source is a .vmx"]),
                              (#"{"name":"d","source":"/x.raw","node":"scsi0:0"}"#, ["field 'disks[0].node'", "must then be the VM's .vmx"]),
                              (#"{"name":"d","source":"/ds/vm/vm.vmx","node":"scsi0"}"#, ["field 'disks[0].node'", "not a device node"]),
                              (#"{"name":"d","source":"/ds/vm/vm.vmx","node":"scsi0:0","format":"raw"}"#, ["field 'disks[0].format'"])] {
            assertVZError(.badJobFile, containing: parts) { try JobConfig.parse(Array(job(disk).utf8), fileName: "job.json") }
        }
    }
}

final class JobConfigABMTests: XCTestCase {
    func testABMDefaultsOffAndWorkDirDefaultsPerJob() throws {
        let c = try JobConfig.parse(Array(#"{"job":"web1","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#.utf8), fileName: "j")
        XCTAssertFalse(c.abm)
        XCTAssertNil(c.workDir)
        XCTAssertEqual(c.effectiveWorkDir, "/var/lib/vzrepl/work/web1/")
        let on = try JobConfig.parse(Array(#"{"job":"web1","abm":true,"workDir":"/srv/w","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#.utf8), fileName: "j")
        XCTAssertTrue(on.abm)
        XCTAssertFalse(on.abmJournalOverlay)
        XCTAssertEqual(on.effectiveWorkDir, "/srv/w")
        for bad in [#""workDir":"rel/w""#, #""workDir":"/a/../b""#, #""abm":1"#] {
            XCTAssertThrowsError(try JobConfig.parse(Array(#"{"job":"web1",\#(bad),"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#.utf8), fileName: "j"), bad)
        }
    }
}

final class JobConfigDatastoresTests: XCTestCase {
    func job(_ datastores: String) -> [UInt8] {
        Array(#"{"job":"web1","datastores":\#(datastores),"target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#.utf8)
    }

    func testDatastoresMapNamesToMounts() throws {
        XCTAssertEqual(try JobConfig.parse(job(#"{"ds1":"/vmfs/volumes/ds1","5f3a-1b2c":"/mnt/ds2/"}"#), fileName: "j").datastores,
                       ["ds1": "/vmfs/volumes/ds1", "5f3a-1b2c": "/mnt/ds2/"])
        XCTAssertEqual(try JobConfig.parse(job("{}"), fileName: "j").datastores, [:])
        let none = try JobConfig.parse(Array(#"{"job":"web1","target":{"transport":"exec","command":["t"]},"disks":[{"name":"d","source":"/x"}]}"#.utf8), fileName: "j")
        XCTAssertEqual(none.datastores, [:])
    }

    func testBadDatastoresAreRefusedNamingTheEntry() {
        for (bad, parts) in [(#"{"ds1":"mnt/ds1"}"#, ["field 'datastores.ds1'", "not an absolute path"]),
                             (#"{"ds1":"/mnt/../etc"}"#, ["field 'datastores.ds1'", "'..'"]),
                             (#"{"ds1":"/mnt/./ds1"}"#, ["field 'datastores.ds1'", "'.'"]),
                             (#"{"ds1":"/"}"#, ["field 'datastores.ds1'", "root directory"]),
                             (#"{"a/b":"/mnt/x"}"#, ["field 'datastores.a/b'", "'/'"]),
                             (#"{"..":"/mnt/x"}"#, ["field 'datastores...'", "'..'"]),
                             (#"{"":"/mnt/x"}"#, ["field 'datastores.'", "1 to 255 bytes"]),
                             (#"{"ds1":1}"#, ["datastores"]),
                             (#"["/mnt/ds1"]"#, ["datastores"])] {
            assertVZError(.badJobFile, containing: parts, bad) { try JobConfig.parse(job(bad), fileName: "job.json") }
        }
    }
}

/// Support bundles show a job file with its secrets redacted (JobSecrets, Docs/job-file.md).
final class JobSecretsTests: XCTestCase {
    func testSecretFieldsAndValuesAreRedactedAtAnyDepth() {
        let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAA"
        let job: [String: Any] = [
            "job": "vm1",
            "target": ["identity": "/root/.ssh/id_ed25519", "keyPassphrase": "hunter2", "host": "t"],
            "cbt": ["vcenterToken": "abc", "Password": "p", "list": [["apiKey": "k"] as [String: Any], pem] as [Any]] as [String: Any],
        ]
        let r = JobSecrets.redact(job) as! [String: Any]
        let target = r["target"] as! [String: Any]
        XCTAssertEqual(target["identity"] as? String, "/root/.ssh/id_ed25519", "a key's path is not a secret")
        XCTAssertEqual(target["keyPassphrase"] as? String, JobSecrets.redacted)
        XCTAssertEqual(target["host"] as? String, "t")
        let cbt = r["cbt"] as! [String: Any]
        XCTAssertEqual(cbt["vcenterToken"] as? String, JobSecrets.redacted)
        XCTAssertEqual(cbt["Password"] as? String, JobSecrets.redacted)
        let list = cbt["list"] as! [Any]
        XCTAssertEqual((list[0] as? [String: Any])?["apiKey"] as? String, JobSecrets.redacted)
        XCTAssertEqual(list[1] as? String, JobSecrets.redacted)
        XCTAssertEqual(r["job"] as? String, "vm1")
    }

    func testPassIdentifiers() {
        for _ in 0..<100 {
            let id = PassIdentifier.make()
            XCTAssertEqual(id, id.lowercased())
            let b = PassIdentifier.bytes(of: id)!
            XCTAssertEqual(b[6] >> 4, 4, "version 4")
            XCTAssertEqual(PassIdentifier.string(of: b), id)
        }
        XCTAssertNil(PassIdentifier.bytes(of: "469755c1-02f8-4871-94db-91e9fe925e3g"))
        XCTAssertNil(PassIdentifier.bytes(of: "469755c1-02f8-4871-94db91e9fe925e35-"))
    }
}
