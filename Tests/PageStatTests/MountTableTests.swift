import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

@Suite("Mount table: a mount made after the first look is seen")
struct MountTableTests {
    @Test(.requires(TestEnvironment.isRoot, "root to mount")) func tmpfsMountedLaterIsShmem() throws {
        let directory = NSTemporaryDirectory() + "pagestat-mount-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = MountTable.devices(pid: getpid())  // cached before the mount
        guard mount("tmpfs", directory, "tmpfs", 0, "size=1m") == 0 else {
            Issue.record("mount tmpfs: \(String(cString: strerror(errno)))")
            return
        }
        defer { umount2(directory, 0) }
        var st = stat()
        #expect(stat(directory, &st) == 0)
        let id = ObjectID(st)
        let device = ProcMaps.Device(major: id.deviceMajor, minor: id.deviceMinor)
        #expect(MountTable.devices(pid: getpid()).shmem.contains(device))
        umount2(directory, 0)
        #expect(!MountTable.devices(pid: getpid()).shmem.contains(device))
    }
}
