// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "pagestat",
    products: [
        .library(name: "PageStat", targets: ["PageStat"]),
        // pagestat's own output formats, for a tool that wants to print what pagestat prints.
        .library(name: "PageStatRender", targets: ["PageStatRender"]),
        .executable(name: "pagestat", targets: ["pagestat"]),
        .executable(name: "pagestat-exporter", targets: ["pagestat-exporter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        // `swift package generate-documentation --target PageStat` (and `--target PageStatCore`):
        // the DocC catalogs in Sources/PageStat/PageStat.docc and Sources/PageStatCore/PageStatCore.docc.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        // pagestat-exporter alone: `pagestat` itself builds without them.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // pagestat-exporter's --web.config.file: its YAML, and the bcrypt hashes of basic_auth_users.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
    ],
    targets: [
        // Thin C shim: ioctl numbers, structs missing from Debian 12's headers, raw syscalls.
        .target(name: "CPagestat"),
        // The page model: states, flags, runs, mappings, reports, the streaming consumer. No I/O.
        .target(name: "PageStatCore", dependencies: [.product(name: "SystemPackage", package: "swift-system")]),
        // Kernel readers and the scanner, over the model (re-exported): the library.
        .target(
            name: "PageStat",
            dependencies: [
                "PageStatCore",
                "CPagestat",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The renderers: text, JSON and CSV reports and streams, tables, terminal and SVG page
        // maps, Prometheus exposition. Over the library's public model; the command-line tool
        // and the exporter use them, a library user need not build them.
        .target(name: "PageStatRender", dependencies: ["PageStat"]),
        // The lab: memory arranged on purpose (mmap, memfd, MADV_PAGEOUT, memory cgroups, child
        // processes) for the tests, `lab` (and `lab hold`), `demo`, `doctor --verify` and `bench`.
        // Not a product: a library user gets none of it.
        .target(
            name: "PageStatLab",
            dependencies: [
                "PageStat",
                "CPagestat",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The command-line tool. Release builds link the Swift runtime and Foundation's parts in
        // statically: a `pagestat show` then starts in about 6-8 ms instead of 12 (no dynamic
        // loading of a dozen libraries), which counts when it is measured against `dd`.
        .executableTarget(
            name: "pagestat",
            dependencies: [
                "PageStat",
                "PageStatRender",
                "PageStatLab",
                "CPagestat",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            linkerSettings: [
                .unsafeFlags(["-static-stdlib", "-l_FoundationCShims", "-l_FoundationCollections"],
                             .when(platforms: [.linux], configuration: .release)),
            ]
        ),
        // The README's "Use it as a library" example, byte for byte (a test compares them and
        // runs it). Built with the package, never a product.
        .executableTarget(
            name: "LibraryExample",
            dependencies: ["PageStat"],
            path: "Examples/LibraryExample"
        ),
        // A VM migration copy plan for a range of a process, on the public API only (PageStat, and
        // PageStatRender for its sizes in human units).
        .executableTarget(
            name: "MigrationPlan",
            dependencies: [
                "PageStat",
                "PageStatRender",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/MigrationPlan"
        ),
        // The Prometheus exporter: an HTTP server with /metrics, its own executable so that the
        // command-line tool does not build or link an HTTP stack.
        .executableTarget(
            name: "pagestat-exporter",
            dependencies: [
                "PageStat",
                "PageStatRender",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "PageStatTests",
            dependencies: ["PageStat", "PageStatRender", "PageStatLab", "CPagestat"],
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
