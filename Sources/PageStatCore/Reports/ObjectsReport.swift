/// A process that maps a shared object or holds it open.
public struct ObjectUser: Sendable, Hashable {
    public var pid: Int32
    public var command: String
    public var maps: Bool
    public var holdsOpen: Bool
    /// How many of the process's mappings map the object.
    public var mappings: Int = 0

    public init(pid: Int32, command: String, maps: Bool, holdsOpen: Bool, mappings: Int = 0) {
        self.pid = pid
        self.command = command
        self.maps = maps
        self.holdsOpen = holdsOpen
        self.mappings = mappings
    }
}

/// A shared-memory object, seen from its file side: "did someone write to this page, is it
/// swapped", independent of any one process's page table.
public struct SharedObject: Sendable {
    /// memfd, shared-anon, tmpfs or sysv.
    public var kind: String
    public var path: String
    public var id: ObjectID
    /// Its size (fstat(2) of the object opened), nil when it could not be opened (another user's
    /// object without CAP_SYS_ADMIN): unknown, never 0.
    public var size: UInt64?
    /// Pages in memory, swapped, and holes (never written, or beyond what was written); nil when
    /// the object could not be opened.
    public var resident: UInt64?
    public var swapped: UInt64?
    public var holes: UInt64?
    public var users: [ObjectUser]
    /// Why what is nil above is unknown (nil when everything was read).
    public var unknown: String? = nil

    public init(kind: String, path: String, id: ObjectID, size: UInt64?, resident: UInt64? = nil,
                swapped: UInt64? = nil, holes: UInt64? = nil, users: [ObjectUser], unknown: String? = nil) {
        self.kind = kind
        self.path = path
        self.id = id
        self.size = size
        self.resident = resident
        self.swapped = swapped
        self.holes = holes
        self.users = users
        self.unknown = unknown
    }
}

public struct ObjectsReport: Sendable {
    public var objects: [SharedObject]
    public var unreadable: Int
    public var notes: [ScanNote]
    /// The processes counted in `unreadable` and why, in pid order.
    public var unreadableProcesses: [UnreadableProcess] = []

    public init(objects: [SharedObject], unreadable: Int, notes: [ScanNote], unreadableProcesses: [UnreadableProcess] = []) {
        self.objects = objects
        self.unreadable = unreadable
        self.notes = notes
        self.unreadableProcesses = unreadableProcesses
    }
}
