#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// The page-table half of `top` for one process at a time, reading only what the fleet view
/// reports: per mapping, the pages present (the zero page apart), swapped, and with PSS the
/// mapcount of each present page. The counts are those of `ProcessScanner` with accounting and no
/// file side, page for page; the way to them is cheaper:
///
/// - one PAGEMAP_SCAN over the whole address space names the present and swapped regions (and the
///   zero page's), so empty and present pages are counted by the region, without a pagemap entry
///   each (a pagemap read of a present page costs the kernel a look at its struct page; PAGEMAP_SCAN
///   asked for these categories does not);
/// - pagemap itself is read only where a region is swapped (to tell swap from migration and
///   device entries and PTE markers, as the scanner's decoder does), with PSS where it is present
///   (for the PFNs), and over device and special mappings, which PAGEMAP_SCAN does not walk;
/// - /proc/kpagecount is read once per scan for a page that several processes map (its mapcount
///   is kept here), not once per process that maps it;
/// - maps is read once, and no page-table chunk goes to another thread: `top` already scans
///   processes on every core.
///
/// One tally per worker thread: it owns its buffers and its mapcounts.
final class FleetTally {
    let pageSize: UInt64
    let privileged: Bool
    /// /proc/kpagecount, when PSS is asked for and can be read; nil with the reason otherwise.
    private let kpagecount: Result<KPageTable, PageStatError>?
    /// /proc/kpageflags, for the zero page and huge zero page where pagemap is read (privileged).
    private let zeroPages: PFNFlagSource?
    private let regions: UnsafeMutableBufferPointer<PagemapScan.Region>
    private let entries: UnsafeMutableBufferPointer<UInt64>
    private let values: UnsafeMutableBufferPointer<UInt64>
    /// Mapcounts of pages mapped more than once, as read this scan: the other processes that map
    /// such a page (a forked child's copy-on-write pages, shared memory) find it here.
    private var mapcounts: [UInt64: UInt64] = [:]
    /// The zero page's regions within the device and special mappings of the process being scanned.
    private var found: [(AddressRange, PagemapScan.Categories)] = []

    /// Mapcounts kept per tally at most (about 6 MiB of table).
    static let mapcountLimit = 1 << 18
    static let batchPages = 1 << 14

    /// The PAGEMAP_SCAN categories the tally needs; without them `top` uses `ProcessScanner`.
    static let needed: PagemapScan.Categories = [.present, .swapped, .pfnZero]

    init(proportional: Bool) {
        pageSize = UInt64(ProcFS.pageSize)
        privileged = ProcFS.hasSysAdmin()
        if proportional && privileged {
            do { kpagecount = .success(try KPageTable.kpagecount()) } catch { kpagecount = .failure(error) }
        } else {
            kpagecount = nil
        }
        if privileged, let zeroPFN = PFNFlagSource.zeroPageFrame, let flags = try? KPageTable.kpageflags() {
            zeroPages = PFNFlagSource(zeroPFN: zeroPFN, kpageflags: flags, pageSize: pageSize)
        } else {
            zeroPages = nil
        }
        regions = .allocate(capacity: 4096)
        entries = .allocate(capacity: Self.batchPages)
        values = .allocate(capacity: Self.batchPages)
    }

    deinit {
        regions.deallocate()
        entries.deallocate()
        values.deallocate()
    }

    /// Whether this kernel's PAGEMAP_SCAN gives the categories the tally needs (probed on our own
    /// pagemap: the answer is the kernel's, not the process's).
    static let supported: Bool = {
        guard let fd = try? FileDescriptor.open("/proc/self/pagemap", .readOnly, options: [.closeOnExec]) else { return false }
        defer { try? fd.close() }
        return PagemapScan.supportedCategories(fd: fd).isSuperset(of: needed)
    }()

    /// A mapping's counts while its regions come in.
    private struct Counts {
        var present: UInt64 = 0
        var zero: UInt64 = 0
        var swapped: UInt64 = 0
        var mapcounts: MemoryUse?
    }

