/// Collects pages, in address order, into maximal runs of equal state and flags.
/// Memory grows with runs, not pages.
public struct RunBuilder: Sendable {
    public private(set) var runs: [PageRun] = []
    public let pageSize: UInt64

    public init(pageSize: UInt64) { self.pageSize = pageSize }

    /// Room for `count` runs in all, so that joining known pieces never grows the array twice over.
    public mutating func reserveCapacity(_ count: Int) { runs.reserveCapacity(count) }

    /// Appends `pages` pages starting at `start`; merges with the last run when it continues it.
    @inline(__always)
    public mutating func append(start: UInt64, pages: UInt64, state: PageState, flags: PageFlags,
                                pfn: UInt64? = nil, swap: SwapLocation? = nil, kernelFlags: KPageFlags? = nil) {
        guard pages > 0 else { return }
        if let last = runs.last, last.continues(state, flags, kernelFlags), last.start + last.pages * pageSize == start,
           Self.swapContinues(last, swap) {
            runs[runs.count - 1].pages += pages
        } else {
            runs.append(PageRun(start: start, pages: pages, state: state, flags: flags, pfn: pfn, swap: swap,
                                kernelFlags: kernelFlags))
        }
    }

    /// Whether a run with first-page location `swap` goes on from `last` in swap too: neither has
    /// a location, or both are in the same area and the offsets follow on. A jump in offset
    /// starts a new run, so that every run's pages sit at consecutive slots from its first.
    @inline(__always)
    static func swapContinues(_ last: PageRun, _ swap: SwapLocation?) -> Bool {
        guard let swap else { return last.swap == nil }
        guard let previous = last.swap else { return false }
        return previous.type == swap.type && previous.offset &+ last.pages == swap.offset
    }

    /// Hands over the runs collected so far; with `keepingLast`, all but the last, which the
    /// next pages may still continue.
    public mutating func take(keepingLast: Bool) -> [PageRun] {
        guard keepingLast, let last = runs.last else {
            defer { runs = [] }
            return runs
        }
        runs.removeLast()
        defer { runs = [last] }
        return runs
    }

    public mutating func append(_ run: PageRun) {
        append(start: run.start, pages: run.pages, state: run.state, flags: run.flags, pfn: run.pfn, swap: run.swap,
               kernelFlags: run.kernelFlags)
    }

    public mutating func append<S: Sequence>(contentsOf runs: S) where S.Element == PageRun {
        for run in runs { append(run) }
    }
}
