/// The `bpf` engine of the file side: the object's page-cache xarray, slot by slot, through a BPF
/// iterator (`XArrayWalker`). A folio is `cached` (in memory, not mapped here), a shmem value
/// entry `swapped` with its swap type and offset, no entry (or a regular file's shadow of an
/// evicted page) `none`.
final class BPFFileSide: PageCacheEngine {
    let object: PageCacheObject
    let walker: XArrayWalker
    /// The object's slots over the span of the stretches to come, walked once in `prepare`
    /// (one iterator pass per 32 Ki runs, not one per stretch), and where the next `resolve`
    /// starts looking.
    /// Unchecked exclusivity: only this engine's own calls touch them, one at a time, and a
    /// dynamic check per access cost several percent of a fragmented scan.
    @exclusivity(unchecked) private var walked: [XArrayRun] = []
    @exclusivity(unchecked) private var cursor = 0

    /// `storage`: an array whose capacity the walks may reuse (see `takeStorage`).
    init(object: PageCacheObject, walker: XArrayWalker, storage: [XArrayRun] = []) {
        self.object = object
        self.walker = walker
        walked = storage
        walked.removeAll(keepingCapacity: true)
    }

    /// The walked runs' storage, emptied, for the next engine: a scan of many waves then grows
    /// (and faults in) that storage once.
    func takeStorage() -> [XArrayRun] {
        walked.removeAll(keepingCapacity: true)
        cursor = 0
        return walked
    }

    func prepare(span: Range<UInt64>, long: [(first: UInt64, pages: UInt64)]) throws(PageStatError) {
        // The storage stays for the next span: the scanner prepares a wave at a time.
        walked.removeAll(keepingCapacity: true)
        cursor = 0
        let end = min(span.upperBound, (object.size + object.pageSize - 1) / object.pageSize)
        guard span.lowerBound < end else { return }
        try walker.walk(fd: object.fd, first: span.lowerBound, count: end - span.lowerBound, appendingTo: &walked)
    }

    func resolve(first: UInt64, count: UInt64, at start: UInt64, flags: PageFlags,
                 into runs: inout RunBuilder) throws(PageStatError) {
        let pageSize = object.pageSize
        let end = first + count
        let inFileEnd = min(end, max(first, (object.size + pageSize - 1) / pageSize))
        var page = first
        func address(_ page: UInt64) -> UInt64 { start + (page - first) * runs.pageSize }
        if page < inFileEnd {
            // Stretches come in order: go on from where the last one ended, or walk afresh for a
            // stretch that `prepare` did not cover.
            if cursor < walked.count && walked[cursor].first > page { cursor = 0 }
            while cursor < walked.count && walked[cursor].first + walked[cursor].pages <= page { cursor += 1 }
            if cursor == walked.count || walked[cursor].first > page {
                walked.removeAll(keepingCapacity: true)
                try walker.walk(fd: object.fd, first: page, count: inFileEnd - page, appendingTo: &walked)
                cursor = 0
            }
            // Local copies: no access to the class's storage per run.
            var at = cursor
            walked.withUnsafeBufferPointer { walked in
                // Room for the walked runs still ahead, where the builder would otherwise grow
                // by doubling (copying a fragmented wave's runs several times over); at most the
                // walk's own length, and geometric: Array.reserveCapacity allocates exactly what
                // it is asked, and short stretches between present pages come one call each.
                let wanted = runs.runs.count + (walked.count - at) + 1
                if wanted > runs.runs.capacity { runs.reserveCapacity(max(wanted, 2 * runs.runs.capacity)) }
                Self.append(walked, at: &at, pages: &page, upTo: inFileEnd, first: first, start: start, flags: flags, into: &runs)
            }
            cursor = at
        }
        // Pages of the mapping beyond the end of the object (touching them raises SIGBUS).
        if end > page { runs.append(start: address(page), pages: end - page, state: .none, flags: flags) }
    }

