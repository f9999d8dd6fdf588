#if canImport(Glibc)
import Glibc
#endif

/// Settles the unmapped pages of a whole-object shmem mapping from the object's own counters,
/// without walking it, where the counts leave no doubt:
/// - allocated pages D (st_blocks: resident, swapped and fallocated pages),
/// - swapped pages S (shmem's `info->swapped`, read from smaps for a mapping of our own),
/// - present pages P and pending pages U of this mapping (from its page table).
/// Resident pages are R = D - S and resident pages this process does not map are C = R - P.
/// With C = 0 every pending page is swapped or a hole; with S = 0 every one is cached or a hole;
/// S = U or C = U or S = C = 0 settles them all at once.
///
/// One cache serves one scan: how many of the process's mappings map each object is counted once,
/// on first use, so asking for every mapping stays linear in the mappings.
struct ObjectCountCache {
    enum Shortcut: Equatable {
        /// Every pending page has this state.
        case all(PageState)
        /// Pending pages are holes or data, and data means this.
        case data(FileSide.DataMode)
    }

    private let mappings: [Mapping]
    private var mappingsPerObject: [ObjectID: Int]?
    /// Present pages of whole mappings (by start), counted once per scan.
    private var presentInMapping: [UInt64: UInt64?] = [:]
    /// Each object's swapped pages (shmem's `info->swapped`, through our own smaps), read once
    /// per scan: reading our smaps walks every mapping of ours (3-6 ms here), and a large
    /// mapping is settled a wave at a time. A snapshot, as the page tables are.
    private var swappedInObject: [ObjectID: UInt64?] = [:]

    private mutating func swapped(_ object: PageCacheObject) -> UInt64? {
        guard let st = object.fd.status else { return try? object.swappedPagesFromSmaps() ?? nil }
        let id = ObjectID(st)
        if let known = swappedInObject[id] { return known }
        let swapped = try? object.swappedPagesFromSmaps()
        swappedInObject[id] = .some(swapped ?? nil)
        return swapped ?? nil
    }

    init(mappings: [Mapping]) {
        self.mappings = mappings
    }

    /// What the object's counts alone say about any of its pages that a page table leaves open:
    /// nothing allocated (all holes), nothing swapped (data is resident: cached), or nothing
    /// resident (data is swapped). nil where they leave a choice.
    mutating func objectShortcut(_ object: PageCacheObject) -> Shortcut? {
        // st_blocks first: an object never written needs no window and no smaps read.
        let allocated = object.allocatedPages
        if allocated == 0 { return .all(.none) }
        guard let swapped = swapped(object) else { return nil }
        if swapped == 0 { return .data(.cached) }
        if swapped >= allocated { return .data(.swapped) }
        return nil
    }

    /// How many of the process's mappings map object `id`.
    mutating func mappingCount(of id: ObjectID) -> Int {
        if mappingsPerObject == nil {
            var counts: [ObjectID: Int] = [:]
            for mapping in mappings { counts[ObjectID(mapping), default: 0] += 1 }
            mappingsPerObject = counts
        }
        return mappingsPerObject?[id] ?? 0
    }

    /// `presentPages`: the present pages of a whole mapping (PAGEMAP_SCAN), or nil where that
    /// cannot be counted; asked once per mapping, for parts of mappings only.
    mutating func shortcut(report: MappingReport, object: PageCacheObject, pageSize: UInt64,
                           presentPages: (Mapping) -> UInt64? = { _ in nil }) -> Shortcut? {
        let mapping = report.mapping
        let objectPages = (object.size + pageSize - 1) / pageSize
        guard mapping.kind.isShmem, mapping.isShared, object.isShmem, objectPages > 0 else { return nil }
        let wholeObject = mapping.offset == 0 && mapping.range.length / pageSize == objectPages
        // Part of a mapping (a range, a wave of a large one): its present pages are not all known
        // here. The object's own counts settle what a data page is where they leave no choice;
        // failing that, where this is the object's only mapping in the process, the mapping's
        // present pages counted apart tell whether the object holds resident pages it does
        // not map (if none, every data page left open is swapped).
        guard report.scanned == mapping.range, wholeObject else {
            if let shortcut = objectShortcut(object) { return shortcut }
            guard wholeObject, mappingCount(of: ObjectID(mapping)) == 1 else { return nil }
            if presentInMapping[mapping.range.start] == nil { presentInMapping[mapping.range.start] = .some(presentPages(mapping)) }
            guard let present = presentInMapping[mapping.range.start] ?? nil,
                  let swapped = swapped(object) else { return nil }
            let allocated = object.allocatedPages
            guard allocated >= swapped, allocated - swapped >= present, allocated - swapped == present else { return nil }
            // Every resident page is mapped here; if no page is a hole either, every page the
            // page table leaves open is swapped.
            return allocated >= objectPages ? .all(.swapped) : .data(.swapped)
        }
        // The only mapping of this object in the process, so its present pages are distinct object pages.
        let id = ObjectID(mapping)
        guard mappingCount(of: id) == 1 else { return nil }
        var present: UInt64 = 0
        var pending: UInt64 = 0
        for run in report.runs {
            if run.flags.contains(.pendingFileSide) {
                pending += run.pages
            } else if run.state == .present && !run.flags.contains(.nonSwapEntry) {
                present += run.pages
            } else {
                return nil  // guard pages, markers: pages the counts cannot place
            }
        }
        let allocated = object.allocatedPages
        if allocated == 0 { return .all(.none) }
        guard let swapped = swapped(object) else { return nil }
        guard allocated >= swapped, allocated - swapped >= present else { return nil }
        let cached = allocated - swapped - present
        guard swapped + cached <= pending else { return nil }
        switch (swapped, cached) {
        case (0, 0): return .all(.none)
        case (pending, 0): return .all(.swapped)
        case (0, pending): return .all(.cached)
        case (_, 0): return .data(.swapped)
        case (0, _): return .data(.cached)
        default: return nil
        }
    }
}
