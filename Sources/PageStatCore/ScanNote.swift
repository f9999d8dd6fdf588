import SystemPackage

/// Something a scan could not read or chose to do differently, and what it costs: the reason for
/// every `unknown` page, a missing kernel interface, missing privilege, the engine that ran.
///
/// Reports carry these values (`ProcessReport.notes`, `ScanResult.notes`, and the notes of the
/// system and file views); `description` is the sentence pagestat prints for each. A case names
/// the situation in the kernel's words and carries what a program would act on: the mapping or
/// object (as its label: the path, or the address range of a nameless mapping), counts, and the
/// underlying `PageStatError`.
public enum ScanNote: Sendable, Hashable, CustomStringConvertible {
    /// Which pages of a file-backed or shared mapping its file side answers for.
    public enum FileSidePages: Sendable, Hashable {
        /// Shared memory (shmem): its swapped pages and pages in memory not mapped here.
        case sharedSwappedOrCached
        /// A file: its pages in the page cache not mapped here.
        case fileCached
    }

    /// A /proc/kpage* table of the kernel, indexed by page frame number.
    public enum KPageTable: Sendable, Hashable {
        /// /proc/kpageflags: the kernel's page flags.
        case kpageflags
        /// /proc/kpagecount: how many times each page is mapped (for PSS and USS).
        case kpagecount
    }

    // MARK: privilege and kernel interfaces

    /// Without CAP_SYS_ADMIN pagemap reports no PFNs and no swap locations, and a non-present
    /// entry of private memory is taken as swap.
    case notPrivileged
    /// /proc/kpageflags (and the PFNs that index it) need root: no kernel page flags.
    case kpageflagsNeedRoot
    /// A /proc/kpage* table could not be opened: what it gives (flags, or PSS and USS) is unknown.
    case kpageTableUnavailable(KPageTable, PageStatError)
    /// No cachestat(2) (Linux 6.5+): swapped shared pages in the swap cache are told from
    /// resident ones through pagestat's own smaps, more slowly.
    case cachestatMissing
    /// No PAGEMAP_SCAN with PAGE_IS_HUGE and PAGE_IS_PFNZERO (Linux 6.7+): no `thp` or
    /// zero-page flags.
    case pagemapScanFlagsMissing

    // MARK: engines

    /// The BPF engine answered the file side, as asked (`--engine bpf`).
    case bpfEngineAsAsked
    /// `auto`: the BPF engine could not load, so the syscalls engine answered for shared memory
    /// too (no swap locations).
    case bpfEngineUnavailable(PageStatError)
    /// Whole objects counted by the BPF engine, as asked (`objects --engine bpf`).
    case countedByBPFAsAsked
    /// A file counted by the BPF engine; without cachestat(2) its dirty and writeback pages are unknown.
    case countedByBPF(dirtyAndWritebackUnknown: Bool)
    /// No cachestat(2) (Linux 6.5+): pages counted by the BPF engine instead.
    case cachestatMissingCountedByBPF
    /// No cachestat(2) (Linux 6.5+) and the BPF engine could not load: page counts are unknown.
    case cachestatMissingAndBPFUnavailable(PageStatError)

    // MARK: unknown pages of a process

    /// A mapping above the user address space that pagemap covers ([vsyscall]): unknown.
    case aboveUserAddressSpace(mapping: String)
    /// Pages whose page-table entry is a migration, device or hwpoison entry: unknown.
    case nonSwapEntries(pages: UInt64)
    /// Mappings that changed during the scan (unmapped, remapped or replaced): unknown.
    case mappingsChanged(count: Int)
    /// A file this user neither owns nor may write: mincore(2) calls every page resident and
    /// cachestat(2) refuses, so the file side is unknown.
    case residencyHidden(FileSidePages)
    /// /proc/PID/map_files needs CAP_SYS_ADMIN: the file side is unknown.
    case mapFilesNeedsSysAdmin(FileSidePages, pid: Int32)
    /// The object behind `range` is not the one maps named: the file side there is unknown.
    case objectChanged(FileSidePages, range: AddressRange, detail: String)
    /// The object could not be opened: the file side is unknown.
    case objectNotOpened(FileSidePages, PageStatError)
    /// The file side of a mapping failed part way: its pages from there are unknown.
    case fileSideFailed(mapping: String, PageStatError)

