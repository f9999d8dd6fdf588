#if canImport(Glibc)
import Glibc
#endif

/// A file or shmem object, by device and inode, as a maps line and stat(2) name it. Objects are
/// grouped by it, and an object opened for a mapping is checked against it.
public struct ObjectID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32
    public var inode: UInt64

    public init(deviceMajor: UInt32, deviceMinor: UInt32, inode: UInt64) {
        self.deviceMajor = deviceMajor
        self.deviceMinor = deviceMinor
        self.inode = inode
    }

    /// What a maps line says backs `mapping`.
    public init(_ mapping: Mapping) {
        self.init(deviceMajor: mapping.deviceMajor, deviceMinor: mapping.deviceMinor, inode: mapping.inode)
    }

    /// What fstat(2) says a descriptor is.
    package init(_ st: stat) {
        let dev = UInt64(st.st_dev)
        self.init(deviceMajor: Self.major(dev), deviceMinor: Self.minor(dev), inode: UInt64(st.st_ino))
    }

    /// glibc's major(3) and minor(3) of a dev_t.
    static func major(_ dev: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)) }
    static func minor(_ dev: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: (dev & 0xff) | ((dev >> 12) & ~0xff)) }

    public static func < (a: ObjectID, b: ObjectID) -> Bool {
        (a.deviceMajor, a.deviceMinor, a.inode) < (b.deviceMajor, b.deviceMinor, b.inode)
    }

    /// As maps prints a device (hexadecimal), and the inode.
    public var description: String {
        "\(String(deviceMajor, radix: 16)):\(String(deviceMinor, radix: 16)) inode \(inode)"
    }

    /// An object named for a note: its path and, since paths repeat ("/dev/zero (deleted)"), its
    /// device and inode as maps prints them.
    package func label(_ path: String) -> String {
        "\(path.isEmpty ? "[unnamed]" : path) (\(deviceMajor):\(deviceMinor) inode \(inode))"
    }
}
