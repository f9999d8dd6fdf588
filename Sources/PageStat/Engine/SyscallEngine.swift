/// The `syscalls` engine of the file side. Settles the pages that a process's page table leaves open (shared memory swapped out or
/// cached but unmapped, file pages in or out of the page cache) by asking the object's page
/// cache, never its pages:
/// - cachestat counts resident pages and, for shmem, swap entries (`nr_evicted`) in a range, so
///   a uniform stretch is settled by one call;
/// - lseek SEEK_DATA/SEEK_HOLE splits a mixed shmem stretch into holes (`none`) and data
///   (resident or swapped); each data page is walked at most once per mapping;
/// - mincore on our own untouched mapping splits mixed data into out-of-core pages (swapped out)
///   and in-core ones (resident, or swapped but still in the swap cache), which cachestat splits.
final class SyscallFileSide: PageCacheEngine {
    let object: PageCacheObject
    let pageSize: UInt64
    /// Without cachestat (before 6.5) in-core shmem pages are split by counting swap entries
    /// through our own smaps instead (slower, as exact).
    let useCachestat: Bool
    /// What a data page (resident or swapped, per lseek) means here, when the object's counts
    /// already told: every unmapped data page is swapped, or every one is cached.
    let dataMode: DataMode

    typealias DataMode = FileSide.DataMode
    private var vector: UnsafeMutableBufferPointer<UInt8>
    /// The last lseek answer: no data in `[from, dataStart)`, data in `[dataStart, dataEnd)`.
    private var memo: (from: UInt64, dataStart: UInt64, dataEnd: UInt64)?
    /// What the last probe learnt past the memo: no data in `[from, next)`, data at `next`
    /// (`.max`: no data at all).
    private var nextData: (from: UInt64, next: UInt64)?

    static let vectorPages = 1 << 16
    /// Swapped pages per stretch, counted beforehand, in order of `first` (stretches do not
    /// overlap), and where the last lookup found one.
    private var stretchCounts: [(first: UInt64, pages: UInt64, swapped: UInt64)] = []
    private var stretchCursor = 0

    /// The counted stretch that holds all of `[first, end)`, if any. Lookups come in order.
    private func countedStretch(holding first: UInt64, end: UInt64) -> (first: UInt64, pages: UInt64, swapped: UInt64)? {
        if stretchCursor < stretchCounts.count && stretchCounts[stretchCursor].first > first { stretchCursor = 0 }
        while stretchCursor < stretchCounts.count && stretchCounts[stretchCursor].first + stretchCounts[stretchCursor].pages <= first {
            stretchCursor += 1
        }
        guard stretchCursor < stretchCounts.count else { return nil }
        let stretch = stretchCounts[stretchCursor]
        return stretch.first <= first && end <= stretch.first + stretch.pages ? stretch : nil
    }
    /// Stretches at least this long are counted through a mapping of our own; shorter ones are
    /// cheaper to walk with lseek.
    static let countedStretchPages: UInt64 = 64
    /// Stretches up to this many pages are first asked with one cachestat (see `classifyShmem`).
    static let cachestatFirstPages: UInt64 = 4096

    /// Counts the swapped pages of the long stretches in one go, so that a
    /// stretch that is all swapped or all holes needs no lseek (which would walk on into the
    /// resident pages after it). Only where every data page is known to be swapped.
    ///
    /// A stretch with no data at all is found with one SEEK_DATA from its start (the xarray's
    /// empty subtrees are skipped, not walked), and needs no window: a read of our own smaps
    /// costs a millisecond or so whatever it counts.
    func prepare(span: Range<UInt64>, long: [(first: UInt64, pages: UInt64)]) throws(PageStatError) {
        guard dataMode == .swapped else { return }
        var withData: [(first: UInt64, pages: UInt64)] = []
        for stretch in long {
            if let data = try object.nextData(from: stretch.first * pageSize), data / pageSize < stretch.first + stretch.pages {
                withData.append(stretch)
            } else {
                stretchCounts.append((stretch.first, stretch.pages, 0))
            }
        }
        var start = 0
        while start < withData.count {
            // A few thousand windows at a time keep our own smaps short.
            let part = Array(withData[start..<min(withData.count, start + 4096)])
            for (stretch, count) in zip(part, try object.swappedPages(inStretches: part)) {
                if let count { stretchCounts.append((stretch.first, stretch.pages, count)) }
            }
            start += part.count
        }
        // Looked up in order of `first`: the counted ones came after the holes.
        if !withData.isEmpty && withData.count != long.count { stretchCounts.sort { $0.first < $1.first } }
    }

