import Foundation
import Glibc
import VZPlatform

/// What `replicate` (and `plan`) show a person at a terminal instead of JSON lines: one live line
/// per disk on stderr — phase, done/total, rate, time left — redrawn as events come, and a
/// summary at the end. Fed every event by the `EventEmitter` (under its lock, so one writer).
/// Drawn through `Console`, which keeps the agents' log lines out of the live lines (only
/// warnings and errors are shown, above them) until the pass has finished.
public final class ProgressDisplay {
    private let console: Console
    private var order: [String] = []
    private var lines: [String: String] = [:]

    public init(console: Console = .shared) { self.console = console }

    func show(_ event: String, _ f: [String: Any]) {
        let disk = f["disk"] as? String
        switch event {
        case "pass-started", "plan-started":
            for d in f["disks"] as? [String] ?? [] where lines[d] == nil {
                order.append(d)
                lines[d] = "\(d): waiting"
            }
            if let v = f["targetVersion"] as? String { print("target \(v) (protocol \(f["targetProtocolVersion"] ?? "?"))") }
        case "disk-started":
            if let d = disk { set(d, "\(d): map \(f["mapStatus"] ?? "?"), generation \(f["generation"] ?? "?")") }
        case "disk-progress":
            if let d = disk { set(d, ProgressDisplay.progressLine(f)) }
        case "disk-finished":
            if let d = disk {
                set(d, "\(d): committed generation \(f["generation"] ?? "?"), sent \(ProgressDisplay.bytes(f["sentBytes"])) of \(ProgressDisplay.bytes(f["scannedBytes"])) scanned in \(ProgressDisplay.duration(f["seconds"]))")
            }
        case "disk-plan":
            if let d = disk {
                set(d, "\(d): would send \(f["dataBlocks"] ?? 0) blocks (\(ProgressDisplay.bytes(f["sentBytes"])) on the wire) and \(ProgressDisplay.bytes(f["zeroBytes"])) of zeros; \(ProgressDisplay.bytes(f["unchangedBytes"])) unchanged")
            }
        case "error":
            let text = "failed (\(f["kind"] ?? "?"), exit \(f["exitCode"] ?? "?")): \(f["message"] ?? "")"
            if let d = disk { set(d, "\(d): \(text)") } else { print("error: \(text)") }
        case "pass-finished", "plan-finished":
            redraw()
            console.endLive()
            let ok = f["ok"] as? Bool ?? false
            let what = event == "plan-finished" ? "plan" : "pass"
            let committed = event == "plan-finished" ? "" : ", \(f["disksCommitted"] ?? 0) disk(s) committed"
            print("\(what) \(ok ? "finished" : "failed (exit \(f["exitCode"] ?? "?"))")\(committed) in \(ProgressDisplay.duration(f["seconds"]))")
            return
        default:
            return
        }
        redraw()
    }

    private func set(_ disk: String, _ line: String) {
        if lines[disk] == nil { order.append(disk) }
        lines[disk] = line
    }

    /// A message above the disk lines.
    private func print(_ text: String) { console.message(text) }

    /// Draws every disk's line again, in place of the ones drawn last.
    private func redraw() { console.showLive(order.map { String((lines[$0] ?? $0).prefix(200)) }) }

    /// "disk0: scan 1.2 GiB / 10.0 GiB (12.0%) 85.3 MiB/s ETA 1m45s".
    static func progressLine(_ f: [String: Any]) -> String {
        let disk = f["disk"] as? String ?? "?"
        var s = "\(disk): \(f["phase"] ?? "?") \(bytes(f["bytesDone"])) / \(bytes(f["bytesTotal"]))"
        if let p = f["percent"] as? Double { s += String(format: " (%.1f%%)", p) }
        if let sd = f["stepBytesDone"], let st = f["stepBytesTotal"] { s += ", target \(bytes(sd)) / \(bytes(st))" }
        if let r = number(f["bytesPerSecond"]), r > 0 { s += " \(bytes(r))/s" }
        if let eta = number(f["etaSeconds"]) { s += " ETA \(duration(eta))" }
        return s
    }

    static func number(_ v: Any?) -> Double? {
        switch v {
        case let x as Double: return x
        case let x as Int: return Double(x)
        case let x as UInt64: return Double(x)
        case let x as UInt32: return Double(x)
        default: return nil
        }
    }

    /// 1536 -> "1.5 KiB".
    static func bytes(_ v: Any?) -> String {
        guard var x = number(v) else { return "?" }
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var u = 0
        while x >= 1024 && u < units.count - 1 { x /= 1024; u += 1 }
        return u == 0 ? "\(Int(x)) B" : String(format: "%.1f", x) + " " + units[u]
    }

    /// 105 -> "1m45s", 3.2 -> "3.2s", 7300 -> "2h01m".
    static func duration(_ v: Any?) -> String {
        guard let s = number(v) else { return "?" }
        if s < 60 { return s == s.rounded() ? "\(Int(s))s" : String(format: "%.1fs", s) }
        let t = Int(s.rounded())
        if t < 3600 { return "\(t / 60)m\(String(format: "%02d", t % 60))s" }
        return "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m"
    }
}
