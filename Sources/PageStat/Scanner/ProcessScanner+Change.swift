#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// Detecting change: after each wave, maps is read again through the pinned descriptor, and a
/// piece whose mapping no longer stands as it was comes back `unknown`.
extension ProcessScanner {
    /// Checks the address space (exit or exec throws), reads maps again and turns every piece of
    /// `reports` whose mapping changed since into one `unknown` run; a mapping that stands under a
    /// new name takes it. Returns the indices of the pieces that changed.
    func unstandingPieces(_ reports: inout [MappingReport]) throws(PageStatError) -> [Int] {
        var changed: [Int] = []
        try checkAddressSpace()
        let now = try readMappings()
        if now.isEmpty { throw .processExited(pid: pid) }
        for (index, standing) in Self.standing(reports.map(\.mapping), now: now).enumerated() {
            if let standing {
                // The same object under a new name (renamed, unlinked): opened by the name
                // maps gives it now, where it is opened by path.
                reports[index].mapping.path = now[standing].path
                continue
            }
            changed.append(index)
            let part = reports[index].scanned
            reports[index].runs = [PageRun(start: part.start, pages: part.length / pageSize, state: .unknown, flags: [])]
        }
        return changed
    }

    /// Indices of `before` whose line no longer stands in `now` (both in address order).
    /// A mapping stands when one mapping of `now` still covers all of it the same way: the same
    /// permissions, object (device, inode) and offset at its start (`Mapping.covers`). One that
    /// only grew, or merged with a new neighbour, or whose file was renamed, still maps the same
    /// pages the same way; one unmapped, moved, shrunk, reprotected or replaced does not.
    static func changedMappings(_ before: [Mapping], now: [Mapping]) -> [Int] {
        let found = standing(before, now: now)
        return found.indices.filter { found[$0] == nil }
    }

    /// For each mapping of `before`, the index of the mapping of `now` that covers it the same
    /// way (see `changedMappings`), or nil where it changed.
    static func standing(_ before: [Mapping], now: [Mapping]) -> [Int?] {
        var found: [Int?] = []
        found.reserveCapacity(before.count)
        var cursor = 0
        for mapping in before {
            // The last mapping of `now` that starts at or below this one's start.
            while cursor + 1 < now.count && now[cursor + 1].range.start <= mapping.range.start { cursor += 1 }
            found.append(cursor < now.count && now[cursor].covers(mapping) ? cursor : nil)
        }
        return found
    }
}
