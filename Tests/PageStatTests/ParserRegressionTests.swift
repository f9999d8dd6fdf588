import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// A file of the fuzzing corpus (Fixtures/corpus), as bytes.
func corpusBytes(_ name: String) throws -> [UInt8] {
    let url = try #require(Bundle.module.url(forResource: "Fixtures/corpus/\(name)", withExtension: nil), "\(name)")
    return Array(try Data(contentsOf: url))
}

func corpusText(_ name: String) throws -> String { String(decoding: try corpusBytes(name), as: UTF8.self) }

/// What the fuzzing found, pinned on corpus files: each of these parsed wrongly or trapped before.
@Suite("Parser fixes on corpus files")
struct ParserRegressionTests {
    @Test func mapsPathsAsTheKernelWritesThem() throws {
        // Captured from /proc/self/maps over four shared file mappings. The kernel escapes only a
        // newline (\012); tab, backslash, bytes that are not UTF-8 and trailing spaces stand as they are.
        let maps = parseMaps(try corpusBytes("maps/real-odd-names.txt"), shmemDevices: [])
        #expect(maps.map(\.path) == ["/tmp/esc2/gone\\012file (deleted)",
                                     "/tmp/esc2/ends in space ",  // was trimmed to "…space"
                                     "/tmp/esc2/tab\tback\\slash \u{10FFFF}\u{10FFFE}",
                                     "/tmp/esc2/new\\012line"])
        #expect(maps.map(\.inode) == [16220191, 16220190, 16220189, 16220186])
        #expect(maps.allSatisfy { $0.kind == .file && $0.isShared && $0.deviceMajor == 0xfe })
    }

    @Test func mapsNumbersBeyond64BitsAreRejected() throws {
        // An inode of 2^64 + 3 trapped: 1844674407370955161 * 10 fits, adding 9 did not.
        let maps = parseMaps(try corpusBytes("maps/inode-overflow.txt"))
        #expect(maps.map(\.path) == ["/max-inode"])
        #expect(maps.first?.inode == .max)
    }

    @Test func mapsLinesWithImpossibleFieldsAreSkipped() throws {
        // Inverted and empty ranges (AddressRange.length would trap later), permissions that are
        // not [r-][w-][x-][sp] (a 0xff byte was taken for one), a major number beyond 32 bits
        // (was truncated to another device).
        let maps = parseMaps(try corpusBytes("maps/invalid-fields.txt"))
        #expect(maps.map(\.range) == [AddressRange(start: 0xa000, end: 0xb000)])
    }

    @Test func truncatedMapsLines() throws {
        let maps = parseMaps(try corpusBytes("maps/truncated.txt"))
        #expect(maps.map(\.path) == ["/x"])
    }

    @Test func smapsValuesBeyond64Bits() throws {
        // `Rss: 99999999999999999999 kB` wrapped around; `Swap: 18014398509481984 kB` trapped
        // when turned into bytes. Both are left out now; `SwapPss:` without a value too.
        let entries = parseSmaps(try corpusBytes("smaps/kb-overflow.txt"))
        #expect(entries.count == 1)
        #expect(entries.first?.fields == ["Pss": 4096])
        #expect(entries.first?.vmFlags == ["rd", "wr"])
        let real = parseSmaps(try corpusBytes("smaps/real-odd-name.txt"))
        #expect(real.count == 1 && real.first?["Size"] == 4096 && real.first?["Rss"] == 0)
        #expect(real.first?.vmFlags.contains("sh") == true)
    }

    @Test func mountinfoEscapes() throws {
        // A mount point with a space, backslash and tab (from a private mount namespace), one with
        // a newline and optional tags, a source of "-", a device beyond 32 bits, truncated lines.
        let text = try corpusText("mountinfo/real-escapes.txt")
        #expect(ProcMaps.shmemDevices(mountinfo: text) == [ProcMaps.Device(major: 0, minor: 39), ProcMaps.Device(major: 0, minor: 40)])
    }

    @Test func swapsPathsAreUnescaped() throws {
        // Captured with a swap file named "pagestat fuzz\esc.swap": /proc/swaps wrote
        // `pagestat\040fuzz\134esc.swap`, which was taken as the path.
        let swaps = SwapArea.parse(try corpusText("swaps/real-escapes.txt"))
        #expect(swaps == [
            SwapArea.Entry(path: "/var/tmp/pagestat-session.swap", type: "file", sizeKiB: 4194300, usedKiB: 208, priority: -2),
            SwapArea.Entry(path: "/var/tmp/pagestat fuzz\\esc.swap", type: "file", sizeKiB: 1020, usedKiB: 0, priority: -3),
        ])
        #expect(ProcEscape.unescape("a\\040b\\134\\011\\012\\08\\400\\") == "a b\\\t\n\\08\\400\\")
    }

    @Test func sysvRowsBeyond64BitsOrCutShortAreSkipped() throws {
        let segments = SysVShm.parse(try corpusText("sysvipc-shm/odd-rows.txt"))
        #expect(segments == [SysVShm.Segment(key: -1, shmid: 44, size: 4096, attachments: 1, rss: 4096, swap: 0)])
    }
}

