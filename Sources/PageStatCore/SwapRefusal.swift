import SystemPackage

/// Why the slots of a swap area cannot be read correctly from its device: each says which
/// backend and what to do.
public enum SwapRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    /// zswap is enabled (/sys/module/zswap/parameters/enabled): swapped pages may sit
    /// compressed in RAM, and their slots hold nothing.
    case zswapEnabled
    /// A swap file on a file system whose extents do not name the device's blocks (btrfs, NFS)
    /// or that is not known: its name, or its statfs magic in hex.
    case fileSystem(String)
    /// FIEMAP could not map the swap file's slots to its device: the failure, or an extent it
    /// cannot be read at (encoded, inline, unknown, unaligned, or a hole).
    case extentsUnmapped(path: String, detail: String)
    /// The block device could not be opened for direct reads (and, for a swap file, the file
    /// has unwritten extents or could not be opened for direct reads either).
    case deviceNotOpened(device: String, errno: Errno)

    public var description: String {
        switch self {
        case .zswapEnabled:
            "zswap is enabled: swapped pages may be compressed in RAM and not in their slots (turn zswap off: echo N > /sys/module/zswap/parameters/enabled)"
        case .fileSystem(let name):
            "a swap file on \(name), whose blocks cannot be located on a device (use a swap partition, zram, or a swap file on ext4 or xfs)"
        case .extentsUnmapped(let path, let detail):
            "the extents of swap file \(path) cannot be mapped to its device: \(detail)"
        case .deviceNotOpened(let device, let errno):
            "the device \(device) cannot be opened for direct reads: \(errno) (run as root; a swap file written in full, with dd rather than fallocate, is read through its file system instead)"
        }
    }
}
