/// The version both agents report (`--version`, banners, hello).
public enum VZVersion {
    public static let current = "0.1.0"
}
