#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// What this kernel and this privilege level give pagestat, each fact probed on the running
/// system (never read off a version number), with what its absence costs in truth or speed.
public struct HostFact: Sendable {
    /// A short name: `cachestat`, `PAGEMAP_SCAN`, ...
    public var name: String
    /// Whether it is there; nil where the fact is a setting rather than a feature.
    public var available: Bool?
    /// What was found.
    public var detail: String
    /// What pagestat does without it (empty when it is there).
    public var consequence: String
}

/// The probes behind `pagestat doctor`: each interface pagestat uses, tried on this system.
public enum HostFacts {
    /// Probes every fact, in the order a person would ask: who am I, what does the kernel
    /// offer, how is memory set up.
    public static func probe() -> [HostFact] {
        var facts: [HostFact] = []
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let machine = withUnsafeBytes(of: name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        facts.append(HostFact(name: "kernel", available: nil, detail: "Linux \(release) \(machine), \(ProcFS.pageSize)-byte pages", consequence: ""))

        let privileged = ProcFS.hasSysAdmin()
        facts.append(HostFact(
            name: "privilege", available: privileged,
            detail: privileged ? "pagemap gives PFNs and swap locations; /proc/PID/map_files opens"
                : "pagemap gives no PFNs or swap locations; /proc/PID/map_files does not open",
            consequence: privileged ? "" : "no PFNs, swap locations, PSS/USS or kernel page flags; memfd, shared anonymous and SysV pages that are not mapped are unknown (run as root)"))

        let categories: PagemapScan.Categories
        if let fd = try? FileDescriptor.open("/proc/self/pagemap", .readOnly, options: [.closeOnExec]) {
            categories = PagemapScan.supportedCategories(fd: fd)
            try? fd.close()
        } else {
            categories = []
        }
        let names: [(PagemapScan.Categories, String)] = [
            (.wpAllowed, "wpallowed"), (.written, "written"), (.file, "file"), (.present, "present"), (.swapped, "swapped"),
            (.pfnZero, "pfnzero"), (.huge, "huge"), (.softDirty, "soft-dirty"), (.guardRegion, "guard"),
        ]
        facts.append(HostFact(
            name: "PAGEMAP_SCAN", available: !categories.isEmpty,
            detail: categories.isEmpty ? "the ioctl is missing (Linux 6.7+)"
                : "categories: " + names.filter { categories.contains($0.0) }.map(\.1).joined(separator: ", "),
            consequence: categories.isEmpty ? "empty stretches are read entry by entry (a 64 TiB reservation costs about a minute, not milliseconds); no thp or zero-page flags without root" : ""))

        let cachestat = PageCacheObject.cachestatSupported
        facts.append(feature("cachestat", cachestat,
                                  yes: "cachestat(2) counts cached pages and swap entries",
                                  no: "cachestat(2) is missing (Linux 6.5+) or refused",
                                  cost: "swapped shared pages still in the swap cache are told apart by counting through pagestat's own smaps (slower); file dirty/writeback counts unknown"))

        let seekData = shmemSeekData()
        facts.append(feature("SEEK_DATA on shmem", seekData,
                                  yes: "lseek finds data and holes in memfd and tmpfs objects",
                                  no: "lseek SEEK_DATA does not skip shmem holes",
                                  cost: "every page of a shared object is asked one by one"))

        let smaps = (try? ProcFS.readText("/proc/self/smaps", pid: getpid(), what: "smaps")) ?? ""
        let smapsSwap = smaps.contains("\nSwap:")
        facts.append(feature("smaps Swap", smapsSwap,
                                  yes: "smaps counts swapped shmem pages per mapping",
                                  no: "no Swap lines in /proc/self/smaps",
                                  cost: "whole-object counts and the summary's cross-check are unavailable"))

        let btf = access("/sys/kernel/btf/vmlinux", R_OK) == 0
        facts.append(HostFact(
            name: "BTF", available: btf, detail: btf ? "/sys/kernel/btf/vmlinux" : "/sys/kernel/btf/vmlinux is missing (CONFIG_DEBUG_INFO_BTF)",
            consequence: btf ? "" : "the BPF engine cannot relocate its program: the syscalls engine answers"))
        let engine: String
        let bpf: Bool
        do {
            let walker = try XArrayWalker.shared()
            (bpf, engine) = (true, "loads: the page-cache xarray is read with a BPF iterator (\(walker.origin))")
        } catch {
            (bpf, engine) = (false, "\(error)")
        }
        facts.append(HostFact(
            name: "BPF engine", available: bpf, detail: engine,
            consequence: bpf ? "" : "no swap locations for swapped shared pages; fragmented shared memory costs an lseek per isolated swapped page"))

        let softDirty = smaps.contains(" sd ") || smaps.contains(" sd\n")
        facts.append(feature("soft-dirty", softDirty,
                                  yes: "pagemap bit 55 is tracked",
                                  no: "no 'sd' in VmFlags (CONFIG_MEM_SOFT_DIRTY off)",
                                  cost: "the soft-dirty flag never shows"))

        let uffd = userfaultfdWriteProtect()
        facts.append(feature("userfaultfd-wp", uffd,
                                  yes: "write-protect markers show as uffd-wp",
                                  no: "userfaultfd write-protect is not available here",
                                  cost: "none: pagestat only reports the markers it finds"))

        let guards = guardPages()
        facts.append(HostFact(
            name: "guard pages", available: guards,
            detail: guards ? "MADV_GUARD_INSTALL works (6.13+); guard pages show as none with flag guard" : "MADV_GUARD_INSTALL is not available",
            consequence: ""))

        let swaps = SwapArea.active()
        facts.append(HostFact(
            name: "swap", available: !swaps.isEmpty,
            detail: swaps.isEmpty ? "no swap area is on" : swaps.enumerated().map { "type \($0.offset): \($0.element.path) (\($0.element.type), \($0.element.usedKiB)/\($0.element.sizeKiB) KiB used)" }.joined(separator: "; "),
            consequence: swaps.isEmpty ? "nothing can be swapped out now; `pagestat demo` and the tests turn on a temporary swap file as root" : ""))
        facts += SwapSlotReader.facts()

        let zswap = readSetting("/sys/module/zswap/parameters/enabled")
        facts.append(HostFact(
            name: "zswap", available: nil, detail: zswap.map { $0 == "Y" ? "on" : "off" } ?? "not built",
            consequence: zswap == "Y" ? "pages in zswap are swapped, but their slots on the device hold no data until written back" : ""))

        let thp = readSetting("/sys/kernel/mm/transparent_hugepage/enabled") ?? "not built"
        let shmemTHP = readSetting("/sys/kernel/mm/transparent_hugepage/shmem_enabled") ?? "not built"
        var mthp: [String] = []
        for entryName in Directory.names("/sys/kernel/mm/transparent_hugepage") ?? [] {
            guard entryName.hasPrefix("hugepages-"),
                  let setting = readSetting("/sys/kernel/mm/transparent_hugepage/\(entryName)/shmem_enabled"),
                  !setting.contains("[never]") else { continue }
            mthp.append("\(entryName.dropFirst("hugepages-".count)): \(setting)")
        }
        facts.append(HostFact(
            name: "THP", available: nil,
            detail: "anonymous: \(thp); shmem: \(shmemTHP)" + (mthp.isEmpty ? "" : "; shmem mTHP " + mthp.sorted().joined(separator: ", ")),
            consequence: ""))

        let meminfo = (try? ProcFS.readText("/proc/meminfo", pid: getpid(), what: "/proc/meminfo")) ?? ""
        let hugeLines = meminfo.split(separator: "\n").filter { $0.hasPrefix("HugePages_Total") || $0.hasPrefix("HugePages_Free") || $0.hasPrefix("Hugepagesize") }
            .map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
        facts.append(HostFact(
            name: "hugetlbfs", available: nil,
            detail: (HugetlbFS.pageSizes.isEmpty ? "no huge page sizes" : hugeLines.joined(separator: ", ")),
            consequence: "hugetlb pages not mapped by a process are told only by count (st_blocks): unknown where the count cannot place them"))
        return facts
    }

    /// A feature that is there or not: what was found either way, and what its absence costs.
    private static func feature(_ name: String, _ available: Bool, yes: String, no: String, cost: String) -> HostFact {
        HostFact(name: name, available: available, detail: available ? yes : no, consequence: available ? "" : cost)
    }

    /// Which engine `--engine auto` uses here.
    public static func autoEngine(_ facts: [HostFact]) -> String {
        facts.first { $0.name == "BPF engine" }?.available == true
            ? "bpf for shared memory (swap locations included), syscalls for regular files"
            : "syscalls (the BPF engine does not load here)"
    }

    private static func readSetting(_ path: String) -> String? {
        guard let text = try? ProcFS.readText(path, pid: getpid(), what: path) else { return nil }
        return text.split(separator: "\n").first.map(String.init)
    }

    /// A memfd with data in its second page only: SEEK_DATA from 0 must land on that page.
    private static func shmemSeekData() -> Bool {
        let memfd = CPagestat_memfd_create("pagestat-probe", 1 /* MFD_CLOEXEC */)
        guard memfd >= 0 else { return false }
        let fd = FileDescriptor(rawValue: memfd)
        defer { try? fd.close() }
        let pageSize = Int64(ProcFS.pageSize)
        guard (try? fd.resize(to: 2 * pageSize)) != nil,
              (try? fd.writeAll(toAbsoluteOffset: pageSize, [UInt8(1)])) == 1 else { return false }
        return (try? fd.seek(offset: 0, from: .init(rawValue: CPagestat_SEEK_DATA))) == pageSize
    }

    private static func userfaultfdWriteProtect() -> Bool {
        withScratchPage { page, length in
            page.storeBytes(of: 1, as: UInt8.self)
            let uffd = CPagestat_uffd_writeprotect(page, length)
            guard uffd >= 0 else { return false }
            try? FileDescriptor(rawValue: uffd).close()
            return true
        }
    }

    private static func guardPages() -> Bool {
        withScratchPage { page, length in madvise(page, length, CPagestat_MADV_GUARD_INSTALL) == 0 }
    }

    /// Runs a probe on a private page of our own, unmapped after; false if it cannot be mapped.
    private static func withScratchPage(_ probe: (UnsafeMutableRawPointer, Int) -> Bool) -> Bool {
        let length = ProcFS.pageSize
        guard let page = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), page != MAP_FAILED else { return false }
        defer { munmap(page, length) }
        return probe(page, length)
    }
}