/// cgroup v1, v2 and a v1 container, from /proc/self/mountinfo and /proc/self/cgroup text.
@Suite("Memory cgroup hierarchies, v1 and v2")
struct CgroupLayoutTests {
    @Test func hybridV1WithTheMemoryController() throws {
        // This machine: v1 controllers under /sys/fs/cgroup, an empty cgroup2 at .../unified.
        let hierarchy = MemoryCgroup.locate(mountinfo: try corpusText("mountinfo/cgroup-v1-hybrid.txt"),
                                            selfCgroup: try corpusText("cgroup/self-v1-hybrid.txt"))
        #expect(hierarchy?.version == .v1)
        #expect(hierarchy?.mountPoint == "/sys/fs/cgroup/memory")
        #expect(hierarchy?.current == "/process_api/e831855ebc877c2780f8a88089fc0b2d")
    }

    @Test func unifiedV2() throws {
        let hierarchy = MemoryCgroup.locate(mountinfo: try corpusText("mountinfo/cgroup-v2.txt"),
                                            selfCgroup: try corpusText("cgroup/self-v2.txt"))
        #expect(hierarchy == MemoryCgroup.Hierarchy(version: .v2, mountPoint: "/sys/fs/cgroup",
                                                    current: "/user.slice/user-1000.slice/session-2.scope"))
        // v2 alone: the v1 lines of a hybrid /proc/self/cgroup do not matter.
        #expect(MemoryCgroup.locate(mountinfo: try corpusText("mountinfo/cgroup-v2.txt"),
                                    selfCgroup: try corpusText("cgroup/self-v1-hybrid.txt"))?.current == "/")
    }

    @Test func v1ContainerSeesASubtree() throws {
        // Docker without a cgroup namespace mounts /docker/ID of the hierarchy at .../memory;
        // /proc/self/cgroup names the full path, which is the mount point itself.
        let hierarchy = MemoryCgroup.locate(mountinfo: try corpusText("mountinfo/cgroup-v1-container.txt"),
                                            selfCgroup: try corpusText("cgroup/self-v1-container.txt"))
        #expect(hierarchy == MemoryCgroup.Hierarchy(version: .v1, mountPoint: "/sys/fs/cgroup/memory", current: "/"))
    }

    @Test func escapedMountPoint() {
        let mountinfo = "40 1 0:27 / /sys/fs/my\\040cgroup rw shared:4 - cgroup2 cgroup2 rw\n"
        #expect(MemoryCgroup.locate(mountinfo: mountinfo, selfCgroup: "0::/a b\n")
            == MemoryCgroup.Hierarchy(version: .v2, mountPoint: "/sys/fs/my cgroup", current: "/a b"))
    }

    @Test func thisMachinesHierarchyIsWhatTheFilesystemSays() throws {
        // Whatever this machine runs, the located mount point holds that version's control files.
        let hierarchy = try MemoryCgroup.locate()
        switch hierarchy.version {
        case .v1:
            #expect(access(hierarchy.mountPoint + "/memory.limit_in_bytes", F_OK) == 0, "\(hierarchy)")
        case .v2:
            #expect(access(hierarchy.mountPoint + "/cgroup.controllers", F_OK) == 0, "\(hierarchy)")
            #expect(access(hierarchy.mountPoint + "/memory.limit_in_bytes", F_OK) != 0, "\(hierarchy)")
        }
        #expect(access(hierarchy.mountPoint + (hierarchy.current == "/" ? "" : hierarchy.current) + "/cgroup.procs", F_OK) == 0,
                "this process's own cgroup is a directory of that hierarchy: \(hierarchy)")
    }
}
