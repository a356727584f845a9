/// The version both agents report (`--version`, banners, hello).
public enum VZVersion {
    public static let current = "0.1.0"
    /// The wire protocol version both agents speak (the `VZREPL/3` banner; version 1 and 2 peers are
    /// still accepted, Docs/protocol.md §6).
    public static let protocolVersion = 3
    /// What `--version` prints: `vzrepl-source 0.1.0 (protocol 3)`.
    public static func banner(agent: String) -> String { "\(agent) \(current) (protocol \(protocolVersion))" }
}
