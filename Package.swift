// swift-tools-version:6.0
import PackageDescription

// porter: an on-demand activation broker. The toolchain only: no package dependencies.
let package = Package(
    name: "porter",
    products: [
        .executable(name: "porter", targets: ["porter"]),
    ],
    targets: [
        // The child side of spawning and the syscalls Swift cannot call (variadic, raw).
        .target(name: "CPorter"),
        // Thin typed wrappers around the kernel objects porter uses; plain values in, no policy.
        .target(name: "PorterSys", dependencies: ["CPorter"]),
        // Pure logic: unit-file parser, config model, state machines.
        .target(name: "PorterCore"),
        // The one event loop and the supervisor that performs the machines' actions.
        .target(name: "PorterDaemon", dependencies: ["PorterCore", "PorterSys"]),
        .executableTarget(name: "porter", dependencies: ["PorterDaemon"]),
        // A tiny handler the end-to-end tests spawn; it reports what it received.
        // Optimized even in debug builds: it sums and sends gigabytes for the proxy tests.
        .executableTarget(name: "porter-test-handler", dependencies: ["CPorter", "PorterTestSupport"], swiftSettings: [.unsafeFlags(["-O"])]),
        // What the handler and the tests must compute alike (the stream checksum); optimized too.
        .target(name: "PorterTestSupport", swiftSettings: [.unsafeFlags(["-O"])]),
        .testTarget(name: "PorterCoreTests", dependencies: ["PorterCore"]),
        .testTarget(name: "PorterSysTests", dependencies: ["PorterSys", "PorterDaemon"]),
        .testTarget(name: "PorterEndToEndTests", dependencies: ["PorterSys", "PorterDaemon", "PorterTestSupport"]),
    ]
)