    init(object: PageCacheObject, useCachestat: Bool = PageCacheObject.cachestatSupported,
         dataMode: DataMode = .perPage) {
        self.object = object
        self.pageSize = object.pageSize
        self.useCachestat = useCachestat
        self.dataMode = dataMode
        vector = .allocate(capacity: Self.vectorPages)
    }

    deinit { vector.deallocate() }


    /// cachestat(2) over `pages` (resident pages, and swap entries or shadows); `eachRun` from
    /// `resolve(first:count:emit:)`.
    func count(_ pages: Range<UInt64>, dirtyAndWriteback: Bool,
               eachRun: ((FileRun) -> Void)?) throws(PageStatError) -> ObjectPageCounts {
        let stat = try object.cachestat(offset: pages.lowerBound * pageSize, length: UInt64(pages.count) * pageSize)
        let counts = ObjectPageCounts(pages: UInt64(pages.count), cache: stat.cache, evicted: stat.evicted, shmem: object.isShmem,
                                      dirty: dirtyAndWriteback ? stat.dirty : nil, writeback: dirtyAndWriteback ? stat.writeback : nil)
        if let eachRun {
            var next = pages.lowerBound
            try resolve(first: pages.lowerBound, count: UInt64(pages.count)) { count, state, _, swap in
                eachRun(FileRun(first: next, pages: count, state: state, swap: swap))
                next += count
            }
        }
        return counts
    }

    /// The scanner's form (`PageCacheEngine`): the runs `resolve(first:count:emit:)` emits,
    /// appended to `runs` from address `start` on, with `flags` added.
    func resolve(first: UInt64, count: UInt64, at start: UInt64, flags: PageFlags,
                 into runs: inout RunBuilder) throws(PageStatError) {
        var address = start
        let pageSize = runs.pageSize
        try resolve(first: first, count: count) { pages, state, fileFlags, swap in
            runs.append(start: address, pages: pages, state: state, flags: flags.union(fileFlags), swap: swap)
            address += pages * pageSize
        }
    }

    /// Classifies the object's pages `[first, first + count)` (page offsets into the object) and
    /// emits them in order as runs of `swapped`, `cached` or `none` (for `file --pages` too).
    func resolve(first: UInt64, count: UInt64, emit: FileSideEmit) throws(PageStatError) {
        guard object.residencyVisible else {
            throw .permissionDenied(.pageCacheOfUnwritableFile)
        }
        let end = first + count
        let eofPage = (object.size + pageSize - 1) / pageSize
        let inFileEnd = min(end, max(first, eofPage))
        if object.isShmem {
            if first < inFileEnd { try classifyShmem(first: first, end: inFileEnd, emit: emit) }
        } else if first < inFileEnd {
            try classifyFilePages(first: first, end: inFileEnd, emit: emit)
        }
        // Pages of the mapping beyond the end of the object (touching them raises SIGBUS).
        if end > inFileEnd { emit(end - inFileEnd, .none, [], nil) }
    }

    /// lseek and cachestat tell no swap locations of shared memory.
    var knowsSwapLocations: Bool { false }

