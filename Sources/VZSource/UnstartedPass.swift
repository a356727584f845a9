import VZCore

/// A pass that fails before it can start — bad arguments, a job file that cannot be read or is
/// invalid — still gives the controller the whole sequence of Docs/events.md: `pass-started`
/// (with only `sourceVersion` and `passId`: the job's disks and mode are not known), `error`, and
/// `pass-finished` last, with `ok` false.
public enum UnstartedPass {
    /// Emits the three events and returns the exit code (2 for `badJobFile` / `badArgument`).
    @discardableResult
    public static func report(_ error: VZError, events: EventEmitter, version: String) -> SourceAgent.ExitCode {
        let code = SourceAgent.ExitCode(for: error.kind)
        events.emit("pass-started", ["sourceVersion": version, "passId": PassIdentifier.make()])
        events.emit("error", ["kind": error.kind.rawValue, "message": error.message, "transient": error.isTransient,
                              "exitCode": Int(code.rawValue), "hint": error.kind.hint])
        events.emit("pass-finished", ["ok": false, "exitCode": Int(code.rawValue), "disksCommitted": 0, "seconds": 0.0])
        return code
    }
}