    // MARK: hugetlb

    /// /proc/PID/map_files needs CAP_SYS_ADMIN: hugetlb pages not mapped here are unknown.
    case hugetlbMapFilesNeedsSysAdmin
    /// The hugetlbfs object could not be opened: its pages not mapped here are unknown.
    case hugetlbObjectNotOpened(mapping: String, PageStatError)
    /// maps named a hugetlbfs object that is not on hugetlbfs.
    case hugetlbObjectNotOnHugetlbfs(mapping: String)
    /// Which huge pages of the object the process maps elsewhere could not be told (no
    /// PAGEMAP_SCAN and a partial scan).
    case hugetlbMappedElsewhereUnknown(mapping: String)
    /// The hugetlbfs file changed while it was counted.
    case hugetlbFileChanged(mapping: String)
    /// `holding` of the `unmapped` huge pages not mapped here hold memory, but hugetlbfs tells
    /// no more than that count: which ones is unknown.
    case hugetlbHoldingUnknown(mapping: String, holding: UInt64, unmapped: UInt64)

    // MARK: raw pagemap

    /// pagemap ended early at `address` (past the user address space): `missing` entries fewer.
    case pagemapEnded(address: UInt64, missing: UInt64)
    /// `range` was unmapped while it was read: its entries from then on are 0.
    case unmappedWhileRead(AddressRange)

    // MARK: system views (objects, top)

    /// /proc/self/mountinfo could not be read: tmpfs files held open but not mapped are not listed.
    case mountinfoUnreadable(PageStatError)
    /// The probe memfd failed (`call`: memfd_create, or fstat of it): memfds held open but not
    /// mapped are not listed.
    case memfdProbeFailed(call: String, Errno)
    /// A process's maps could not be read (for `objects`).
    case processMapsUnreadable(pid: Int32, command: String, PageStatError)
    /// An object was opened but could not be counted (by cachestat(2), or the BPF walk).
    case objectNotCounted(object: String, byBPF: Bool, PageStatError)
    /// An object could not be opened: its pages are unknown.
    case objectNotOpenedForCount(object: String, PageStatError)
    /// Objects that could not be opened without root: their pages are unknown.
    case objectsNeedRoot(count: Int)
    /// /proc/sysvipc/shm could not be read: SysV segments are not listed.
    case sysvShmUnreadable(PageStatError)
    /// A process could not be read (for `top`).
    case processUnreadable(pid: Int32, command: String, PageStatError)
    /// A shared object could not be opened: its swapped pages are not counted (for `top`).
    case sharedObjectNotOpened(object: String, PageStatError)
    /// cachestat(2) failed on `stretches` stretches of a shared object (the first failure
    /// given): their swapped pages are not counted (for `top`).
    case cachestatFailed(object: String, stretches: Int, PageStatError)
    /// Shared objects that could not be opened without CAP_SYS_ADMIN: their swapped pages are
    /// not counted (for `top`).
    case sharedObjectsNeedSysAdmin(count: Int)