    /// One process for `top`: its memory use (shared objects' swap not yet split), where it maps
    /// shared objects, and its notes; nil for a process without mappings. `eachMapping` sees each
    /// mapping's own use (for tests that compare mappings whose mapcounts stand still).
    func scan(_ pid: Int32, eachMapping: ((Mapping, MemoryUse) -> Void)? = nil)
        throws(PageStatError) -> (ProcessUse, [(ObjectID, ObjectMapping)], [ScanNote])? {
        let handle = try ProcessHandle(pid: pid)
        let views = try ProcessScanner.openViews(handle)
        defer { try? views.maps.close() }
        /// What became of an address space that read empty or failed: exit or exec.
        func gone() -> PageStatError { handle.vanished(from: views.identity) }
        do throws(PageStatError) {
            let mappings = ProcMaps.parse(maps: try handle.readAll(views.maps, name: "maps", what: "/proc/\(pid)/maps (needs ptrace read access)"),
                                          pid: pid)
            // An address space that has mappings never reads empty: it is gone (exit or exec).
            if mappings.isEmpty { throw gone() }
            var notes = Notes()
            if !privileged {
                notes.add(.notPrivileged)
            }
            if !PageCacheObject.cachestatSupported {
                notes.add(.cachestatMissing)
            }
            var counting: KPageTable?
            switch kpagecount {
            case .success(let table): counting = table
            case .failure(let error): notes.add(.kpageTableUnavailable(.kpagecount, error))
            case nil: break
            }
            var counts = [Counts](repeating: Counts(mapcounts: counting != nil ? MemoryUse() : nil), count: mappings.count)
            var special: UInt64 = 0
            let fd = views.pagemap.fileDescriptor
            for mapping in mappings where mapping.range.start >= ProcessScanner.userSpaceEnd {
                notes.add(.aboveUserAddressSpace(mapping: mapping.path.isEmpty ? mapping.range.description : mapping.path))
            }
            let user = mappings.indices.filter { mappings[$0].range.start < ProcessScanner.userSpaceEnd }
            if let first = user.first, let last = user.last {
                // The present and swapped regions of the whole address space, in address order,
                // the zero page's apart, counted batch by batch as PAGEMAP_SCAN returns them: memory
                // stays bounded by a batch, however many regions the address space has. Only the
                // zero page's regions within device and special mappings are kept, for below.
                found.removeAll(keepingCapacity: true)
                var cursor = 0
                try PagemapScan.scan(fd: fd, pid: pid, start: mappings[first].range.start, end: mappings[last].range.end,
                                     anyOf: [.present, .swapped], returnMask: Self.needed, buffer: regions) { (batch) throws(PageStatError) in
                    for scanned in batch {
                        let region = AddressRange(start: scanned.start, end: scanned.end)
                        let categories = PagemapScan.Categories(rawValue: scanned.categories)
                        while cursor < user.count && mappings[user[cursor]].range.end <= region.start { cursor += 1 }
                        var next = cursor
                        while next < user.count && mappings[user[next]].range.start < region.end {
                            let index = user[next]
                            let mapping = mappings[index]
                            next += 1
                            guard ProcessScanner.skipsEmpty(mapping) else {
                                // Read through pagemap below.
                                if categories.contains(.pfnZero) { found.append((region, categories)) }
                                continue
                            }
                            let part = AddressRange(start: max(region.start, mapping.range.start), end: min(region.end, mapping.range.end))
                            guard part.start < part.end else { continue }
                            if categories.contains(.present) {
                                let pages = part.length / pageSize
                                if categories.contains(.pfnZero) { counts[index].zero += pages } else { counts[index].present += pages }
                                if let counting { try addMapcounts(of: part, fd: fd, pid: pid, table: counting, into: &counts[index].mapcounts) }
                            } else {
                                try decode(part, mapping: mapping, fd: fd, pid: pid, table: counting, counts: &counts[index], special: &special)
                            }
                        }
                    }
                }
                for index in user where !ProcessScanner.skipsEmpty(mappings[index]) {
                    let range = mappings[index].range
                    let zeroRegions = found.filter { $0.1.contains(.pfnZero) && $0.0.overlaps(range) }.map(\.0)
                    try readWhole(mappings[index], fd: fd, pid: pid, zeroRegions: zeroRegions, table: counting,
                                  counts: &counts[index], special: &special)
                }
            }
            // Exited or replaced while its page table was read: its counts may be of nothing.
            try handle.checkAddressSpace(views.identity)
            if special > 0 {
                notes.add(.nonSwapEntries(pages: special))
            }

            var account = TopAccount(pid: pid, pageSize: pageSize)
            for (index, mapping) in mappings.enumerated() {
                var mappingUse = MemoryUse()
                mappingUse.rss = counts[index].present * pageSize
                mappingUse.zeroPage = counts[index].zero * pageSize
                mappingUse.swap = counts[index].swapped * pageSize
                mappingUse.finish(mapcounts: counts[index].mapcounts, shmem: mapping.kind.isShmem)
                eachMapping?(mapping, mappingUse)
                account.add(mapping, use: mappingUse)
            }
            let (process, objects) = account.finish(proportional: counting != nil, identity: ProcessIdentity.read(handle: handle))
            return (process, objects, notes.all)
        } catch .noSuchProcess, .processExited {
            throw gone()
        }
    }

