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

/// Reads planned runs through one buffer and hands chunks on in order (see `PageSnapshot`).
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

    init(side: Side, slots: any SnapshotSlotSource, options: SnapshotOptions, buffer: UnsafeMutableRawBufferPointer,
         pageSize: UInt64, mapping: Mapping?, body: @escaping (SnapshotChunk) throws(PageStatError) -> Void) {
        self.side = side
        self.slots = slots
        self.options = options
        self.buffer = buffer
        self.pageSize = pageSize
        self.mapping = mapping
        self.body = body
    }

    /// Copies a planned run of `pages` pages from `start` whose first page is at `planned`.
    mutating func copy(start: UInt64, pages: UInt64, planned: PageLocation) throws(PageStatError) {
        switch planned {
        case .hole: try emit(start, pages, .hole)
        case .file: try emit(start, pages, .file)
        case .unknown(let reason): try emit(start, pages, .unsettled(reason))
        case .mapped, .resident, .swap, .swapUnknown:
            var done: UInt64 = 0
            while done < pages {
                let count = min(pages - done, UInt64(options.chunkPages))
                try copyPiece(start + done * pageSize, pages: Int(count), planned: planned.advanced(by: done))
                done += count
            }
        }
    }

    /// Hands on the last stretch without bytes.
    mutating func flush() throws(PageStatError) {
        if let chunk = pending {
            pending = nil
            try body(chunk)
        }
    }

    private func bytes(_ page: Int, _ count: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: buffer[page * Int(pageSize)..<(page + count) * Int(pageSize)])
    }

    private mutating func copyPiece(_ start: UInt64, pages: Int, planned: PageLocation) throws(PageStatError) {
        let ps = Int(pageSize)
        switch planned {
        case .mapped, .resident:
            // Checked just before the read: a page swapped out since the plan is not read
            // through memory (that would swap it in) but planned again.
            let now = try side.locate(start, pages: pages)
            var page = 0
            while page < pages {
                guard now[page] == planned else {
                    try settle(start + UInt64(page) * pageSize, replanned: true)
                    page += 1
                    continue
                }
                var end = page + 1
                while end < pages && now[end] == planned { end += 1 }
                let got = try side.read(planned, at: start + UInt64(page * ps), into: bytes(page, end - page)) / ps
                if got > 0 { try emit(start + UInt64(page * ps), UInt64(got), .memory, bytes: bytes(page, got)) }
                for missed in (page + got)..<end { try settle(start + UInt64(missed * ps), replanned: true) }
                page = end
            }
        case .swap(let type, let offset):
            let states = slots.slotStates(type: type, offset: offset, count: pages)
            do {
                try slots.read(type: type, offset: offset, count: pages, into: bytes(0, pages))
            } catch {
                guard options.allowSwapIn, isRefusal(error) else { throw error }
                try readThrough(start, pages: pages)
                return
            }
            let now = try side.locate(start, pages: pages)
            var page = 0
            while page < pages {
                let expected = PageLocation.swap(type: type, offset: offset + UInt64(page))
                guard now[page] == expected, states?[page] != .swapCache else {
                    try settle(start + UInt64(page * ps), replanned: true)
                    page += 1
                    continue
                }
                let zero = states?[page] == .zero
                var end = page + 1
                while end < pages && now[end] == .swap(type: type, offset: offset + UInt64(end))
                    && states?[end] != .swapCache && (states?[end] == .zero) == zero { end += 1 }
                if zero {
                    try emit(start + UInt64(page * ps), UInt64(end - page), .zero)
                } else {
                    try emit(start + UInt64(page * ps), UInt64(end - page), .swap(SwapLocation(type: type, offset: offset + UInt64(page))),
                             bytes: bytes(page, end - page))
                }
                page = end
            }
        case .swapUnknown:
            guard options.allowSwapIn else {
                throw .unsupported("the swap location of swapped shared pages needs the BPF engine (root, BTF, libbpf.so.1); --allow-swap-in reads them through the memory instead")
            }
            try readThrough(start, pages: pages)
        case .hole, .file, .unknown:
            try copy(start: start, pages: UInt64(pages), planned: planned)
        }
    }

    /// Whether the slot reader refused the swap area (its backend), rather than failed a read.
    private func isRefusal(_ error: PageStatError) -> Bool {
        if case .swapAreaRefused = error { return true }
        return false
    }

    private mutating func readThrough(_ start: UInt64, pages: Int) throws(PageStatError) {
        let got = try side.readThrough(start, into: bytes(0, pages)) / Int(pageSize)
        if got > 0 { try emit(start, UInt64(got), .swappedIn, bytes: bytes(0, got)) }
        if got < pages {
            try emit(start + UInt64(got) * pageSize, UInt64(pages - got), .unsettled("could not be read through the mapping"))
        }
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
                let state = slots.slotStates(type: type, offset: offset, count: 1)?.first
                if state == .swapCache { continue }
                do {
                    try slots.read(type: type, offset: offset, count: 1, into: page)
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
            case .swapUnknown, .unknown:
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
            try flush()
            pending = chunk
        } else {
            try flush()
            try body(chunk)
        }
    }
}
