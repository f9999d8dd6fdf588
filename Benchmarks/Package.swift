// swift-tools-version:6.1
// Micro-benchmarks of pagestat's own user-space work and of its scans against the kernel's raw
// pagemap read, on ordo-one/benchmark. Run from this folder, as root with swap on:
//   swift package --allow-writing-to-package-directory benchmark
import PackageDescription

let package = Package(
    name: "PageStatBenchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "pagestat", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "PageStatBenchmarks",
            dependencies: [
                .product(name: "PageStat", package: "pagestat"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/PageStatBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