    /// Reads the pagemap entries of `range` in batches and hands each batch to `body`.
    private func read(_ range: AddressRange, fd: FileDescriptor, pid: Int32,
                      _ body: (UInt64, UnsafeBufferPointer<UInt64>) throws(PageStatError) -> Void) throws(PageStatError) {
        var address = range.start
        let hugeBytes = UInt64(PFNFlagSource.hugePages) * pageSize
        while address < range.end {
            var wanted = Int(min(UInt64(entries.count), (range.end - address) / pageSize))
            // Batches end on 2 MiB boundaries, so that no huge page straddles two of them.
            let end = address + UInt64(wanted) * pageSize
            if end < range.end, end % hugeBytes != 0, end - end % hugeBytes > address {
                wanted = Int((end - end % hugeBytes - address) / pageSize)
            }
            let got = try Pagemap.read(fd, pid: pid, pageSize: pageSize, at: address,
                                       into: UnsafeMutableBufferPointer(rebasing: entries[0..<wanted]))
            // Nothing at a user address: the address space is gone (exit or exec).
            if got == 0 { throw .processExited(pid: pid) }
            try body(address, UnsafeBufferPointer(rebasing: entries[0..<got]))
            address += UInt64(got) * pageSize
        }
    }

    /// Swapped regions: each entry decoded as the scanner decodes it (real swap, or a migration,
    /// device or hwpoison entry, or a PTE marker).
    private func decode(_ range: AddressRange, mapping: Mapping, fd: FileDescriptor, pid: Int32, table: KPageTable?,
                        counts: inout Counts, special: inout UInt64) throws(PageStatError) {
        let decoder = PagemapDecoder(kind: mapping.kind, shared: mapping.isShared, privileged: privileged, view: .truth)
        try read(range, fd: fd, pid: pid) { (_, batch) throws(PageStatError) in
            for raw in batch {
                let decoded = decoder.decode(raw)
                switch decoded.state {
                case .swapped: counts.swapped += 1
                // Present since PAGEMAP_SCAN looked; the zero page is told only with a PFN.
                case .present where decoded.pfn != nil && decoded.pfn == zeroPages?.zeroPFN: counts.zero += 1
                case .present: counts.present += 1
                case .unknown where decoded.flags.contains(.nonSwapEntry): special += 1
                default: break
                }
            }
            if let table, counts.mapcounts != nil {
                try lookUp(batch, table: table)
                counts.mapcounts?.addMapcounts(UnsafeBufferPointer(rebasing: values[0..<batch.count]), pageSize: pageSize)
            }
        }
    }

    /// The mapcounts of the present pages of `range`, added to `mapcounts`.
    private func addMapcounts(of range: AddressRange, fd: FileDescriptor, pid: Int32, table: KPageTable,
                              into mapcounts: inout MemoryUse?) throws(PageStatError) {
        try read(range, fd: fd, pid: pid) { (_, batch) throws(PageStatError) in
            try lookUp(batch, table: table)
            mapcounts?.addMapcounts(UnsafeBufferPointer(rebasing: values[0..<batch.count]), pageSize: pageSize)
        }
    }

