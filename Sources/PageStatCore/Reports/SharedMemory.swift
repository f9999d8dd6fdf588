/// The kinds of shared memory: tmpfs and memfd files, shared anonymous memory, SysV segments.
public enum SharedMemoryKind: String, Sendable, CaseIterable, Comparable {
    case shmem
    case sharedAnon = "shared-anon"
    case sysv

    /// The kind of the object behind a shared mapping.
    package init(_ mapping: Mapping) {
        if mapping.path.hasPrefix("/SYSV") { self = .sysv } else if mapping.kind == .sharedAnon { self = .sharedAnon } else { self = .shmem }
    }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// Bytes of shared memory: in memory (the object's page cache) and swapped, of the pages some
/// process maps; and cached, the object's pages in memory that no process maps.
public struct SharedShare: Sendable, Hashable {
    /// A share of the pages in memory within the stretches of the object its processes map.
    public var resident: UInt64 = 0
    /// A share of the swapped pages within those stretches.
    public var swapped: UInt64 = 0
    /// A share of the object's pages in memory outside every process's mapping (written with
    /// write(2), or mapped once and unmapped since), split evenly among all the processes
    /// mapping the object: for each object, the mappers' `resident` and `cached` add up to its
    /// pages in memory. (Its swapped pages that no process maps are in its totals only.)
    public var cached: UInt64 = 0

    public init(resident: UInt64 = 0, swapped: UInt64 = 0, cached: UInt64 = 0) {
        self.resident = resident
        self.swapped = swapped
        self.cached = cached
    }

    public static func += (lhs: inout SharedShare, rhs: SharedShare) {
        lhs.resident += rhs.resident
        lhs.swapped += rhs.swapped
        lhs.cached += rhs.cached
    }
}

/// A shared object that `top` settled: its whole file side (cachestat over the object). An
/// object that scanned processes only hold open (a descriptor, no mapping) has no mappers.
public struct MappedObject: Sendable {
    public var kind: SharedMemoryKind
    /// The path maps shows.
    public var path: String
    public var id: ObjectID
    public var size: UInt64
    /// Bytes in memory and swapped, over the whole object (mapped or not).
    public var resident: UInt64
    public var swapped: UInt64
    /// How many processes map it (0: it is only held open).
    public var mappers: Int

    public init(kind: SharedMemoryKind, path: String, id: ObjectID, size: UInt64, resident: UInt64, swapped: UInt64, mappers: Int) {
        self.kind = kind
        self.path = path
        self.id = id
        self.size = size
        self.resident = resident
        self.swapped = swapped
        self.mappers = mappers
    }
}

/// Shared-memory objects of one kind, added up as `pagestat objects` lists them: every object
/// some scanned process maps or holds open, and (for SysV) the segments /proc/sysvipc/shm lists.
public struct ObjectTotals: Sendable, Hashable {
    /// Objects found, counted or not.
    public var objects: Int = 0
    /// Bytes in memory and in swap of those that could be counted.
    public var resident: UInt64 = 0
    public var swapped: UInt64 = 0
    /// Objects that could not be counted (not opened, or cachestat(2) failed): when there are
    /// any, `resident` and `swapped` are a lower bound.
    public var uncounted: Int = 0

    public init(objects: Int = 0, resident: UInt64 = 0, swapped: UInt64 = 0) {
        self.objects = objects
        self.resident = resident
        self.swapped = swapped
    }
}

/// A process that exists but whose address space (/proc/PID/maps, smaps or pagemap) could not
/// be read, and why.
public struct UnreadableProcess: Sendable, Hashable {
    public var pid: Int32
    /// Its comm (/proc/PID/comm), "?" when that could not be read either.
    public var command: String
    public var reason: PageStatError

    public init(pid: Int32, command: String, reason: PageStatError) {
        self.pid = pid
        self.command = command
        self.reason = reason
    }
}
