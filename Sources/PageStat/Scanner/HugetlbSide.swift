#if canImport(Glibc)
import Glibc
#endif

/// Settles the pages of hugetlb mappings that the page table leaves open, in whole huge pages.
///
/// hugetlbfs answers little from its file side: cachestat refuses it (EOPNOTSUPP), lseek
/// SEEK_DATA calls every byte below the end data (it has no SEEK_DATA of its own), mincore sees
/// only the caller's own page table, and a mapping of our own would take huge pages from the pool
/// (a shared one even reserves them in the file until it is truncated). What it does tell without
/// a mapping is a count: st_blocks, the huge pages the file holds. So:
/// - a huge page of the object that this process maps as a file page (pagemap bit 61) somewhere
///   in the scan is in the file: pending pages there are `cached`;
/// - of the object's other huge pages, where the BPF walker is loaded, the hugetlbfs inode's
///   page-cache xarray says which hold memory (`cached`) and which are holes (`none`);
/// - else st_blocks minus those says how many hold memory: none of them (`none`), all of them
///   (`cached`), or some, which are `unknown` with that count in the notes;
/// - pages past the end of the file are `none` (touching them raises SIGBUS);
/// - private anonymous hugetlb memory (MAP_PRIVATE|MAP_HUGETLB) has no file side: its pages are
///   present or `none`, and no object is opened.
/// Hugetlb pages are never `thp`: that flag (PAGEMAP_SCAN PAGE_IS_HUGE, kpageflags HUGE) is
/// dropped from their runs.
enum HugetlbSide {
    /// The path maps shows for MAP_HUGETLB memory (hugetlb_file_setup's name, unlinked).
    static let anonymousPath = "/anon_hugepage (deleted)"

    /// Resolves the pending runs of every `hugetlb` mapping in `reports` (when `enabled`) and
    /// drops `thp` from their runs. `open` opens a mapping's object. `mappedByProcess` gives the
    /// huge pages of a mapping's object that the process maps as file pages in any of its
    /// mappings of it, scanned or not (nil when that cannot be told): the counts need all of them.
    /// `walker`, where loaded, reads which huge pages the object holds.
    static func settle(_ reports: inout [MappingReport], pageSize: UInt64, enabled: Bool, walker: XArrayWalker?, notes: inout Notes,
                       open: (Mapping) throws(PageStatError) -> PageCacheObject,
                       mappedByProcess: (Mapping, UInt64) throws(PageStatError) -> [Range<UInt64>]?) throws(PageStatError) {
        var objects: [ObjectID: [Int]] = [:]
        for index in reports.indices where reports[index].mapping.kind == .hugetlb {
            dropTHP(&reports[index], pageSize: pageSize)
            let mapping = reports[index].mapping
            let pending = reports[index].runs.contains { $0.flags.contains(.pendingFileSide) }
            guard enabled, pending else { continue }
            if mapping.path == anonymousPath && !mapping.isShared {
                replacePending(&reports[index], pageSize: pageSize) { _, pages, emit in emit(pages, .none) }
                continue
            }
            objects[ObjectID(mapping), default: []].append(index)
        }
        for (_, indices) in objects.sorted(by: { $0.key < $1.key }) {
            let mapping = reports[indices[0]].mapping
            let object: PageCacheObject
            do throws(PageStatError) {
                object = try open(mapping)
            } catch {
                if case .processExited = error { throw error }
                notes.add(reason(error, mapping: mapping))
                continue  // pending runs stay unknown
            }
            guard let hugePageSize = object.hugePageSize, hugePageSize % pageSize == 0 else {
                notes.add(.hugetlbObjectNotOnHugetlbfs(mapping: label(mapping)))
                continue
            }
            // Which huge pages this process maps: from the page tables of all its mappings of the
            // object, not only the parts scanned here (a range, a wave). Where that cannot be
            // told, what the scanned runs show is enough only if they are all there is.
            var mapped = try mappedByProcess(mapping, hugePageSize)
            if mapped == nil && indices.allSatisfy({ reports[$0].scanned == reports[$0].mapping.range }) {
                mapped = mappedHugePages(reports, indices, pageSize: pageSize, hugePageSize: hugePageSize)
            }
            guard let mapped else {
                notes.add(.hugetlbMappedElsewhereUnknown(mapping: label(mapping)))
                continue
            }
            var resident: [Range<UInt64>]?
            if let walker {
                do throws(PageStatError) {
                    resident = try residentHugePages(object, walker: walker, pageSize: pageSize, hugePageSize: hugePageSize)
                } catch {
                    if case .processExited = error { throw error }
                    // The counts answer instead (their notes say what they cannot tell).
                }
            }
            let verdict = Verdict(object: object, pageSize: pageSize, hugePageSize: hugePageSize, mapped: mapped,
                                  resident: resident)
            if let note = verdict.note(label(mapping)) { notes.add(note) }
            for index in indices {
                replacePending(&reports[index], pageSize: pageSize) { offset, pages, emit in
                    // Whole huge pages share a state: split the stretch at huge page boundaries
                    // where the state changes.
                    var offset = offset
                    var left = pages
                    while left > 0 {
                        let hugeIndex = offset / hugePageSize
                        let state = verdict.state(ofHugePage: hugeIndex)
                        var take = min(left, ((hugeIndex + 1) * hugePageSize - offset) / pageSize)
                        // Following huge pages in the same state join the run.
                        while take < left, verdict.state(ofHugePage: (offset + take * pageSize) / hugePageSize) == state {
                            take = min(left, take + hugePageSize / pageSize)
                        }
                        emit(take, state)
                        offset += take * pageSize
                        left -= take
                    }
                }
            }
        }
    }

