#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// Where one page is now, as the kernel's views say: the page table (pagemap) first, then the
/// object's page-cache xarray for shared memory.
enum PageLocation: Equatable {
    /// Present in the target's page table.
    case mapped
    /// Resident in the object's page cache, not mapped there.
    case resident
    /// In this swap slot (for a run: its first page's; the next pages in the next slots).
    case swap(type: UInt8, offset: UInt64)
    /// Swapped, with no location known (the BPF engine did not load).
    case swapUnknown
    case hole
    /// A page of a file-backed mapping that is not in memory.
    case file
    case unknown(String)

    var state: PageState {
        switch self {
        case .mapped: .present
        case .resident: .cached
        case .swap, .swapUnknown: .swapped
        case .hole, .file: .none
        case .unknown: .unknown
        }
    }

    /// This location `pages` pages further on, for a run.
    func advanced(by pages: UInt64) -> PageLocation {
        if case .swap(let type, let offset) = self { return .swap(type: type, offset: offset + pages) }
        return self
    }
}

/// What a snapshot reads: a process range or an object. `start` is an address in a process, a
/// byte offset in an object.
protocol SnapshotSide {
    /// Where each of `pages` pages from `start` is now, page by page.
    func locate(_ start: UInt64, pages: Int) throws(PageStatError) -> [PageLocation]
    /// Reads pages that `locate` found `mapped` or `resident` (never faults them); returns the bytes read.
    func read(_ location: PageLocation, at start: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(PageStatError) -> Int
    /// Reads pages through the mapping or the object, swapping them in (`allowSwapIn`).
    func readThrough(_ start: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(PageStatError) -> Int
}

/// A mapping of a process: pagemap, then the object's xarray (BPF) for shared memory.
struct ProcessSide: SnapshotSide {
    let pid: Int32
    let mapping: Mapping
    /// The open /proc/PID/pagemap (its owner keeps it open while this side is used).
    let pagemap: FileDescriptor
    let object: PageCacheObject?
    /// The BPF engine over `object` (swap locations of shared pages); nil where it is not shmem
    /// or the engine does not load.
    let engine: (any PageCacheEngine)?
    let pageSize: UInt64

    /// The location the scanner planned for `run`'s first page.
    func planned(_ run: PageRun) -> PageLocation {
        switch run.state {
        case .present: .mapped
        case .cached: mapping.kind.isShmem ? .resident : .file
        case .swapped: run.swap.map { .swap(type: $0.type, offset: $0.offset) } ?? .swapUnknown
        case .none: mapping.kind == .file ? .file : .hole
        case .unknown: .unknown("the scan could not tell (its notes say why)")
        }
    }

    func locate(_ start: UInt64, pages: Int) throws(PageStatError) -> [PageLocation] {
        var entries = [UInt64](repeating: 0, count: pages)
        let got = try entries.withUnsafeMutableBufferPointer { buffer throws(PageStatError) in
            try Pagemap.read(pagemap, pid: pid, pageSize: pageSize, at: start, into: buffer)
        }
        guard got == pages else { throw .processExited(pid: pid) }
        var locations = [PageLocation](repeating: .hole, count: pages)
        var fileSide: [Int] = []
        for (index, raw) in entries.enumerated() {
            let entry = PagemapEntry(rawValue: raw)
            if entry.isPresent {
                locations[index] = .mapped
            } else if entry.isSwap {
                locations[index] = entry.isSpecialSwapType ? .unknown("a migration or marker entry") : .swap(type: entry.swapType, offset: entry.swapOffset)
            } else if mapping.kind.isShmem {
                fileSide.append(index)
            } else if mapping.kind == .file {
                locations[index] = .file
            }
        }
        guard let first = fileSide.first, let last = fileSide.last else { return locations }
        guard let engine else {
            for index in fileSide { locations[index] = .unknown("the object's page cache cannot be read (map_files or BPF)") }
            return locations
        }
        let firstIndex = (mapping.offset + (start - mapping.range.start)) / pageSize + UInt64(first)
        for (runFirst, count, location) in try ObjectSide.locate(engine, index: firstIndex, pages: UInt64(last - first + 1)) {
            for page in 0..<count {
                let index = Int(runFirst + page - firstIndex) + first
                if locations[index] == .hole { locations[index] = location.advanced(by: page) }
            }
        }
        return locations
    }

    func read(_ location: PageLocation, at start: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(PageStatError) -> Int {
        if location == .mapped { return try ProcessMemory(pid: pid).read(at: start, into: buffer) }
        guard let object else { return 0 }
        return try ObjectSide.pread(object, at: mapping.offset + (start - mapping.range.start), into: buffer)
    }

    func readThrough(_ start: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(PageStatError) -> Int {
        try ProcessMemory(pid: pid).read(at: start, into: buffer)
    }
}

/// A shared memory object, through its xarray (BPF) and pread(2).
struct ObjectSide: SnapshotSide {
    let object: PageCacheObject
    let engine: any PageCacheEngine
    let pageSize: UInt64

    /// The object's pages from `index` as runs (first page index, pages, location).
    func locate(index: UInt64, pages: UInt64) throws(PageStatError) -> [(UInt64, UInt64, PageLocation)] {
        try Self.locate(engine, index: index, pages: pages)
    }

    /// `engine`'s runs of its object's pages from `index` (the page-cache seam's whole-object
    /// walk), as locations: `cached` pages are resident, `swapped` ones in their slots.
    static func locate(_ engine: any PageCacheEngine, index: UInt64, pages: UInt64) throws(PageStatError) -> [(UInt64, UInt64, PageLocation)] {
        var runs: [(UInt64, UInt64, PageLocation)] = []
        _ = try engine.count(index..<(index + pages), dirtyAndWriteback: false) { run in
            let location: PageLocation = switch run.state {
            case .cached, .present: .resident
            case .swapped: run.swap.map { .swap(type: $0.type, offset: $0.offset) } ?? .swapUnknown
            case .none: .hole
            case .unknown: .unknown("the object's page cache could not be read")
            }
            runs.append((run.first, run.pages, location))
        }
        return runs
    }

    func locate(_ start: UInt64, pages: Int) throws(PageStatError) -> [PageLocation] {
        var locations: [PageLocation] = []
        locations.reserveCapacity(pages)
        for (_, count, location) in try locate(index: start / pageSize, pages: UInt64(pages)) {
            for page in 0..<count { locations.append(location.advanced(by: page)) }
        }
        return locations
    }

    func read(_ location: PageLocation, at start: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(PageStatError) -> Int {
        try Self.pread(object, at: start, into: buffer)
    }

    func readThrough(_ start: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(PageStatError) -> Int {
        try Self.pread(object, at: start, into: buffer)
    }

    /// pread(2) of `object` from `offset` until the buffer is full or the object ends.
    static func pread(_ object: PageCacheObject, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(PageStatError) -> Int {
        var done = 0
        while done < buffer.count {
            let got: Int
            do {
                got = try system {
                    try object.fd.read(fromAbsoluteOffset: Int64(offset) + Int64(done),
                                       into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]), retryOnInterrupt: true)
                }
            } catch {
                throw .system(call: "pread of the object at \(offset + UInt64(done))", errno: error)
            }
            if got == 0 { break }
            done += got
        }
        return done
    }
}

/// Reads planned runs a window at a time through one buffer and hands chunks on in address order
/// (see `PageSnapshot`). A window is as many planned pages as the buffer holds. Its pages are
/// located once before their reads and once after them (one pagemap read, or one xarray walk),
/// the slot states of its swapped pages are asked once per stretch of their swap area, and its
/// slots are read in slot order, stretches contiguous on the device as one read
/// (`SwapSlotReader.read(type:runs:)`): the cost of a window does not grow with how finely
/// reclaim scattered its slots.
struct SnapshotCopier<Side: SnapshotSide> {
    let side: Side
    let slots: any SnapshotSlotSource
    let options: SnapshotOptions
    let buffer: UnsafeMutableRawBufferPointer
    let pageSize: UInt64
    let mapping: Mapping?
    let body: (SnapshotChunk) throws(PageStatError) -> Void
    var totals = SnapshotTotals()
    /// A stretch without bytes that the next one may extend.
    private var pending: SnapshotChunk?
    /// Planned pieces not read yet, in address order.
    private var window: [Piece] = []
    /// Buffer pages the window's pieces take.
    private var used = 0
    private let capacity: Int

    /// A planned run, or part of one, in the window; `bufferPage` is where its bytes go (nil for
    /// a piece without bytes: a hole, file pages, an unknown).
    private struct Piece {
        var start: UInt64
        var pages: Int
        var planned: PageLocation
        var bufferPage: Int?
    }

    /// What became of one page of the window.
    private enum Outcome: Equatable {
        case memory
        case swap(type: UInt8, offset: UInt64)
        case zero
        case swappedIn
        case unreadable
        /// Not where it was planned, or not yet readable from its slot: settled on its own.
        case settle
        /// Its slot is to be read (decided, not done).
        case slot(type: UInt8, offset: UInt64)
        /// To be read through the mapping or object (`allowSwapIn`, a refused area).
        case through
    }

    /// Pieces in a window at most (a bound on a window of many small holes).
    private static var maxPieces: Int { 4096 }

    init(side: Side, slots: any SnapshotSlotSource, options: SnapshotOptions, buffer: UnsafeMutableRawBufferPointer,
         pageSize: UInt64, mapping: Mapping?, body: @escaping (SnapshotChunk) throws(PageStatError) -> Void) {
        self.side = side
        self.slots = slots
        self.options = options
        self.buffer = buffer
        self.pageSize = pageSize
        self.mapping = mapping
        self.body = body
        capacity = buffer.count / Int(pageSize)
        window.reserveCapacity(64)
    }

    /// Copies a planned run of `pages` pages from `start` whose first page is at `planned`.
    mutating func copy(start: UInt64, pages: UInt64, planned: PageLocation) throws(PageStatError) {
        switch planned {
        case .hole, .file, .unknown:
            if window.isEmpty {
                try emit(start, pages, Self.source(of: planned))
            } else {
                window.append(Piece(start: start, pages: Int(pages), planned: planned, bufferPage: nil))
                if window.count >= Self.maxPieces { try readWindow() }
            }
        case .swapUnknown where !options.allowSwapIn:
            throw .unsupported("the swap location of swapped shared pages needs the BPF engine (root, BTF, libbpf.so.1); --allow-swap-in reads them through the memory instead")
        case .mapped, .resident, .swap, .swapUnknown:
            var done = 0
            while UInt64(done) < pages {
                let start = start + UInt64(done) * pageSize
                // The window's span is located twice: keep it within a few buffers of pages.
                if used == capacity || (spanStart.map { (start - $0) / pageSize >= UInt64(capacity * 8) } ?? false) {
                    try readWindow()
                }
                let count = min(Int(pages) - done, capacity - used)
                window.append(Piece(start: start, pages: count, planned: planned.advanced(by: UInt64(done)), bufferPage: used))
                used += count
                done += count
            }
        }
    }

    /// Reads what the window holds and hands on the last stretch without bytes.
    mutating func flush() throws(PageStatError) {
        try readWindow()
        if let chunk = pending {
            pending = nil
            try body(chunk)
        }
    }

    /// The first page of the window that has bytes to read.
    private var spanStart: UInt64? {
        window.first { $0.bufferPage != nil }?.start
    }

    private static func source(of planned: PageLocation) -> SnapshotSource {
        switch planned {
        case .hole: .hole
        case .file: .file
        case .unknown(let reason): .unsettled(reason)
        default: .unsettled("planned without a source")
        }
    }

    private func bytes(_ page: Int, _ count: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: buffer[page * Int(pageSize)..<(page + count) * Int(pageSize)])
    }

    /// Locates the window's pages, reads them (memory, then slots in slot order), checks the
    /// slots' pages again, and hands every piece on in address order.
    private mutating func readWindow() throws(PageStatError) {
        defer {
            window.removeAll(keepingCapacity: true)
            used = 0
        }
        guard let spanStart, let last = window.last(where: { $0.bufferPage != nil }) else {
            for piece in window { try emit(piece.start, UInt64(piece.pages), Self.source(of: piece.planned)) }
            return
        }
        let ps = Int(pageSize)
        let spanPages = Int((last.start - spanStart) / pageSize) + last.pages
        /// The window's pages' index in the located span.
        func spanIndex(_ piece: Piece, _ page: Int) -> Int { Int((piece.start - spanStart) / pageSize) + page }

        var outcome = [Outcome](repeating: .settle, count: used)
        let before = try side.locate(spanStart, pages: spanPages)
        var swapPages = 0
        for piece in window {
            guard let bufferPage = piece.bufferPage else { continue }
            switch piece.planned {
            case .mapped, .resident:
                // Checked just before the read: a page swapped out since the plan is not read
                // through memory (that would swap it in) but settled on its own.
                var page = 0
                while page < piece.pages {
                    guard before[spanIndex(piece, page)] == piece.planned else { page += 1; continue }
                    var end = page + 1
                    while end < piece.pages && before[spanIndex(piece, end)] == piece.planned { end += 1 }
                    let got = try side.read(piece.planned, at: piece.start + UInt64(page * ps), into: bytes(bufferPage + page, end - page)) / ps
                    for index in page..<(page + got) { outcome[bufferPage + index] = .memory }
                    page = end
                }
            case .swap:
                for page in 0..<piece.pages {
                    let planned = piece.planned.advanced(by: UInt64(page))
                    if before[spanIndex(piece, page)] == planned, case .swap(let type, let offset) = planned {
                        outcome[bufferPage + page] = .slot(type: type, offset: offset)
                        swapPages += 1
                    }
                }
            case .swapUnknown:
                for page in 0..<piece.pages { outcome[bufferPage + page] = .through }
            case .hole, .file, .unknown:
                break
            }
        }
        if swapPages > 0 {
            let started = Stopwatch.now()
            try readSlots(&outcome)
            let after = try side.locate(spanStart, pages: spanPages)
            for piece in window {
                guard let bufferPage = piece.bufferPage, case .swap = piece.planned else { continue }
                for page in 0..<piece.pages {
                    // A page read from its slot, or told zero by the zeromap, must still be there.
                    switch outcome[bufferPage + page] {
                    case .swap(let type, let offset) where after[spanIndex(piece, page)] != .swap(type: type, offset: offset):
                        outcome[bufferPage + page] = .settle
                    case .zero where after[spanIndex(piece, page)] != piece.planned.advanced(by: UInt64(page)):
                        outcome[bufferPage + page] = .settle
                    default:
                        break
                    }
                }
            }
            totals.swapReadNanoseconds += Stopwatch.now() - started
        }
        for piece in window {
            guard let bufferPage = piece.bufferPage else { continue }
            var page = 0
            while page < piece.pages {
                guard outcome[bufferPage + page] == .through else { page += 1; continue }
                var end = page + 1
                while end < piece.pages && outcome[bufferPage + end] == .through { end += 1 }
                let got = try side.readThrough(piece.start + UInt64(page * ps), into: bytes(bufferPage + page, end - page)) / ps
                for index in page..<end { outcome[bufferPage + index] = index < page + got ? .swappedIn : .unreadable }
                page = end
            }
        }
        for piece in window {
            guard let bufferPage = piece.bufferPage else {
                try emit(piece.start, UInt64(piece.pages), Self.source(of: piece.planned))
                continue
            }
            try emit(piece, bufferPage: bufferPage, outcome[bufferPage..<(bufferPage + piece.pages)])
        }
    }

    /// Reads the slots `outcome` names: their states first (a zero page is not read, a page in
    /// the swap cache is settled on its own), then the data slots of each area in slot order.
    private mutating func readSlots(_ outcome: inout [Outcome]) throws(PageStatError) {
        var byType: [UInt8: [(offset: UInt64, page: Int)]] = [:]
        for (page, result) in outcome.enumerated() {
            if case .slot(let type, let offset) = result { byType[type, default: []].append((offset, page)) }
        }
        for (type, pages) in byType {
            let pages = pages.sorted { $0.offset < $1.offset }
            do {
                try slots.checkReadable(type: type)
            } catch {
                guard options.allowSwapIn, isRefusal(error) else { throw error }
                for (_, page) in pages { outcome[page] = .through }
                continue
            }
            // States: one ask per stretch of the area that one pass of the reader covers.
            var first = 0
            while first < pages.count {
                var end = first + 1
                while end < pages.count && pages[end].offset - pages[first].offset < UInt64(CPAGESTAT_SS_MAX_SLOTS) { end += 1 }
                let base = pages[first].offset
                let states = slots.slotStates(type: type, offset: base, count: Int(pages[end - 1].offset - base) + 1)
                for (offset, page) in pages[first..<end] {
                    switch states?[Int(offset - base)] {
                    case .zero: outcome[page] = .zero
                    case .data, nil: break
                    case .swapCache: outcome[page] = .settle
                    }
                }
                first = end
            }
            // Reads: runs of consecutive slots going to consecutive buffer pages.
            var runs: [SlotRun] = []
            var index = 0
            while index < pages.count {
                guard case .slot = outcome[pages[index].page] else { index += 1; continue }
                var end = index + 1
                while end < pages.count, pages[end].offset == pages[end - 1].offset + 1, pages[end].page == pages[end - 1].page + 1,
                      case .slot = outcome[pages[end].page] { end += 1 }
                runs.append(SlotRun(offset: pages[index].offset, count: end - index, buffer: bytes(pages[index].page, end - index)))
                index = end
            }
            guard !runs.isEmpty else { continue }
            let reading = Stopwatch.now()
            defer { totals.slotIONanoseconds += Stopwatch.now() - reading }
            do {
                try slots.read(type: type, runs: runs)
            } catch {
                guard options.allowSwapIn, isRefusal(error) else { throw error }
                for (_, page) in pages where outcome[page] != .zero && outcome[page] != .settle { outcome[page] = .through }
                continue
            }
            for (offset, page) in pages {
                if case .slot = outcome[page] { outcome[page] = .swap(type: type, offset: offset) }
            }
        }
    }

    /// Hands on a piece's pages in order: stretches of one outcome as one chunk each (slots
    /// only while consecutive), a page to settle on its own.
    private mutating func emit(_ piece: Piece, bufferPage: Int, _ outcome: ArraySlice<Outcome>) throws(PageStatError) {
        let ps = Int(pageSize)
        var page = 0
        while page < piece.pages {
            let first = outcome[bufferPage + page]
            let address = piece.start + UInt64(page * ps)
            var end = page + 1
            func continues(_ next: Outcome, after previous: Outcome) -> Bool {
                switch (previous, next) {
                case (.swap(let type, let offset), .swap(let nextType, let nextOffset)): nextType == type && nextOffset == offset + 1
                case (.settle, _), (_, .settle): false
                default: previous == next
                }
            }
            while end < piece.pages && continues(outcome[bufferPage + end], after: outcome[bufferPage + end - 1]) { end += 1 }
            let count = UInt64(end - page)
            switch first {
            case .memory: try emit(address, count, .memory, bytes: bytes(bufferPage + page, end - page))
            case .swap(let type, let offset):
                try emit(address, count, .swap(SwapLocation(type: type, offset: offset)), bytes: bytes(bufferPage + page, end - page))
            case .zero: try emit(address, count, .zero)
            case .swappedIn: try emit(address, count, .swappedIn, bytes: bytes(bufferPage + page, end - page))
            case .unreadable: try emit(address, count, .unsettled("could not be read through the mapping"))
            case .settle, .slot, .through: try settle(address, replanned: true)
            }
            page = end
        }
    }

    /// Whether the slot reader refused the swap area (its backend), rather than failed a read.
    private func isRefusal(_ error: PageStatError) -> Bool {
        if case .swapAreaRefused = error { return true }
        return false
    }

    /// Reads one page that moved since it was planned, planning it again each time it is found
    /// moved after its read, at most `maxReplans` more times.
    private mutating func settle(_ address: UInt64, replanned: Bool) throws(PageStatError) {
        if replanned { totals.replanned += 1 }
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(pageSize), alignment: Int(pageSize))
        defer { page.deallocate() }
        for attempt in 0...options.maxReplans {
            if attempt > 0 { usleep(1000) }
            let location = try side.locate(address, pages: 1)[0]
            switch location {
            case .hole, .file:
                try emit(address, 1, location == .hole ? .hole : .file)
                return
            case .mapped, .resident:
                if try side.read(location, at: address, into: page) == Int(pageSize) {
                    try emit(address, 1, .memory, bytes: UnsafeMutableRawBufferPointer(page))
                    return
                }
            case .swap(let type, let offset):
                let started = Stopwatch.now()
                defer { totals.swapReadNanoseconds += Stopwatch.now() - started }
                var state: SnapshotSlotState?
                do {
                    try slots.checkReadable(type: type)
                    state = slots.slotStates(type: type, offset: offset, count: 1)?.first
                    if state == .swapCache { continue }
                    if state != .zero {
                        let reading = Stopwatch.now()
                        defer { totals.slotIONanoseconds += Stopwatch.now() - reading }
                        try slots.read(type: type, runs: [SlotRun(offset: offset, count: 1, buffer: page)])
                    }
                } catch {
                    guard options.allowSwapIn, isRefusal(error) else { throw error }
                    if try side.readThrough(address, into: page) == Int(pageSize) {
                        try emit(address, 1, .swappedIn, bytes: UnsafeMutableRawBufferPointer(page))
                        return
                    }
                    continue
                }
                guard try side.locate(address, pages: 1)[0] == location else { continue }
                if state == .zero {
                    try emit(address, 1, .zero)
                } else {
                    try emit(address, 1, .swap(SwapLocation(type: type, offset: offset)), bytes: UnsafeMutableRawBufferPointer(page))
                }
                return
            case .swapUnknown:
                guard options.allowSwapIn else { continue }
                if try side.readThrough(address, into: page) == Int(pageSize) {
                    try emit(address, 1, .swappedIn, bytes: UnsafeMutableRawBufferPointer(page))
                    return
                }
            case .unknown:
                continue
            }
        }
        try emit(address, 1, .unsettled("moved while it was read, \(options.maxReplans + 1) times"))
    }

    private mutating func emit(_ start: UInt64, _ pages: UInt64, _ source: SnapshotSource,
                               bytes: UnsafeMutableRawBufferPointer? = nil) throws(PageStatError) {
        totals.add(source, pages)
        let chunk = SnapshotChunk(mapping: mapping, start: start, pages: pages, source: source,
                                  storage: bytes.map { UnsafeRawBufferPointer($0) })
        if bytes == nil {
            if var open = pending, open.source == source, open.start + open.pages * pageSize == start {
                open.pages += pages
                pending = open
                return
            }
            if let chunk = pending {
                pending = nil
                try body(chunk)
            }
            pending = chunk
        } else {
            if let chunk = pending {
                pending = nil
                try body(chunk)
            }
            try body(chunk)
        }
    }
}
