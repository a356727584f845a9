/// The version both agents report (`--version`, banners, hello).
public enum VZVersion {
    public static let current = "0.1.0"
    /// The wire protocol version both agents speak (the `VZREPL/1` banner, Docs/protocol.md).
    public static let protocolVersion = 1
    /// What `--version` prints: `vzrepl-source 0.1.0 (protocol 1)`.
    public static func banner(agent: String) -> String { "\(agent) \(current) (protocol \(protocolVersion))" }
}
