import Testing

@testable import PageStat
@testable import PageStatCore

/// The one mountinfo parser, on fixture text: names as the kernel escapes them, optional fields,
/// super options, lines cut short.
@Suite("mountinfo")
struct MountInfoTests {
    @Test func escapedNamesAndOptionalFields() throws {
        let mounts = MountInfo.parse(try corpusText("mountinfo/real-escapes.txt"))
        // The device beyond 32 bits and the two lines cut short are skipped.
        #expect(mounts.count == 2)
        #expect(mounts[0] == MountInfoEntry(
            deviceMajor: 0, deviceMinor: 39, root: "/", mountPoint: "/tmp/esc/m p\\q\tt", mountOptions: ["rw", "relatime"],
            optionalFields: [], fileSystemType: "tmpfs", source: "my src", superOptions: ["rw"]))
        #expect(mounts[1] == MountInfoEntry(
            deviceMajor: 0, deviceMinor: 40, root: "/", mountPoint: "/run/a\nb", mountOptions: ["rw"],
            optionalFields: ["shared:5", "master:1"], fileSystemType: "tmpfs", source: "-", superOptions: ["rw"]))
    }

    @Test func hugetlbfsPageSizesAndTags() throws {
        let text = try corpusText("mountinfo/hugetlbfs-and-tags.txt")
        let mounts = MountInfo.parse(text)
        #expect(mounts.map(\.fileSystemType) == ["ext4", "hugetlbfs", "hugetlbfs", "hugetlbfs", "tmpfs"])
        #expect(mounts[2].mountPoint == "/mnt/huge 1g")
        #expect(mounts[2].optionalFields == ["shared:13", "master:2", "propagate_from:1", "unbindable"])
        #expect(mounts.map { $0.superOption("pagesize") } == [nil, "2M", "1024M", nil, nil])
        #expect(mounts[4].root == "/vm ram" && mounts[4].mountPoint == "/srv/guest\\ram" && mounts[4].source == "guest ram")
        #expect(mounts[4].superOption("size") == "4096k" && mounts[4].superOption("siz") == nil)
        // Both readers of the mount table go through it.
        #expect(HugetlbFS.devices(mountinfo: text, defaultPageSize: 4 << 20) == [
            ProcMaps.Device(major: 0, minor: 39): 2 << 20, ProcMaps.Device(major: 0, minor: 40): 1 << 30,
            ProcMaps.Device(major: 0, minor: 41): 4 << 20,
        ])
        #expect(ProcMaps.shmemDevices(mountinfo: text) == [ProcMaps.Device(major: 0, minor: 42)])
    }

    @Test func theMachinesOwnFixture() throws {
        let mounts = MountInfo.parse(try TestEnvironment.fixture("mountinfo.txt"))
        #expect(mounts.count == 12)
        #expect(mounts.filter { $0.fileSystemType == "cgroup" }.map(\.superOptions) == [["rw", "cpu"], ["rw", "cpuacct"]])
        #expect(mounts.first { $0.mountPoint == "/" }?.source == "/dev/vda")
    }
}
