/// Where a swapped page's content sits: pagemap's swap type (bits 0-4) and offset (bits 5-54).
public struct SwapLocation: Sendable, Hashable {
    public var type: UInt8
    public var offset: UInt64
    public init(type: UInt8, offset: UInt64) {
        self.type = type
        self.offset = offset
    }
}

/// A maximal stretch of adjacent pages with the same state and flags. 32 bytes: reports hold
/// one per run, and a fragmented 16 GiB mapping has millions.
public struct PageRun: Sendable, Hashable {
    /// First address of the run, in bytes.
    public var start: UInt64
    public var pages: UInt64
    // The private parts are usable from inline code: runs are built and joined across module
    // boundaries millions of times in a fragmented scan, and a call per accessor cost more than
    // the work.
    /// The PFN or the swap entry (offset << 5 | type) of the first page, per `detailKind`.
    @usableFromInline var detail: UInt64 = 0
    /// The kernel's page flags (documented bits 0-26); bit 31 says they were asked for.
    @usableFromInline var kernelFlagBits: UInt32 = 0
    public var flags: PageFlags
    public var state: PageState
    /// 0: no detail, 1: a PFN, 2: a swap location.
    @usableFromInline var detailKind: UInt8 = 0

    @inlinable
    public init(start: UInt64, pages: UInt64, state: PageState, flags: PageFlags,
                pfn: UInt64? = nil, swap: SwapLocation? = nil, kernelFlags: KPageFlags? = nil) {
        self.start = start
        self.pages = pages
        self.state = state
        self.flags = flags
        self.pfn = pfn
        if let swap { self.swap = swap }
        self.kernelFlags = kernelFlags
    }

    /// PFN of the first page, when the kernel gave PFNs (CAP_SYS_ADMIN) and the run is present.
    public var pfn: UInt64? {
        @inlinable get { detailKind == 1 ? detail : nil }
        @inlinable set {
            if let newValue { detail = newValue; detailKind = 1 } else if detailKind == 1 { detail = 0; detailKind = 0 }
        }
    }

    /// Swap location of the first page, when the kernel gave it (private swap entries, privileged).
    public var swap: SwapLocation? {
        @inlinable get { detailKind == 2 ? SwapLocation(pagemapBits: detail) : nil }
        @inlinable set {
            if let newValue {
                detail = newValue.pagemapBits
                detailKind = 2
            } else if detailKind == 2 { detail = 0; detailKind = 0 }
        }
    }

    /// The kernel's page flags (/proc/kpageflags), the same for every page of the run, when asked for.
    public var kernelFlags: KPageFlags? {
        @inlinable get { kernelFlagBits & (1 << 31) != 0 ? KPageFlags(rawValue: UInt64(kernelFlagBits & 0x7fff_ffff)) : nil }
        @inlinable set {
            kernelFlagBits = newValue.map { UInt32(truncatingIfNeeded: $0.rawValue & KPageFlags.documentedMask) | (1 << 31) } ?? 0
        }
    }

    /// Whether two runs agree on everything but position and first-page detail.
    @inline(__always)
    func continues(_ state: PageState, _ flags: PageFlags, _ kernelFlags: KPageFlags?) -> Bool {
        self.state == state && self.flags == flags && self.kernelFlags == kernelFlags
    }

    /// Whether `next` goes on from this run as part of it: the same state, flags and kernel
    /// flags, adjacent, and in swap the next slots of the same area (or neither has a location).
    /// A PFN does not matter: a run's PFN is its first page's.
    @inlinable
    func isContinued(by next: PageRun, pageSize: UInt64) -> Bool {
        guard state == next.state, flags == next.flags, kernelFlagBits == next.kernelFlagBits,
              start &+ pages &* pageSize == next.start else { return false }
        if next.detailKind == 2 {
            // offset << 5 | type: the same type (bits 0-4) and the offset `pages` on.
            return detailKind == 2 && detail &+ (pages << 5) == next.detail
        }
        return detailKind != 2
    }

    /// Whether the run has every flag named in `names` (pagestat's flags or the kernel's).
    public func has(flags wanted: PageFlags, kernelFlags wantedKernel: KPageFlags) -> Bool {
        flags.isSuperset(of: wanted) && (wantedKernel.isEmpty || (kernelFlags ?? []).isSuperset(of: wantedKernel))
    }
}

/// Page counts by state.
public struct PageCounts: Sendable, Hashable {
    public var present: UInt64 = 0
    public var swapped: UInt64 = 0
    public var cached: UInt64 = 0
    public var none: UInt64 = 0
    public var unknown: UInt64 = 0

    public init() {}

    public subscript(state: PageState) -> UInt64 {
        get {
            switch state {
            case .present: present
            case .swapped: swapped
            case .cached: cached
            case .none: none
            case .unknown: unknown
            }
        }
        set {
            switch state {
            case .present: present = newValue
            case .swapped: swapped = newValue
            case .cached: cached = newValue
            case .none: none = newValue
            case .unknown: unknown = newValue
            }
        }
    }

    public var total: UInt64 { present + swapped + cached + none + unknown }

    public static func += (lhs: inout PageCounts, rhs: PageCounts) {
        for state in PageState.allCases { lhs[state] += rhs[state] }
    }
}

