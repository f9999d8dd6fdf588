#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// The PAGEMAP_SCAN ioctl on a pagemap descriptor (Linux 6.7+): page regions with equal
/// categories, merged by the kernel. It shares pagemap's gap for swapped shared memory.
package enum PagemapScan {
    /// PAGE_IS_* category bits.
    package struct Categories: OptionSet, Sendable, Hashable {
        package let rawValue: UInt64
        package init(rawValue: UInt64) { self.rawValue = rawValue }
        package static let wpAllowed = Categories(rawValue: CPagestat_PAGE_IS_WPALLOWED)
        package static let written = Categories(rawValue: CPagestat_PAGE_IS_WRITTEN)
        package static let file = Categories(rawValue: CPagestat_PAGE_IS_FILE)
        package static let present = Categories(rawValue: CPagestat_PAGE_IS_PRESENT)
        package static let swapped = Categories(rawValue: CPagestat_PAGE_IS_SWAPPED)
        package static let pfnZero = Categories(rawValue: CPagestat_PAGE_IS_PFNZERO)
        package static let huge = Categories(rawValue: CPagestat_PAGE_IS_HUGE)
        package static let softDirty = Categories(rawValue: CPagestat_PAGE_IS_SOFT_DIRTY)
        package static let guardRegion = Categories(rawValue: CPagestat_PAGE_IS_GUARD)
    }

    /// A `struct page_region`: `[start, end)` with its categories.
    package typealias Region = CPagestat_page_region

    /// Which categories the running kernel accepts in return_mask (unknown ones give EINVAL,
    /// a kernel without PAGEMAP_SCAN gives ENOTTY). Probed once per pagemap descriptor.
    package static func supportedCategories(fd: FileDescriptor) -> Categories {
        var supported = Categories()
        var region = Region()
        for bit in 0..<9 {
            let category = Categories(rawValue: 1 << UInt64(bit))
            var arg = CPagestat_pm_scan_arg()
            arg.size = UInt64(MemoryLayout<CPagestat_pm_scan_arg>.size)
            arg.start = 0
            arg.end = UInt64(ProcFS.pageSize)
            arg.vec_len = 1
            arg.return_mask = category.rawValue
            let result = withUnsafeMutablePointer(to: &region) { pointer in
                arg.vec = UInt64(UInt(bitPattern: pointer))
                return CPagestat_pagemap_scan(fd.rawValue, &arg)
            }
            if result >= 0 { supported.insert(category) } else if errno == ENOTTY { return [] }
        }
        return supported
    }

    /// The address of the first page in `[start, end)` with a page-table entry (present, or
    /// non-present and not empty: swap, migration, PTE marker), or nil when there is none.
    /// The kernel stops at the first such page (max_pages 1) and skips empty page tables
    /// whole, so the cost follows what is populated, never the size of the range.
    package static func firstPopulated(fd: FileDescriptor, pid: Int32, start: UInt64, end: UInt64) throws(PageStatError) -> UInt64? {
        var region = Region()
        var arg = CPagestat_pm_scan_arg()
        arg.size = UInt64(MemoryLayout<CPagestat_pm_scan_arg>.size)
        arg.start = start
        arg.end = end
        arg.vec_len = 1
        arg.max_pages = 1
        arg.category_anyof_mask = Categories.present.rawValue | Categories.swapped.rawValue
        arg.return_mask = 0
        let result = withUnsafeMutablePointer(to: &region) { pointer in
            arg.vec = UInt64(UInt(bitPattern: pointer))
            return retryingInterrupts { CPagestat_pagemap_scan(fd.rawValue, &arg) }
        }
        switch result {
        case .success(let count):
            return count > 0 ? max(start, region.start) : nil
        case .failure(.badAddress):
            return nil
        case .failure(let error):
            if ProcFS.exited(pid, failedWith: error) { throw .processExited(pid: pid) }
            throw .system(call: "ioctl PAGEMAP_SCAN /proc/\(pid)/pagemap", errno: error)
        }
    }

    /// Scans `[start, end)` and calls `body` with each batch of regions whose categories include
    /// all of `allOf` and meet `anyOf` (no condition when empty), reporting only `returnMask`.
    /// Loops on walk_end. The corresponding C call is `ioctl(fd, PAGEMAP_SCAN, &arg)`.
    package static func scan(fd: FileDescriptor, pid: Int32, start: UInt64, end: UInt64,
                            allOf: Categories = [], anyOf: Categories, returnMask: Categories,
                            buffer: UnsafeMutableBufferPointer<Region>,
                            _ body: (UnsafeBufferPointer<Region>) throws(PageStatError) -> Void) throws(PageStatError) {
        var next = start
        while next < end {
            var arg = CPagestat_pm_scan_arg()
            arg.size = UInt64(MemoryLayout<CPagestat_pm_scan_arg>.size)
            arg.start = next
            arg.end = end
            arg.vec = UInt64(UInt(bitPattern: buffer.baseAddress))
            arg.vec_len = UInt64(buffer.count)
            arg.category_mask = allOf.rawValue
            arg.category_anyof_mask = anyOf.rawValue
            arg.return_mask = returnMask.rawValue
            let result = retryingInterrupts { CPagestat_pagemap_scan(fd.rawValue, &arg) }
            switch result {
            case .success(let count):
                try body(UnsafeBufferPointer(rebasing: buffer[0..<Int(count)]))
                if arg.walk_end <= next { return }
                next = arg.walk_end
            case .failure(.badAddress):
                // Outside the user address space ([vsyscall]): nothing to report there.
                return
            case .failure(let error):
                if ProcFS.exited(pid, failedWith: error) { throw .processExited(pid: pid) }
                throw .system(call: "ioctl PAGEMAP_SCAN /proc/\(pid)/pagemap", errno: error)
            }
        }
    }
}