    public var description: String {
        switch self {
        case .notPrivileged:
            "not privileged (CAP_SYS_ADMIN): no PFNs or swap locations; a non-present page-table entry of private memory is taken as swap (it may be a PTE marker or migration entry)"
        case .kpageflagsNeedRoot:
            "kernel page flags are unknown: /proc/kpageflags and PFNs need root"
        case .kpageTableUnavailable(let table, let error):
            "\(table == .kpageflags ? "kernel page flags are" : "PSS and USS are") unknown: \(error)"
        case .cachestatMissing:
            "cachestat(2) is not available (Linux 6.5+): swapped shared pages still in the swap cache are told from resident ones by counting swap entries through pagestat's own smaps (slower)"
        case .pagemapScanFlagsMissing:
            "PAGEMAP_SCAN with PAGE_IS_HUGE and PAGE_IS_PFNZERO is not available (Linux 6.7+): no thp or zero-page flags"
        case .bpfEngineAsAsked:
            "file side: the BPF engine (the page-cache xarray through a BPF iterator), as asked"
        case .bpfEngineUnavailable(let error):
            "file side: the syscalls engine (the BPF engine could not load: \(error)); swapped shared pages carry no swap location"
        case .countedByBPFAsAsked:
            "pages counted by the BPF engine (the page-cache xarray), as asked"
        case .countedByBPF(let dirtyUnknown):
            "pages counted by the BPF engine (the page-cache xarray)"
                + (dirtyUnknown ? "; dirty and writeback are unknown without cachestat(2)" : "")
        case .cachestatMissingCountedByBPF:
            "cachestat(2) is not available (Linux 6.5+): pages counted by the BPF engine (the page-cache xarray)"
        case .cachestatMissingAndBPFUnavailable(let error):
            "cachestat(2) is not available (Linux 6.5+) and the BPF engine could not load (\(error)): page counts are unknown"
        case .aboveUserAddressSpace(let mapping):
            "\(mapping): unknown: it lies above the user address space that /proc/PID/pagemap covers (a page the kernel provides, with no page-table entry to read)"
        case .nonSwapEntries(let pages):
            "\(pages) page\(pages == 1 ? "" : "s") unknown: a migration, device or hwpoison entry in the page table (a page being moved, in device memory or lost), flagged non-swap-entry"
        case .mappingsChanged(let count):
            "\(count) mapping\(count == 1 ? "" : "s") changed during the scan (unmapped, remapped or replaced); their pages are unknown"
        case .residencyHidden(let pages):
            "\(pages.phrase) are unknown in files this user neither owns nor may write: mincore(2) reports every page of those resident and cachestat(2) refuses (run as root)"
        case .mapFilesNeedsSysAdmin(let pages, let pid):
            "\(pages.phrase) are unknown: opening /proc/\(pid)/map_files needs CAP_SYS_ADMIN (run as root)"
        case .objectChanged(let pages, let range, let detail):
            "\(pages.phrase) of \(range) are unknown: \(detail)"
        case .objectNotOpened(let pages, let error):
            "\(pages.phrase) are unknown where the object could not be opened: \(error)"
        case .fileSideFailed(let mapping, let error):
            "\(mapping): file side failed (\(error)); its pages there are unknown"
        case .hugetlbMapFilesNeedsSysAdmin:
            "hugetlb pages not mapped here are unknown: opening /proc/PID/map_files needs CAP_SYS_ADMIN (run as root)"
        case .hugetlbObjectNotOpened(let mapping, let error):
            "\(mapping): hugetlb pages not mapped here are unknown where the object could not be opened: \(error)"
        case .hugetlbObjectNotOnHugetlbfs(let mapping):
            "\(mapping): maps named a hugetlbfs object but the object is not on hugetlbfs; its unmapped pages are unknown"
        case .hugetlbMappedElsewhereUnknown(let mapping):
            "\(mapping): the huge pages this process maps elsewhere in this object could not be told (no PAGEMAP_SCAN, Linux 6.7+, and the scan covered part of it); its unmapped huge pages are unknown"
        case .hugetlbFileChanged(let mapping):
            "\(mapping): the hugetlbfs file changed while it was counted; its huge pages not mapped here are unknown"
        case .hugetlbHoldingUnknown(let mapping, let holding, let unmapped):
            "\(mapping): \(holding) of the \(unmapped) huge pages of this hugetlbfs file that this process does not map hold memory, but hugetlbfs tells no more than that count (no cachestat, SEEK_DATA calls every page data, mincore would need a mapping that takes huge pages): which ones is unknown"
        case .pagemapEnded(let address, let missing):
            "pagemap ended at 0x\(String(address, radix: 16)): \(missing) entries fewer than the range has pages (past the user address space)"
        case .unmappedWhileRead(let range):
            "\(range) was unmapped while the range was read: from then on its entries are what pagemap gives for unmapped addresses (0)"
        case .mountinfoUnreadable(let error):
            "tmpfs files held open but not mapped are not listed: /proc/self/mountinfo could not be read (\(error))"
        case .memfdProbeFailed(let call, let errno):
            "memfds held open but not mapped are not listed: \(call) failed (\(errno))"
        case .processMapsUnreadable(let pid, let command, let error):
            "process \(pid) (\(command)): its maps could not be read (\(error))"
        case .objectNotCounted(let object, let byBPF, let error):
            "\(object): its pages are unknown: \(byBPF ? "the BPF walk" : "cachestat(2)") failed (\(error))"
        case .objectNotOpenedForCount(let object, let error):
            "\(object): its pages are unknown: it could not be opened (\(error))"
        case .objectsNeedRoot(let count):
            "\(count) objects could not be opened (map_files and other processes' fds need root): their pages are unknown"
        case .sysvShmUnreadable(let error):
            "SysV segments are not listed: /proc/sysvipc/shm could not be read (\(error))"
        case .processUnreadable(let pid, let command, let error):
            "process \(pid) (\(command)) could not be read: \(error)"
        case .sharedObjectNotOpened(let object, let error):
            "\(object): could not be opened (\(error)): its swapped pages are not counted"
        case .cachestatFailed(let object, let stretches, let error):
            "\(object): cachestat(2) failed on \(stretches) of its stretches (\(error)): their swapped pages are not counted"
        case .sharedObjectsNeedSysAdmin(let count):
            "\(count) shared objects could not be opened (map_files needs CAP_SYS_ADMIN): their swapped pages are not counted"
        }
    }
}