    /// A device or special mapping (which PAGEMAP_SCAN does not walk), read whole through pagemap
    /// and decoded page by page; its zero pages from the PFNs (privileged) or PAGEMAP_SCAN.
    private func readWhole(_ mapping: Mapping, fd: FileDescriptor, pid: Int32, zeroRegions: [AddressRange],
                           table: KPageTable?, counts: inout Counts, special: inout UInt64) throws(PageStatError) {
        let decoder = PagemapDecoder(kind: mapping.kind, shared: mapping.isShared, privileged: privileged, view: .truth)
        try read(mapping.range, fd: fd, pid: pid) { (address, batch) throws(PageStatError) in
            let zero = try zeroPages.map { source throws(PageStatError) in
                try source.regions(batch, firstAddress: address).filter { $0.1.contains(.zeroPage) }.map(\.0)
            } ?? zeroRegions
            for (index, raw) in batch.enumerated() {
                let decoded = decoder.decode(raw)
                switch decoded.state {
                case .swapped: counts.swapped += 1
                case .present:
                    let page = address + UInt64(index) * pageSize
                    if zero.contains(where: { $0.start <= page && page < $0.end }) { counts.zero += 1 } else { counts.present += 1 }
                case .unknown where decoded.flags.contains(.nonSwapEntry): special += 1
                default: break
                }
            }
            if let table, counts.mapcounts != nil {
                try lookUp(batch, table: table)
                counts.mapcounts?.addMapcounts(UnsafeBufferPointer(rebasing: values[0..<batch.count]), pageSize: pageSize)
            }
        }
    }

    /// For each entry of `batch` present with a PFN, its mapcount into `values` (zero for the
    /// others): from this scan's table where a page mapped more than once was read before, else
    /// from /proc/kpagecount, a run of consecutive PFNs with one pread(2).
    private func lookUp(_ batch: UnsafeBufferPointer<UInt64>, table: KPageTable) throws(PageStatError) {
        try table.lookUp(entries: batch, into: UnsafeMutableBufferPointer(rebasing: values[0..<batch.count]),
                         known: { mapcounts[$0] }) { first, read in
            guard mapcounts.count < Self.mapcountLimit else { return }
            for (offset, value) in read.enumerated() where value > 1 { mapcounts[first + UInt64(offset)] = value }
        }
    }
}

/// One process's line of `top`, added up mapping by mapping: its memory use and where it maps
/// shared objects (their pages settled later, once per object). The one accounting of `top`,
/// whether the fleet tally or the process scanner read the page table.
struct TopAccount {
    let pid: Int32
    let pageSize: UInt64
    private var use = MemoryUse.zero
    private var objects: [(ObjectID, ObjectMapping)] = []

    init(pid: Int32, pageSize: UInt64) {
        self.pid = pid
        self.pageSize = pageSize
    }

    /// Adds a mapping and its memory use (nil: none counted).
    mutating func add(_ mapping: Mapping, use mappingUse: MemoryUse?) {
        if let mappingUse { use += mappingUse }
        if mapping.kind.isShmem {
            let first = mapping.offset / pageSize
            objects.append((ObjectID(mapping), ObjectMapping(pid: pid, range: mapping.range, first: first,
                                                             end: first + mapping.range.length / pageSize,
                                                             path: mapping.path, kind: SharedMemoryKind(mapping))))
        }
    }

    /// The process's use (PSS and USS nil unless `proportional` ones were counted) under its
    /// `identity` ("?" where it could not be read), and its mappings of shared objects.
    func finish(proportional: Bool, identity: ProcessIdentity?) -> (ProcessUse, [(ObjectID, ObjectMapping)]) {
        var use = self.use
        if !proportional { use.pss = nil; use.uss = nil }
        let identity = identity ?? ProcessIdentity(name: "?", comm: "?", uid: nil, cgroup: nil)
        return (ProcessUse(pid: pid, command: identity.name, use: use, identity: identity), objects)
    }
}