/// Memory use of a mapping or process, in bytes: what smaps calls Rss, Pss and Swap, plus USS.
public struct MemoryUse: Sendable, Hashable {
    /// Present pages, the zero page left out (smaps does not count it either).
    public var rss: UInt64 = 0
    /// Proportional set size: each present page divided by the number of its mappers
    /// (/proc/kpagecount); nil without privilege.
    public var pss: UInt64?
    /// Unique set size: present pages mapped by this process alone; nil without privilege.
    public var uss: UInt64?
    /// Swapped pages, shared memory included.
    public var swap: UInt64 = 0
    /// Swapped pages of shared memory (shmem, shared anonymous memory, SysV).
    public var shmemSwap: UInt64 = 0
    /// Present pages that map the shared zero page (read, never written): counted present, left
    /// out of `rss` as smaps leaves them out.
    public var zeroPage: UInt64 = 0
    /// PSS kept with 12 fraction bits until the end, as smaps does.
    var pssScaled: UInt64 = 0
    var ussBytes: UInt64 = 0

    public init() {}

    /// Adds the mapcounts of a batch of pages (0 for pages not present or not counted).
    package mutating func addMapcounts(_ mapcounts: UnsafeBufferPointer<UInt64>, pageSize: UInt64) {
        for count in mapcounts where count > 0 {
            pssScaled += (pageSize << 12) / count
            if count == 1 { ussBytes += pageSize }
        }
    }

    /// Adds the mapcount sums of another part of the same mapping.
    package mutating func merge(mapcounts other: MemoryUse) {
        pssScaled += other.pssScaled
        ussBytes += other.ussBytes
    }

    /// Counts one run of the mapping (RSS, zero page, swap), as runs are handed on.
    package mutating func add(_ run: PageRun, pageSize: UInt64) {
        switch run.state {
        case .present where run.flags.contains(.zeroPage): zeroPage += run.pages * pageSize
        case .present: rss += run.pages * pageSize
        case .swapped: swap += run.pages * pageSize
        default: break
        }
    }

    /// Completes the counts of a mapping whose runs were all added: PSS and USS from the mapcount
    /// sums of a privileged pass, shared memory's swap.
    package mutating func finish(mapcounts: MemoryUse?, shmem: Bool) {
        if let mapcounts {
            pss = mapcounts.pssScaled >> 12
            uss = mapcounts.ussBytes
        }
        if shmem { shmemSwap = swap }
    }

    /// Totals from a mapping's runs, with the PSS and USS of a privileged pass.
    init(runs: [PageRun], pageSize: UInt64, mapcounts: MemoryUse?, shmem: Bool = false) {
        for run in runs {
            switch run.state {
            case .present where run.flags.contains(.zeroPage): zeroPage += run.pages * pageSize
            case .present: rss += run.pages * pageSize
            case .swapped: swap += run.pages * pageSize
            default: break
            }
        }
        if let mapcounts {
            pss = mapcounts.pssScaled >> 12
            uss = mapcounts.ussBytes
        }
        if shmem { shmemSwap = swap }
    }

    public static func += (lhs: inout MemoryUse, rhs: MemoryUse) {
        lhs.rss += rhs.rss
        lhs.swap += rhs.swap
        lhs.shmemSwap += rhs.shmemSwap
        lhs.zeroPage += rhs.zeroPage
        lhs.pss = lhs.pss.flatMap { a in rhs.pss.map { a + $0 } }
        lhs.uss = lhs.uss.flatMap { a in rhs.uss.map { a + $0 } }
    }
}

/// One mapping and the runs that cover it exactly, in address order.
public struct MappingReport: Sendable {
    public var mapping: Mapping
    /// The part of the mapping that was scanned (the whole mapping unless a range was asked for).
    public var scanned: AddressRange
    public var runs: [PageRun]
    /// RSS, PSS, USS and swap, when the scan was asked to count them.
    public var use: MemoryUse?

    public init(mapping: Mapping, scanned: AddressRange, runs: [PageRun], use: MemoryUse? = nil) {
        self.mapping = mapping
        self.scanned = scanned
        self.runs = runs
        self.use = use
    }

    public var counts: PageCounts {
        var counts = PageCounts()
        for run in runs { counts[run.state] += run.pages }
        return counts
    }
}

/// Which view a report shows: pagestat's joined truth, or the raw page table alone.
public enum ReportView: String, Sendable {
    /// Page table plus the objects' page caches: the true state of every page.
    case truth
    /// Only what /proc/PID/pagemap says; a swapped shared page reads as `none` here.
    case kernel
}

/// The state of every page of a process (or of the part asked for).
public struct ProcessReport: Sendable {
    public var pid: Int32
    public var pageSize: Int
    /// Whether the kernel gave us PFNs, swap locations and map_files (CAP_SYS_ADMIN).
    public var privileged: Bool
    public var view: ReportView
    /// What could not be known and why, what was skipped, what to beware of.
    public var notes: [ScanNote]
    public var mappings: [MappingReport]
    /// Where the scan's time went, phase by phase (seconds): `bench`'s profile, not part of the
    /// public model.
    package var timings: [(phase: String, seconds: Double)] = []

    public init(pid: Int32, pageSize: Int, privileged: Bool, view: ReportView, notes: [ScanNote],
                mappings: [MappingReport]) {
        self.pid = pid
        self.pageSize = pageSize
        self.privileged = privileged
        self.view = view
        self.notes = notes
        self.mappings = mappings
    }

    public var counts: PageCounts {
        var counts = PageCounts()
        for mapping in mappings { counts += mapping.counts }
        return counts
    }
}
