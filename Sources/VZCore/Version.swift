/// The version both agents report (`--version`, banners, hello).
public enum VZVersion {
    public static let current = "0.1.0"
    /// The wire protocol version both agents speak (the `VZREPL/2` banner; version 1 peers are
    /// still accepted, Docs/protocol.md §6).
    public static let protocolVersion = 2
    /// What `--version` prints: `vzrepl-source 0.1.0 (protocol 2)`.
    public static func banner(agent: String) -> String { "\(agent) \(current) (protocol \(protocolVersion))" }
}