    /// The data extent at or after `page`, from memory or from lseek. A one-page extent costs one
    /// call: SEEK_DATA from the page after the extent's first either finds data right there (the
    /// extent goes on: SEEK_HOLE finds its end) or finds the next extent, which is remembered.
    private func extent(from page: UInt64) throws(PageStatError) -> (UInt64, UInt64)? {
        if let memo, memo.from <= page, page < memo.dataEnd {
            return memo.dataStart == .max ? nil : (max(page, memo.dataStart), memo.dataEnd)
        }
        let dataStart: UInt64
        if let nextData, nextData.from <= page, page <= nextData.next {
            dataStart = nextData.next
        } else if let data = try object.nextData(from: page * pageSize) {
            dataStart = data / pageSize
        } else {
            dataStart = .max
        }
        guard dataStart != .max else {
            memo = (page, .max, .max)
            return nil
        }
        let dataEnd: UInt64
        let probe = try object.nextData(from: (dataStart + 1) * pageSize).map { $0 / pageSize }
        if probe == dataStart + 1 {
            let hole = try object.nextHole(from: (dataStart + 1) * pageSize) ?? object.size
            dataEnd = max(dataStart + 1, (hole + pageSize - 1) / pageSize)
            nextData = nil
        } else {
            dataEnd = dataStart + 1
            nextData = (dataEnd, probe ?? .max)
        }
        memo = (page, dataStart, dataEnd)
        return (dataStart, dataEnd)
    }

    /// Shmem pages: one cachestat settles a uniform stretch; a mixed one is split into holes and
    /// data extents with lseek, and each extent is settled the same way.
    private func classifyShmem(first: UInt64, end: UInt64, emit: FileSideEmit) throws(PageStatError) {
        let pages = end - first
        // cachestat costs about 40 ns for each swap entry it counts (a swap-cache lookup and a
        // workingset test): worth it on a short stretch it may settle at once, not on a long one,
        // which extents and mincore settle for less.
        if useCachestat && dataMode == .perPage && pages <= Self.cachestatFirstPages {
            let stat = try object.cachestat(offset: first * pageSize, length: pages * pageSize)
            if stat.cache == 0 && stat.evicted == 0 { return emit(pages, .none, [], nil) }
            if stat.evicted >= pages { return emit(pages, .swapped, [], nil) }
            if stat.cache >= pages { return emit(pages, .cached, [], nil) }
        }
        // A stretch counted all swapped or all holes settles any part of it (the scanner asks
        // for long stretches in parts).
        if let counted = countedStretch(holding: first, end: end) {
            if counted.swapped == counted.pages { return emit(pages, .swapped, [], nil) }
            if counted.swapped == 0 { return emit(pages, .none, [], nil) }
        }
        var page = first
        while page < end {
            guard let (dataStart, dataEnd) = try extent(from: page), dataStart < end else {
                emit(end - page, .none, [], nil)
                return
            }
            if dataStart > page { emit(dataStart - page, .none, [], nil) }
            let stop = min(dataEnd, end)
            switch dataMode {
            case .swapped: emit(stop - dataStart, .swapped, [], nil)
            case .cached: emit(stop - dataStart, .cached, [], nil)
            case .perPage: try classifyShmemData(first: dataStart, end: stop,
                                  counted: !useCachestat || (dataStart == first && stop == end), emit: emit)
            }
            page = stop
        }
    }

    /// Shmem data pages (resident or swapped): out of core means swapped out; in core means
    /// resident, unless cachestat finds swap entries there (swapped, still in the swap cache).
    private func classifyShmemData(first: UInt64, end: UInt64, counted: Bool, emit: FileSideEmit) throws(PageStatError) {
        let pages = end - first
        if !counted {
            let stat = try object.cachestat(offset: first * pageSize, length: pages * pageSize)
            if stat.evicted >= pages { return emit(pages, .swapped, [], nil) }
            if stat.cache >= pages { return emit(pages, .cached, [], nil) }
        }
        try forEachResidencyRun(first: first, end: end) { (start, pages, inCore) throws(PageStatError) in
            if inCore && !useCachestat {
                try splitBySwapCounts(first: start, pages: pages, emit: emit)
            } else if inCore {
                try splitBySwapEntries(first: start, pages: pages, emit: emit)
            } else {
                emit(pages, .swapped, [], nil)
            }
        }
    }

