// swift-tools-version:6.0
import PackageDescription

// porter-bench: porter beside the tools it replaces, on the same scenarios,
// in one run. A package of its own so the product package stays free of
// benchmark code; like porter, it uses the toolchain only.
let package = Package(
    name: "porter-bench",
    targets: [
        .target(name: "CBench"),
        // A single-threaded command-line tool: Swift 5 mode spares it the
        // concurrency annotations its globals would need.
        .executableTarget(name: "porter-bench", dependencies: ["CBench"], swiftSettings: [.swiftLanguageMode(.v5)]),
    ]
)
