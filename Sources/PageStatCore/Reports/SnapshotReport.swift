/// Where a snapshot took a stretch of pages from.
public enum SnapshotSource: Sendable, Hashable {
    /// Read from memory: process_vm_readv(2) of a page present in the target's page table, or
    /// pread(2) of a page resident in the object's page cache. Neither faults the page.
    case memory
    /// Read from the swap slot of the stretch's first page (the next pages in the next slots),
    /// with O_DIRECT from the swap area: the page stays in swap.
    case swap(SwapLocation)
    /// Swapped out while all zeros (the swap area's zeromap): zeros, no slot read.
    case zero
    /// Never touched: zeros.
    case hole
    /// A page of a file-backed mapping that is not in memory: the file holds it; not copied.
    case file
    /// Read through the mapping or the object, which swapped it in (only with
    /// `SnapshotOptions.allowSwapIn`, for swap areas that cannot be read).
    case swappedIn
    /// Not copied: the page kept moving while it was read, or could not be read. The reason says.
    case unsettled(String)
}

/// How many pages came from where.
public struct SnapshotTotals: Sendable, Hashable {
    /// Pages read from memory.
    public var memory: UInt64 = 0
    /// Pages read from their swap slots.
    public var swap: UInt64 = 0
    /// Swapped zero pages (zeromap): zeros, no slot read.
    public var zero: UInt64 = 0
    /// Pages never touched.
    public var holes: UInt64 = 0
    /// Pages of file-backed mappings left to the file.
    public var file: UInt64 = 0
    /// Pages read through the mapping or the object (`SnapshotOptions.allowSwapIn`).
    public var swappedIn: UInt64 = 0
    /// Pages not copied (see `SnapshotSource.unsettled`).
    public var unsettled: UInt64 = 0
    /// Pages found elsewhere than planned when checked after their read, and read again.
    public var replanned: UInt64 = 0
    /// Time spent on the pages read from swap slots: their slot states, the reads, and the
    /// check of their locations afterwards (monotonic nanoseconds).
    public var swapReadNanoseconds: UInt64 = 0
    /// Of `swapReadNanoseconds`, the time in the slot reads themselves (O_DIRECT preadv).
    public var slotIONanoseconds: UInt64 = 0

    public init() {}

    package mutating func add(_ source: SnapshotSource, _ pages: UInt64) {
        switch source {
        case .memory: memory += pages
        case .swap: swap += pages
        case .zero: zero += pages
        case .hole: holes += pages
        case .file: file += pages
        case .swappedIn: swappedIn += pages
        case .unsettled: unsettled += pages
        }
    }
}

extension SnapshotTotals {
    package func merged(_ other: SnapshotTotals) -> SnapshotTotals {
        var sum = self
        sum.memory += other.memory
        sum.swap += other.swap
        sum.zero += other.zero
        sum.holes += other.holes
        sum.file += other.file
        sum.swappedIn += other.swappedIn
        sum.unsettled += other.unsettled
        sum.replanned += other.replanned
        sum.swapReadNanoseconds += other.swapReadNanoseconds
        sum.slotIONanoseconds += other.slotIONanoseconds
        return sum
    }
}

/// What `pagestat snapshot` wrote: each image with the runs of pages it holds and where they came
/// from, the totals, and the swap-ins the machine did meanwhile.
public struct SnapshotManifest {
    /// One run of pages of an image.
    public struct Run {
        /// Its first address (a process) or byte offset (an object).
        public var start: UInt64
        /// Its byte offset in the image.
        public var imageOffset: UInt64
        public var pages: UInt64
        public var source: SnapshotSource
    }

    /// One image file.
    public struct Image {
        public var path: String
        /// The mapping it holds; nil for an object.
        public var mapping: Mapping?
        public var bytes: UInt64
        public var runs: [Run] = []

        public init(path: String, mapping: Mapping?, bytes: UInt64) {
            self.path = path
            self.mapping = mapping
            self.bytes = bytes
        }

        /// Adds a chunk's pages, joined to the last run where they continue it.
        public mutating func add(start: UInt64, pages: UInt64, source: SnapshotSource, imageOffset: UInt64, pageSize: UInt64) {
            if var last = runs.last, last.imageOffset + last.pages * pageSize == imageOffset,
               Self.continues(last.source, pages: last.pages, with: source) {
                last.pages += pages
                runs[runs.count - 1] = last
            } else {
                runs.append(Run(start: start, imageOffset: imageOffset, pages: pages, source: source))
            }
        }

        static func continues(_ source: SnapshotSource, pages: UInt64, with next: SnapshotSource) -> Bool {
            switch (source, next) {
            case let (.swap(location), .swap(nextLocation)):
                location.type == nextLocation.type && location.offset + pages == nextLocation.offset
            default:
                source == next
            }
        }
    }

    /// "pid 1234" or the object's path.
    public var target: String
    public var pageSize: UInt64
    public var images: [Image] = []
    public var totals = SnapshotTotals()
    /// The planned page states, as `show` counts them.
    public var planned: [PageState: UInt64] = [:]
    /// pswpin of /proc/vmstat during the snapshot.
    public var machineSwapIns: UInt64?
    /// pswpin of the target's memory cgroup during the snapshot, where it has one.
    public var cgroupSwapIns: UInt64?
    /// How the target was stopped ("cgroup freezer", "SIGSTOP"), if it was.
    public var frozen: String?
    public var seconds: Double = 0
    public var notes: [String] = []

    public init(target: String, pageSize: UInt64) {
        self.target = target
        self.pageSize = pageSize
    }
}
