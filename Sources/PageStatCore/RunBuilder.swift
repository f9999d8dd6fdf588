/// Collects pages, in address order, into maximal runs of equal state and flags.
/// Memory grows with runs, not pages.
public struct RunBuilder: Sendable {
    /// The runs so far (usable from inline code: see `PageRun`).
    @usableFromInline var storage: [PageRun] = []
    public var runs: [PageRun] {
        @inlinable _read { yield storage }
    }
    public let pageSize: UInt64

    public init(pageSize: UInt64) { self.pageSize = pageSize }

    /// Room for `count` runs in all, so that joining known pieces never grows the array twice over.
    public mutating func reserveCapacity(_ count: Int) { storage.reserveCapacity(count) }

    /// Appends `pages` pages starting at `start`; merges with the last run when it continues it.
    @inlinable
    public mutating func append(start: UInt64, pages: UInt64, state: PageState, flags: PageFlags,
                                pfn: UInt64? = nil, swap: SwapLocation? = nil, kernelFlags: KPageFlags? = nil) {
        append(PageRun(start: start, pages: pages, state: state, flags: flags, pfn: pfn, swap: swap, kernelFlags: kernelFlags))
    }

    /// Hands over the runs collected so far; with `keepingLast`, all but the last, which the
    /// next pages may still continue.
    public mutating func take(keepingLast: Bool) -> [PageRun] {
        guard keepingLast, let last = storage.last else {
            defer { storage = [] }
            return storage
        }
        storage.removeLast()
        defer { storage = [last] }
        return storage
    }

    /// Appends `run`; merges it into the last run when it continues it (`PageRun.isContinued(by:)`).
    @inlinable
    public mutating func append(_ run: PageRun) {
        guard run.pages > 0 else { return }
        let count = storage.count
        if count > 0 && storage[count - 1].isContinued(by: run, pageSize: pageSize) {
            storage[count - 1].pages += run.pages
        } else {
            storage.append(run)
        }
    }

    public mutating func append<S: Sequence>(contentsOf runs: S) where S.Element == PageRun {
        for run in runs { append(run) }
    }

    /// Appends the runs another builder made (maximal already, none empty): only the first may
    /// continue this builder's last run; the rest are copied as they are. Joining a wave's
    /// chunks goes through here.
    public mutating func append(built runs: [PageRun]) {
        guard let first = runs.first else { return }
        append(first)
        storage.append(contentsOf: runs[1...])
    }
}