    /// Whether hugetlbfs indexes its page cache in base pages, a huge page being one multi-index
    /// entry over its base pages (6.7+, where mm/filemap.c lost its hugetlb special case), or in
    /// huge pages, one entry each (before).
    static let pageCacheInBasePages: Bool = {
        var name = utsname()
        guard uname(&name) == 0 else { return true }
        let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard numbers.count == 2 else { return true }
        return numbers[0] > 6 || (numbers[0] == 6 && numbers[1] >= 7)
    }()

    /// The huge pages (object indices, sorted ranges) that the object's page cache holds: one
    /// BPF walk of the hugetlbfs inode's `i_pages` over the file's huge pages (metadata only: no
    /// mapping, no huge page reserved or allocated). Nil when the walk shows what a hugetlbfs page
    /// cache cannot hold (a value entry, a folio not on huge page bounds).
    static func residentHugePages(_ object: PageCacheObject, walker: XArrayWalker, pageSize: UInt64,
                                  hugePageSize: UInt64) throws(PageStatError) -> [Range<UInt64>]? {
        let perHugePage = pageCacheInBasePages ? hugePageSize / pageSize : 1
        let filePages = object.size / hugePageSize
        var resident: [Range<UInt64>] = []
        var odd = false
        try walker.walk(fd: object.fd, first: 0, count: filePages * perHugePage) { run in
            switch run.kind {
            case .hole:
                break
            case .resident:
                if run.first % perHugePage != 0 || run.pages % perHugePage != 0 { odd = true }
                resident.append(run.first / perHugePage..<run.end / perHugePage)
            case .swap, .shadow:
                odd = true
            }
        }
        return odd ? nil : resident
    }

    /// What the page table, and the xarray walk or st_blocks, together say about an object's
    /// huge pages.
    struct Verdict {
        /// Huge pages below the end of the file.
        let filePages: UInt64
        /// Huge pages (object indices, sorted ranges) this process maps as file pages.
        let mapped: [Range<UInt64>]
        /// Of the file's huge pages not in `mapped`: how many hold memory (st_blocks), and how many there are.
        let unmappedHolding: UInt64?
        let unmapped: UInt64
        /// The huge pages the object's page cache holds, where the walk read them.
        let resident: [Range<UInt64>]?

        init(object: PageCacheObject, pageSize: UInt64, hugePageSize: UInt64, mapped: [Range<UInt64>],
             resident: [Range<UInt64>]? = nil) {
            self.resident = resident
            let filePages = object.size / hugePageSize
            let inFile = mapped.compactMap { range in
                range.lowerBound < filePages ? range.lowerBound..<min(range.upperBound, filePages) : nil
            }
            self.filePages = filePages
            self.mapped = inFile
            let mappedCount = inFile.reduce(UInt64(0)) { $0 + UInt64($1.count) }
            let holding = object.allocatedPages * pageSize / hugePageSize
            let unmapped = filePages - mappedCount
            self.unmapped = unmapped
            // Fewer pages held than mapped, or more than there are: the file changed meanwhile.
            unmappedHolding = holding >= mappedCount && holding - mappedCount <= unmapped ? holding - mappedCount : nil
        }

