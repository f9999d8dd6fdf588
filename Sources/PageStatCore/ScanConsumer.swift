/// Receives a process scan as the scanner produces it, mapping by mapping in address order, so
/// that memory is bounded by what is in flight, never by the whole report. A large mapping
/// without a file side (private memory) arrives in several `runs` calls; runs never repeat or
/// overlap, and together they cover `scanned` exactly. A run is never split between two calls.
public protocol ScanConsumer {
    /// A mapping begins; `scanned` is the whole stretch of it that this scan covers.
    mutating func begin(_ mapping: Mapping, scanned: AddressRange)
    /// The next runs of the current mapping, in address order.
    mutating func runs(_ runs: [PageRun])
    /// The current mapping is complete. `use` is set when the scan counts memory.
    mutating func end(use: MemoryUse?)
}

/// What a streamed scan tells besides its runs.
public struct ScanResult: Sendable {
    public var notes: [ScanNote]
    /// Where the time went, by phase (maps, page table, file side): `bench`'s profile, not part
    /// of the public model.
    package var timings: [(phase: String, seconds: Double)] = []

    package init(notes: [ScanNote], timings: [(phase: String, seconds: Double)] = []) {
        self.notes = notes
        self.timings = timings
    }
}

/// Collects a streamed scan into `MappingReport`s: the materialised report.
public struct ReportCollector: ScanConsumer {
    public private(set) var mappings: [MappingReport] = []
    private var current: [PageRun] = []

    public init() {}

    public mutating func begin(_ mapping: Mapping, scanned: AddressRange) {
        mappings.append(MappingReport(mapping: mapping, scanned: scanned, runs: []))
    }

    public mutating func runs(_ runs: [PageRun]) {
        // Runs never continue across calls, so pieces are joined as they are; a mapping that
        // arrives whole keeps its array.
        if current.isEmpty { current = runs } else { current.append(contentsOf: runs) }
    }

    public mutating func end(use: MemoryUse?) {
        mappings[mappings.count - 1].runs = current
        mappings[mappings.count - 1].use = use
        current = []
    }
}
