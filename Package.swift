// swift-tools-version:6.0
import PackageDescription

// Layering (Docs/architecture.md, checked by Scripts/check-layering.sh in `make test`):
// executables -> VZSource/VZTarget -> VZWire, VZTransportLocal, VZTransportSSH -> VZPlatform/VZFormats -> VZCore.
// Each C library is imported by exactly one wrapper: COpenSSL, CLZ4 and CZlib by VZPlatform, CLibSSH2 by
// VZTransportSSH (and CSSHKeystream, its AES-CTR keystream cache), CVZShims by VZPlatform. The target agent links no libssh2 (it never depends on VZTransportSSH).
let package = Package(
    name: "vzrepl",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "vzrepl-source", targets: ["vzrepl-source"]),
        .executable(name: "vzrepl-target", targets: ["vzrepl-target"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ],
    targets: [
        .systemLibrary(name: "CLibSSH2", pkgConfig: "libssh2", providers: [.apt(["libssh2-1-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CVZShims"),
        // libssh2 1.10's per-16-byte AES-CTR calls, served from a keystream cache (VZTransportSSH only).
        .target(name: "CSSHKeystream", linkerSettings: [.linkedLibrary("crypto")]),
        .target(name: "VZCore"),
        .target(name: "VZFormats", dependencies: ["VZCore"]),
        // Active Block Mapping: partition tables and filesystem bitmaps -> active extents, read
        // through a BlockReader it is given (no I/O of its own).
        .target(name: "VZActiveBlocks", dependencies: ["VZCore"]),
        .target(name: "VZPlatform", dependencies: ["VZCore", "CVZShims", "CLZ4", "COpenSSL", "CZlib",
                                                .product(name: "Logging", package: "swift-log")]),
        // The protocol: banner, message channel, session rules. No libssh2, no files.
        .target(name: "VZWire", dependencies: ["VZCore"]),
        // Byte streams over file descriptors: stdin/stdout under sshd, a spawned child's pipes.
        .target(name: "VZTransportLocal", dependencies: ["VZCore", "VZPlatform"]),
        // The SSH client transport (libssh2): only the source agent links it.
        .target(name: "VZTransportSSH", dependencies: ["VZCore", "VZPlatform", "CLibSSH2", "CSSHKeystream",
                                                       .product(name: "Logging", package: "swift-log")]),
        .target(name: "VZSource", dependencies: ["VZCore", "VZActiveBlocks", "VZFormats", "VZPlatform", "VZWire", "VZTransportLocal",
                                                 "VZTransportSSH", .product(name: "Logging", package: "swift-log")]),
        .target(name: "VZTarget", dependencies: ["VZCore", "VZFormats", "VZPlatform", "VZWire",
                                                 .product(name: "Logging", package: "swift-log")]),
        .executableTarget(name: "vzrepl-source", dependencies: [
            "VZSource", "VZCore", "VZPlatform", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log")]),
        .executableTarget(name: "vzrepl-target", dependencies: [
            "VZTarget", "VZCore", "VZPlatform", "VZTransportLocal",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log")]),
        // Helpers shared by the test targets (seeded random data); not shipped.
        .target(name: "VZTestSupport", path: "Tests/VZTestSupport"),
        .testTarget(name: "VZCoreTests", dependencies: ["VZCore", "VZTestSupport"]),
        .testTarget(name: "VZActiveBlocksTests", dependencies: ["VZActiveBlocks", "VZCore", "VZTestSupport"]),
        .testTarget(name: "VZFormatsTests", dependencies: ["VZFormats", "VZCore", "VZPlatform", "VZTestSupport"]),
        .testTarget(name: "VZPlatformTests", dependencies: ["VZPlatform", "VZCore", "VZTestSupport",
                                                            .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "VZWireTests", dependencies: ["VZWire", "VZCore", "VZTestSupport"]),
        .testTarget(name: "VZTransportSSHTests", dependencies: ["VZTransportSSH", "VZTransportLocal", "VZWire", "VZCore", "VZPlatform",
                                                             .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "VZSourceTests", dependencies: ["VZSource", "VZCore", "VZFormats", "VZPlatform", "VZTestSupport"]),
        .testTarget(name: "VZTargetTests", dependencies: ["VZTarget", "VZCore", "VZFormats", "VZPlatform", "VZTestSupport",
                                                          .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "EndToEndTests", dependencies: ["VZCore", "VZFormats", "VZPlatform", "VZTestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
