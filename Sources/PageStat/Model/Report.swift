/// Where a swapped page's content sits: pagemap's swap type (bits 0-4) and offset (bits 5-54).
public struct SwapLocation: Sendable, Hashable {
    public var type: UInt8
    public var offset: UInt64
    public init(type: UInt8, offset: UInt64) {
        self.type = type
        self.offset = offset
    }
}

/// A maximal stretch of adjacent pages with the same state and flags.
public struct PageRun: Sendable, Hashable {
    /// First address of the run, in bytes.
    public var start: UInt64
    public var pages: UInt64
    public var state: PageState
    public var flags: PageFlags
    /// PFN of the first page, when the kernel gave PFNs (CAP_SYS_ADMIN) and the run is present.
    public var pfn: UInt64?
    /// Swap location of the first page, when the kernel gave it (private swap entries, privileged).
    public var swap: SwapLocation?

    public init(start: UInt64, pages: UInt64, state: PageState, flags: PageFlags,
                pfn: UInt64? = nil, swap: SwapLocation? = nil) {
        self.start = start
        self.pages = pages
        self.state = state
        self.flags = flags
        self.pfn = pfn
        self.swap = swap
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

/// One mapping and the runs that cover it exactly, in address order.
public struct MappingReport: Sendable {
    public var mapping: Mapping
    /// The part of the mapping that was scanned (the whole mapping unless a range was asked for).
    public var scanned: AddressRange
    public var runs: [PageRun]

    public init(mapping: Mapping, scanned: AddressRange, runs: [PageRun]) {
        self.mapping = mapping
        self.scanned = scanned
        self.runs = runs
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
    public var notes: [String]
    public var mappings: [MappingReport]

    public init(pid: Int32, pageSize: Int, privileged: Bool, view: ReportView, notes: [String],
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
