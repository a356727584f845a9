import Foundation
import VZCore
import VZPlatform

/// `replicate --metrics-file PATH`: the pass summary in the Prometheus text exposition format
/// (version 0.0.4), for node_exporter's textfile collector (Docs/events.md, "Metrics"). Written
/// atomically (temp file `.NAME.tmp`, fsync, rename, fsync the directory), so the collector never
/// reads half a file; the temp name does not end in `.prom`, so it is never collected.
public struct PassMetrics {
    public var job: String
    public var passId: String
    public var exitCode: Int32
    public var error: VZError.Kind?
    public var seconds: Double
    public var disks: [DiskResult]
    public var finished = Date()

    public init(job: String, passId: String, exitCode: Int32, error: VZError.Kind?, seconds: Double, disks: [DiskResult]) {
        self.job = job; self.passId = passId; self.exitCode = exitCode; self.error = error
        self.seconds = seconds; self.disks = disks
    }

    /// The exposition text: one `# HELP` and `# TYPE` per metric family, then its samples.
    public var text: String {
        var out = ""
        func family(_ name: String, _ help: String, _ samples: [(labels: [(String, String)], value: String)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) gauge\n"
            for s in samples {
                let labels = s.labels.map { "\($0.0)=\"\(PassMetrics.escapeLabel($0.1))\"" }.joined(separator: ",")
                out += "\(name){\(labels)} \(s.value)\n"
            }
        }
        let j = [("job", job)]
        family("vzrepl_pass_success", "1 when the last pass committed every disk, else 0.", [(j, error == nil ? "1" : "0")])
        family("vzrepl_pass_exit_code", "Exit code of the last pass (Docs/events.md).", [(j, "\(exitCode)")])
        family("vzrepl_pass_duration_seconds", "Duration of the last pass.", [(j, PassMetrics.number(seconds))])
        family("vzrepl_pass_finished_timestamp_seconds", "When the last pass ended, Unix time.",
               [(j, PassMetrics.number(finished.timeIntervalSince1970))])
        family("vzrepl_pass_disks_committed", "Disks the last pass committed.", [(j, "\(disks.count)")])
        family("vzrepl_pass_info", "The last pass's id (label pass) and, when it failed, its error kind (label kind).",
               [(j + [("pass", passId), ("kind", error?.rawValue ?? "")], "1")])
        let perDisk: [(String, String, (DiskResult) -> String)] = [
            ("vzrepl_disk_capacity_bytes", "Capacity of the disk.", { "\($0.capacityBytes)" }),
            ("vzrepl_disk_scanned_bytes", "Bytes read from the source disk in the last pass.", { "\($0.scannedBytes)" }),
            ("vzrepl_disk_changed_bytes", "Bytes the target applied in the last pass (data written plus zeros punched).", { "\($0.changedBytes)" }),
            ("vzrepl_disk_zero_bytes", "Bytes sent as zero extents in the last pass.", { "\($0.zeroBytes)" }),
            ("vzrepl_disk_sent_bytes", "Block payload bytes sent in the last pass.", { "\($0.sentBytes)" }),
            ("vzrepl_disk_active_bytes", "Bytes Active Block Mapping found active (the capacity when ABM is off).", { "\($0.activeBytes)" }),
            ("vzrepl_disk_generation", "The replica's map generation after the last pass.", { "\($0.generation)" }),
            ("vzrepl_disk_duration_seconds", "Duration of the disk's last pass.", { PassMetrics.number($0.seconds) }),
        ]
        for (name, help, value) in perDisk where !disks.isEmpty {
            family(name, help, disks.map { (j + [("disk", $0.disk)], value($0)) })
        }
        return out
    }

    /// A label value: `\`, `"` and newline escaped, as the format requires.
    static func escapeLabel(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    static func number(_ d: Double) -> String { d.isFinite ? String(format: "%.3f", d) : "0" }

    /// Writes `text` to `path` atomically.
    public func write(to path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let directory = try Directory.openRoot(dir.isEmpty ? "." : dir)
        try directory.writeAtomically(name, Array(text.utf8), mode: 0o644)
    }
}