    /// Appends the object's pages from `page` up to `end` as the walked runs from `at` on say
    /// they are, as the pages of a mapping whose page `first` is at address `start`, each run
    /// with `flags`; moves `page` and `at` past them (stops early where the walked runs end).
    @inline(__always)
    private static func append(_ walked: UnsafeBufferPointer<XArrayRun>, at: inout Int, pages page: inout UInt64, upTo end: UInt64,
                               first: UInt64, start: UInt64, flags: PageFlags, into runs: inout RunBuilder) {
        while page < end && at < walked.count {
            let run = walked[at]
            let stop = min(end, run.end)
            runs.append(PageRun(start: start + (page - first) * runs.pageSize, pages: stop - page, state: run.kind.pageState,
                                flags: flags, swap: run.swapLocation(at: page)))
            page = stop
            if stop == run.end { at += 1 }
        }
    }

    /// Settles the page table's `runs` of a piece of `mapping` from `index` on, in one pass over
    /// the walked runs: each other run appended as it is, each pending one replaced by what the
    /// walk says of its pages (as `resolve` would). Stops at the first pending run the walk does
    /// not cover and returns its index (the caller asks `resolve`), or `runs.count` when done.
    /// `handOver` is called whenever `out` holds `handOverRuns` runs.
    func settle(_ runs: [PageRun], from index: Int, mapping: Mapping, into out: inout RunBuilder, handOverRuns: Int,
                handOver: (inout RunBuilder) -> Void) -> Int {
        let pageSize = out.pageSize
        let objectPages = (object.size + object.pageSize - 1) / object.pageSize
        var index = index
        walked.withUnsafeBufferPointer { walked in
            guard let walkedEnd = walked.last?.end else { return }
            var at = cursor
            runs.withUnsafeBufferPointer { runs in
                while index < runs.count {
                    var run = runs[index]
                    if run.flags.contains(.pendingFileSide) {
                        run.flags.remove(.pendingFileSide)
                        let first = (mapping.offset + (run.start - mapping.range.start)) / pageSize
                        let end = first + run.pages
                        let inFileEnd = min(end, max(first, objectPages))
                        var page = first
                        if page < inFileEnd {
                            if at < walked.count && walked[at].first > page { at = 0 }
                            while at < walked.count && walked[at].end <= page { at += 1 }
                            // The walked runs are contiguous: covered when they start at or before
                            // the stretch and end at or after it.
                            guard at < walked.count && walked[at].first <= page && walkedEnd >= inFileEnd else { return }
                            Self.append(walked, at: &at, pages: &page, upTo: inFileEnd, first: first, start: run.start,
                                        flags: run.flags, into: &out)
                        }
                        // Pages of the mapping beyond the end of the object (touching them raises SIGBUS).
                        if end > page {
                            out.append(PageRun(start: run.start + (page - first) * pageSize, pages: end - page, state: .none, flags: run.flags))
                        }
                    } else {
                        out.append(run)
                    }
                    index += 1
                    if out.runs.count >= handOverRuns { handOver(&out) }
                }
            }
            cursor = at
        }
        return index
    }

    /// One walk of the xarray over `pages`; dirty and writeback from cachestat(2) where it exists
    /// (the walk does not read folio flags).
    func count(_ pages: Range<UInt64>, dirtyAndWriteback: Bool,
               eachRun: ((FileRun) -> Void)?) throws(PageStatError) -> ObjectPageCounts {
        var counts = ObjectPageCounts()
        try walker.walk(fd: object.fd, first: pages.lowerBound, count: UInt64(pages.count)) { run in
            counts.add(run)
            eachRun?(FileRun(first: run.first, pages: run.pages, state: run.kind.pageState, swap: run.swapLocation(at: run.first)))
        }
        if dirtyAndWriteback && PageCacheObject.cachestatSupported,
           let stat = try? object.cachestat(offset: pages.lowerBound * object.pageSize, length: UInt64(pages.count) * object.pageSize) {
            counts.dirty = stat.dirty
            counts.writeback = stat.writeback
        }
        return counts
    }

    var knowsSwapLocations: Bool { true }
}
