import CPagestat
import Foundation
import PageStatRender
import Testing

@testable import PageStat
@testable import PageStatCore
@testable import PageStatLab

/// What the target does while it is read: a mapping replaced under `raw`, a mapped file renamed
/// between two reads of maps. Arranged on this very process, between the library's steps.
@Suite("Target changes while it is read: replaced mappings, renamed files")
struct TargetChangeTests {
    /// A mapped file renamed (and then unlinked) between two reads of maps: the same mapping
    /// (device, inode, offset, range, permissions), only the path text changed.
    @Test func renamedFileIsTheSameMapping() throws {
        let pages = 16
        let pageSize = TestEnvironment.pageSize
        let path = "/var/tmp/pagestat-rename-\(getpid())"
        let renamed = path + "-renamed"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        try #require(fd >= 0, "create \(path)")
        defer { close(fd); unlink(path); unlink(renamed) }
        try #require(ftruncate(fd, off_t(pages * pageSize)) == 0)
        let memory = try ArrangedMemory(pages: pages, backing: .file(fd: fd, shared: true))
        memory.write(0..<pages / 2)
        func ours() throws -> [Mapping] {
            try ProcMaps.read(pid: getpid()).filter { $0.range.overlaps(memory.range) }
        }
        let before = try ours()
        try #require(before.count == 1 && before[0].path == path)
        try #require(rename(path, renamed) == 0)
        let now = try ours()
        try #require(now.count == 1 && now[0].path == renamed, "maps names the new path")
        #expect(ProcessScanner.changedMappings(before, now: now).isEmpty, "a rename is not a change of the mapping")
        #expect(ProcessScanner.standing(before, now: now) == [0])
        try #require(unlink(renamed) == 0)
        let deleted = try ours()
        #expect(deleted.first?.path == renamed + " (deleted)")
        #expect(ProcessScanner.changedMappings(before, now: deleted).isEmpty, "nor is an unlink")
        // Another file mapped in its place is.
        let other = "/var/tmp/pagestat-rename-other-\(getpid())"
        let otherFD = open(other, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        try #require(otherFD >= 0)
        defer { close(otherFD); unlink(other) }
        try #require(ftruncate(otherFD, off_t(pages * pageSize)) == 0)
        let base = UnsafeMutableRawPointer(bitPattern: UInt(memory.address))!
        try #require(mmap(base, pages * pageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, otherFD, 0) == base)
        #expect(ProcessScanner.changedMappings(before, now: try ours()) == [0])
        withExtendedLifetime(memory) {}
    }
}
