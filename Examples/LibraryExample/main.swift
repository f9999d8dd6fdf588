import Foundation
import PageStat

// Usage: LibraryExample PID [auto|bpf|syscalls] [--stream]
// Prints every run of swapped pages of process PID, with its swap location where the engine
// knows it (as root: private memory always, shared memory with the bpf engine).

func printSwapped(_ run: PageRun, in mapping: Mapping) {
    guard run.state == .swapped else { return }
    let location = run.swap.map { "swap type \($0.type), offset \($0.offset)" } ?? "swap location unknown"
    let name = mapping.path.isEmpty ? "[anonymous]" : mapping.path
    let pages = run.pages == 1 ? "1 page" : "\(run.pages) pages"
    print("0x\(String(run.start, radix: 16)) \(pages) swapped (\(location)) \(name)")
}

/// For large processes: the scan hands over each mapping's runs as soon as they are settled,
/// and this consumer keeps none of them, so memory stays small whatever the process's size.
struct SwappedRuns: ScanConsumer {
    var mapping: Mapping?
    var swappedPages: UInt64 = 0

    mutating func begin(_ mapping: Mapping, scanned: AddressRange) { self.mapping = mapping }

    mutating func runs(_ runs: [PageRun]) {
        guard let mapping else { return }
        for run in runs where run.state == .swapped {
            printSwapped(run, in: mapping)
            swappedPages += run.pages
        }
    }

    mutating func end(use: MemoryUse?) { mapping = nil }
}

let arguments = CommandLine.arguments.dropFirst()
guard let pid = arguments.first.flatMap({ Int32($0) }) else {
    FileHandle.standardError.write(Data("usage: LibraryExample PID [auto|bpf|syscalls] [--stream]\n".utf8))
    exit(64)
}
var options = ScanOptions()
options.engine = arguments.compactMap { FileSideEngineChoice(rawValue: $0) }.first ?? .auto

do {
    let scanner = try ProcessScanner(pid: pid)
    let notes: [ScanNote]
    if arguments.contains("--stream") {
        var consumer = SwappedRuns()
        notes = try scanner.scan(options, into: &consumer).notes
        print("\(consumer.swappedPages) pages swapped")
    } else {
        let report = try scanner.scan(options)
        for entry in report.mappings {
            for run in entry.runs { printSwapped(run, in: entry.mapping) }
        }
        notes = report.notes
        print("\(report.counts.swapped) pages swapped")
    }
    for note in notes { print("note: \(note)") }
} catch {
    FileHandle.standardError.write(Data("LibraryExample: \(error)\n".utf8))
    exit(1)
}