extension ScanNote {
    /// The error a note carries (why something could not be read), nil for the others.
    public var error: PageStatError? {
        switch self {
        case .kpageTableUnavailable(_, let error), .bpfEngineUnavailable(let error),
             .cachestatMissingAndBPFUnavailable(let error), .objectNotOpened(_, let error),
             .fileSideFailed(_, let error), .hugetlbObjectNotOpened(_, let error),
             .mountinfoUnreadable(let error), .processMapsUnreadable(_, _, let error),
             .objectNotCounted(_, _, let error), .objectNotOpenedForCount(_, let error),
             .sysvShmUnreadable(let error), .processUnreadable(_, _, let error),
             .sharedObjectNotOpened(_, let error), .cachestatFailed(_, _, let error):
            error
        case .memfdProbeFailed(let call, let errno):
            .system(call: call, errno: errno)
        default:
            nil
        }
    }

    /// The label of the one mapping a note is about, when that mapping alone is its subject
    /// (`aboveUserAddressSpace`): the note belongs in an output only if the mapping does.
    public var mappingLabel: String? {
        if case .aboveUserAddressSpace(let mapping) = self { mapping } else { nil }
    }
}

extension Mapping {
    /// How notes name the mapping: its path, or its range when it has none.
    public var noteLabel: String { path.isEmpty ? range.description : path }
}

extension ScanNote.FileSidePages {
    var phrase: String {
        switch self {
        case .sharedSwappedOrCached: "swapped or cached shared pages"
        case .fileCached: "cached file pages"
        }
    }
}

/// A scan's notes in the order first said, each said once however often it comes up.
public struct Notes: Sendable {
    public private(set) var all: [ScanNote] = []
    private var seen = Set<ScanNote>()
    public init() {}
    public mutating func add(_ note: ScanNote) {
        if seen.insert(note).inserted { all.append(note) }
    }
}