    /// Regular file pages: in the page cache (`cached`) or not (`none`). cachestat settles
    /// uniform stretches in one call; mixed ones are asked page by page with mincore.
    private func classifyFilePages(first: UInt64, end: UInt64, emit: FileSideEmit) throws(PageStatError) {
        let pages = end - first
        if useCachestat, let stat = try? object.cachestat(offset: first * pageSize, length: pages * pageSize) {
            if stat.cache == 0 { emit(pages, .none, [], nil); return }
            if stat.cache >= pages { emit(pages, .cached, [], nil); return }
        }
        try forEachResidencyRun(first: first, end: end) { (_, pages, inCore) in
            emit(pages, inCore ? .cached : .none, [], nil)
        }
    }

    /// Splits in-core shmem pages into resident (`cached`) and swapped-but-in-swap-cache pages by
    /// counting swap entries with cachestat, halving mixed stretches.
    private func splitBySwapEntries(first: UInt64, pages: UInt64, emit: FileSideEmit) throws(PageStatError) {
        let stat = try object.cachestat(offset: first * pageSize, length: pages * pageSize)
        if stat.evicted == 0 {
            emit(pages, .cached, [], nil)
        } else if stat.evicted >= pages || pages == 1 {
            emit(pages, .swapped, [], nil)
        } else {
            let half = pages / 2
            try splitBySwapEntries(first: first, pages: half, emit: emit)
            try splitBySwapEntries(first: first + half, pages: pages - half, emit: emit)
        }
    }

    /// Without cachestat (before 6.5): splits in-core shmem pages into resident (`cached`) and
    /// swapped-but-in-swap-cache pages by counting swap entries through our own smaps (the Swap
    /// line of a partial mapping counts the object's swap entries in that stretch, swap cache or
    /// not), halving mixed stretches. Where our own window cannot be mapped the pages are
    /// `unknown`: mincore alone would call swapped pages resident.
    private func splitBySwapCounts(first: UInt64, pages: UInt64, emit: FileSideEmit) throws(PageStatError) {
        guard let swapped = try object.swappedPages(inStretches: [(first, pages)]).first ?? nil else {
            return emit(pages, .unknown, [], nil)
        }
        if swapped == 0 {
            emit(pages, .cached, [], nil)
        } else if swapped >= pages || pages == 1 {
            emit(pages, .swapped, [], nil)
        } else {
            let half = pages / 2
            try splitBySwapCounts(first: first, pages: half, emit: emit)
            try splitBySwapCounts(first: first + half, pages: pages - half, emit: emit)
        }
    }

    /// Calls `body` with runs of equal residency (mincore bit 0) over `[first, end)`.
    private func forEachResidencyRun(
        first: UInt64, end: UInt64,
        _ body: (_ start: UInt64, _ pages: UInt64, _ inCore: Bool) throws(PageStatError) -> Void
    ) throws(PageStatError) {
        var runStart = first
        var runInCore = false
        var runPages: UInt64 = 0
        var chunkStart = first
        while chunkStart < end {
            let chunk = Int(min(UInt64(Self.vectorPages), end - chunkStart))
            try object.mincore(offset: chunkStart * pageSize, pages: chunk, into: vector)
            for index in 0..<chunk {
                let inCore = vector[index] & 1 != 0
                if runPages > 0 && inCore == runInCore {
                    runPages += 1
                } else {
                    if runPages > 0 { try body(runStart, runPages, runInCore) }
                    runStart = chunkStart + UInt64(index)
                    runInCore = inCore
                    runPages = 1
                }
            }
            chunkStart += UInt64(chunk)
        }
        if runPages > 0 { try body(runStart, runPages, runInCore) }
    }
}