        func state(ofHugePage index: UInt64) -> PageState {
            if index >= filePages { return .none }
            if Self.contains(mapped, index) { return .cached }
            if let resident { return Self.contains(resident, index) ? .cached : .none }
            switch unmappedHolding {
            case 0: return .none
            case unmapped: return .cached
            default: return .unknown
            }
        }

        /// Whether the sorted, disjoint `ranges` hold `index`.
        private static func contains(_ ranges: [Range<UInt64>], _ index: UInt64) -> Bool {
            var low = 0
            var high = ranges.count
            while low < high {
                let middle = (low + high) / 2
                if ranges[middle].upperBound <= index { low = middle + 1 } else { high = middle }
            }
            return low < ranges.count && ranges[low].contains(index)
        }

        func note(_ label: String) -> ScanNote? {
            guard resident == nil else { return nil }
            guard let holding = unmappedHolding else { return .hugetlbFileChanged(mapping: label) }
            guard holding != 0 && holding != unmapped else { return nil }
            return .hugetlbHoldingUnknown(mapping: label, holding: holding, unmapped: unmapped)
        }
    }

    /// The object's huge pages (indices) that the scanned parts of `indices` map as file pages.
    static func mappedHugePages(_ reports: [MappingReport], _ indices: [Int], pageSize: UInt64,
                                hugePageSize: UInt64) -> [Range<UInt64>] {
        var ranges: [Range<UInt64>] = []
        for index in indices {
            let mapping = reports[index].mapping
            for run in reports[index].runs where run.state == .present && run.flags.contains(.file) {
                ranges.append(hugePages(mapping, AddressRange(start: run.start, end: run.start + run.pages * pageSize),
                                        hugePageSize: hugePageSize))
            }
        }
        return merged(ranges)
    }

    /// The huge page indices of the object that `part` of `mapping` covers.
    static func hugePages(_ mapping: Mapping, _ part: AddressRange, hugePageSize: UInt64) -> Range<UInt64> {
        let offset = mapping.offset + (part.start - mapping.range.start)
        let end = offset + part.length
        return offset / hugePageSize..<(end + hugePageSize - 1) / hugePageSize
    }

    /// Sorted, joined where they touch or overlap.
    static func merged(_ ranges: [Range<UInt64>]) -> [Range<UInt64>] {
        var ranges = ranges
        ranges.sort { $0.lowerBound < $1.lowerBound }
        var merged: [Range<UInt64>] = []
        for range in ranges {
            if let last = merged.last, range.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        return merged
    }

    /// Replaces each pending run of `report` with what `settle(objectOffset, pages, emit)` emits
    /// (pages in order), and rebuilds the runs.
    private static func replacePending(
        _ report: inout MappingReport, pageSize: UInt64,
        _ settle: (_ offset: UInt64, _ pages: UInt64, _ emit: (UInt64, PageState) -> Void) -> Void
    ) {
        let mapping = report.mapping
        var builder = RunBuilder(pageSize: pageSize)
        for run in report.runs {
            guard run.flags.contains(.pendingFileSide) else {
                builder.append(run)
                continue
            }
            let flags = run.flags.subtracting(.pendingFileSide)
            var address = run.start
            settle(mapping.offset + (run.start - mapping.range.start), run.pages) { pages, state in
                builder.append(start: address, pages: pages, state: state, flags: flags)
                address += pages * pageSize
            }
        }
        report.runs = builder.runs
    }

    /// Drops `thp` from a hugetlb mapping's runs (joining runs it alone kept apart).
    private static func dropTHP(_ report: inout MappingReport, pageSize: UInt64) {
        guard report.runs.contains(where: { $0.flags.contains(.thp) }) else { return }
        var builder = RunBuilder(pageSize: pageSize)
        for var run in report.runs {
            run.flags.remove(.thp)
            builder.append(run)
        }
        report.runs = builder.runs
    }

    private static func label(_ mapping: Mapping) -> String {
        mapping.path.isEmpty ? mapping.range.description : "\(mapping.path) at \(mapping.range)"
    }

    private static func reason(_ error: PageStatError, mapping: Mapping) -> ScanNote {
        switch error {
        case .permissionDenied: .hugetlbMapFilesNeedsSysAdmin
        default: .hugetlbObjectNotOpened(mapping: label(mapping), error)
        }
    }
}
