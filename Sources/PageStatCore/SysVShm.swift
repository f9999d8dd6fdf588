/// SysV shared memory segments as /proc/sysvipc/shm lists them, with the kernel's own rss and
/// swap: the parser, pure (`SysVShm.segments()` in the library reads the file).
public enum SysVShm {
    /// One segment: one line of /proc/sysvipc/shm.
    public struct Segment: Sendable, Equatable {
        /// The IPC key (`IPC_PRIVATE` is 0).
        public var key: Int64
        /// The id shmget(2) returned; a SysV mapping's inode in maps.
        public var shmid: UInt64
        /// Its size in bytes.
        public var size: UInt64
        /// How many attaches it has (`nattch`).
        public var attachments: UInt64
        /// Resident bytes, as the kernel counts them.
        public var rss: UInt64
        /// Swapped bytes, as the kernel counts them.
        public var swap: UInt64
    }

    /// Parses /proc/sysvipc/shm: a header naming the columns, then one segment per line.
    public static func parse(_ text: String) -> [Segment] {
        let lines = text.split(separator: "\n")
        guard let header = lines.first else { return [] }
        let columns = header.split(separator: " ").map(String.init)
        func column(_ name: String) -> Int? { columns.firstIndex(of: name) }
        guard let key = column("key"), let shmid = column("shmid"), let size = column("size"),
              let nattch = column("nattch"), let rss = column("rss"), let swap = column("swap") else { return [] }
        return lines.dropFirst().compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count == columns.count, let k = Int64(fields[key]), let id = UInt64(fields[shmid]),
                  let bytes = UInt64(fields[size]), let attached = UInt64(fields[nattch]),
                  let resident = UInt64(fields[rss]), let swapped = UInt64(fields[swap]) else { return nil }
            return Segment(key: k, shmid: id, size: bytes, attachments: attached, rss: resident, swap: swapped)
        }
    }
}
