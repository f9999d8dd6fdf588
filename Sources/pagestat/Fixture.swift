import ArgumentParser
import CPagestat
import PageStat

#if canImport(Glibc)
import Glibc
#endif

extension Pagestat {
    /// A process with one of every layout the scanner must get right, for end-to-end tests.
    struct Fixture: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Arrange every page layout in this process and wait (for tests).",
            discussion: """
            Maps, in this process: shared anonymous memory, a memfd, a /dev/shm file, a SysV \
            segment, private anonymous memory and a regular file, each PAGES pages, writes, \
            pwrite()s, pages out (MADV_PAGEOUT) and guards parts of them, prints one JSON line \
            with their addresses, and keeps them until standard input closes. Needs swap for the \
            paged-out parts.
            """,
            shouldDisplay: false
        )

        @Option(help: "Pages in each region (a multiple of 16).")
        var pages: Int = 64

        @Option(help: "Directory for the regular file (not tmpfs).")
        var fileDirectory: String = "/var/tmp"

        @Option(help: "Instead of the layouts, map this file (e.g. /proc/PID/fd/N) MAP_SHARED and read pages --read.")
        var map: String?

        @Option(help: "With --map: the pages to read, FIRST-END (end exclusive).")
        var read: String?

        @Option(help: ArgumentHelp("Instead of the layouts, map one memfd this many times, one page per mapping (see --object-pages).", valueName: "n"))
        var repeatedMappings: Int?

        @Option(help: ArgumentHelp("With --repeated-mappings: the memfd's pages (default: one per mapping); mapping i maps page i % PAGES. The first half of the pages is written, the first quarter paged out.", valueName: "pages"))
        var objectPages: Int?

        func run() throws {
            try reportingErrors { () throws(PageStatError) in
                if let map {
                    try mapOnly(map)
                } else if let repeatedMappings {
                    try mapRepeatedly(repeatedMappings, objectPages: objectPages ?? repeatedMappings)
                } else {
                    try arrange()
                }
            }
        }

        /// One memfd mapped `count` times: pages [0, P/2) written (at least one), [0, P/4) paged out.
        private func mapRepeatedly(_ count: Int, objectPages: Int) throws(PageStatError) {
            let memory = try RepeatedMappings(mappings: count, objectPages: objectPages, name: "pagestat-repeated")
            let written = max(1, objectPages / 2)
            let swapped = objectPages / 4
            memory.write(0..<written)
            try memory.pageOut(0..<swapped)
            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            json.field("mappings", count)
            json.field("pages", objectPages)
            json.field("written", written)
            json.field("paged_out", swapped)
            json.field("start", memory.address)
            json.field("memfd", "/proc/\(getpid())/fd/\(memory.fd)")
            json.endObject()
            writeOut(json.output + "\n")
            waitForEOF()
            withExtendedLifetime(memory) {}
        }

        /// Maps another process's object and reads some of its pages: a second mapper.
        private func mapOnly(_ path: String) throws(PageStatError) {
            let fd = open(path, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { throw .system(call: "open \(path)", errno: .init(rawValue: errno)) }
            defer { close(fd) }
            var st = stat()
            fstat(fd, &st)
            let memory = try ArrangedMemory(pages: Int(st.st_size) / ProcFS.pageSize, backing: .file(fd: fd, shared: true))
            if let read {
                let bounds = read.split(separator: "-").compactMap { Int($0) }
                guard bounds.count == 2 else { throw .invalidInput("--read takes FIRST-END") }
                _ = memory.read(bounds[0]..<bounds[1])
            }
            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            json.field("pages", memory.pages)
            json.field("mapped", memory.address)
            json.endObject()
            writeOut(json.output + "\n")
            waitForEOF()
        }

        private func waitForEOF() {
            var byte: UInt8 = 0
            while Glibc.read(0, &byte, 1) > 0 {}
        }

        private func arrange() throws(PageStatError) {
            let q = pages / 4
            // Shared anonymous: [0,q) written then paged out, [q,2q) written, rest untouched.
            let sharedAnon = try ArrangedMemory(pages: pages, backing: .sharedAnonymous)
            sharedAnon.write(0..<2 * q)
            try sharedAnon.pageOut(0..<q)
            // memfd: [0,q) pwrite only, [q,2q) written, [2q,3q) written then paged out, rest untouched.
            let memfd = try ArrangedMemory(pages: pages, backing: .memfd(name: "pagestat-fixture", shared: true))
            try arrangeShmemFile(memfd, q: q)
            // A /dev/shm (tmpfs) file, the same layout; unlinked right away, kept open by the mapping.
            let shmPath = "/dev/shm/pagestat-fixture-\(getpid())"
            let shmFD = try createFile(shmPath)
            defer { close(shmFD); unlink(shmPath) }
            let tmpfs = try ArrangedMemory(pages: pages, backing: .file(fd: shmFD, shared: true))
            try arrangeShmemFile(tmpfs, q: q)
            // A /dev/shm file held open but never mapped: [0,q) written with pwrite.
            let openPath = "/dev/shm/pagestat-fixture-open-\(getpid())"
            let openFD = try createFile(openPath)
            defer { close(openFD); unlink(openPath) }
            var openBlock = [UInt8](repeating: 0x11, count: ProcFS.pageSize)
            for page in 0..<q {
                openBlock[0] = UInt8(truncatingIfNeeded: page)
                _ = openBlock.withUnsafeBytes { pwrite(openFD, $0.baseAddress, $0.count, off_t(page * ProcFS.pageSize)) }
            }
            // SysV shared memory: [0,q) written then paged out, [q,2q) written, rest untouched.
            let shmid = shmget(IPC_PRIVATE, pages * ProcFS.pageSize, IPC_CREAT | 0o600)
            guard shmid >= 0 else { throw .system(call: "shmget", errno: .init(rawValue: errno)) }
            guard let sysv = shmat(shmid, nil, 0), sysv != UnsafeMutableRawPointer(bitPattern: -1) else {
                shmctl(shmid, IPC_RMID, nil)
                throw .system(call: "shmat", errno: .init(rawValue: errno))
            }
            shmctl(shmid, IPC_RMID, nil)
            defer { shmdt(sysv) }
            for page in 0..<2 * q { sysv.storeBytes(of: 0x33, toByteOffset: page * ProcFS.pageSize, as: UInt8.self) }
            if madvise(sysv, q * ProcFS.pageSize, CPagestat_MADV_PAGEOUT) != 0 {
                throw .system(call: "madvise", errno: .init(rawValue: errno))
            }
            // Private anonymous: [0,q) written then paged out, [q,2q) written, [2q,3q) read (zero
            // page), [3q,3q+q/2) guard pages, rest untouched.
            let privateAnon = try ArrangedMemory(pages: pages, backing: .privateAnonymous)
            privateAnon.write(0..<2 * q)
            try privateAnon.pageOut(0..<q)
            _ = privateAnon.read(2 * q..<3 * q)
            try privateAnon.installGuard(3 * q..<3 * q + q / 2)
            // A regular file: [0,q) cached by pread, [2q,3q) mapped and read, the rest dropped from
            // the cache. Readahead is off (FADV_RANDOM, MADV_RANDOM) and the gaps keep fault-around
            // from mapping the pread pages.
            let filePath = "\(fileDirectory)/pagestat-fixture-\(getpid()).data"
            let fileFD = open(filePath, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
            guard fileFD >= 0 else { throw .system(call: "open \(filePath)", errno: .init(rawValue: errno)) }
            defer { close(fileFD); unlink(filePath) }
            var block = [UInt8](repeating: 0x77, count: ProcFS.pageSize)
            for page in 0..<pages {
                guard block.withUnsafeBytes({ pwrite(fileFD, $0.baseAddress, $0.count, off_t(page * ProcFS.pageSize)) }) == ProcFS.pageSize else {
                    throw .system(call: "pwrite", errno: .init(rawValue: errno))
                }
            }
            fsync(fileFD)
            posix_fadvise(fileFD, 0, 0, POSIX_FADV_DONTNEED)
            posix_fadvise(fileFD, 0, 0, POSIX_FADV_RANDOM)
            for page in 0..<q {
                _ = block.withUnsafeMutableBytes { pread(fileFD, $0.baseAddress, $0.count, off_t(page * ProcFS.pageSize)) }
            }
            let file = try ArrangedMemory(pages: pages, backing: .file(fd: fileFD, shared: false))
            try file.advise(0..<pages, MADV_RANDOM)
            _ = file.read(2 * q..<3 * q)

            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            json.field("pages", pages)
            json.field("page_size", ProcFS.pageSize)
            json.key("regions")
            json.beginObject()
            json.field("shared-anon", sharedAnon.address)
            json.field("memfd", memfd.address)
            json.field("tmpfs", tmpfs.address)
            json.field("sysv", UInt64(UInt(bitPattern: sysv)))
            json.field("private-anon", privateAnon.address)
            json.field("file", file.address)
            json.endObject()
            json.key("paths")
            json.beginObject()
            json.field("memfd", "/proc/\(getpid())/fd/\(memfd.fd ?? -1)")
            json.field("tmpfs", shmPath)
            json.field("tmpfs-open", openPath)
            json.field("file", filePath)
            json.endObject()
            json.endObject()
            writeOut(json.output + "\n")
            // Hold everything until our parent closes standard input (or dies).
            waitForEOF()
        }

        /// A new file of `pages` pages (a hole), open read-write; the caller unlinks it.
        private func createFile(_ path: String) throws(PageStatError) -> Int32 {
            let fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw .system(call: "open \(path)", errno: .init(rawValue: errno)) }
            guard ftruncate(fd, off_t(pages * ProcFS.pageSize)) == 0 else {
                let error = errno
                close(fd)
                unlink(path)
                throw .system(call: "ftruncate \(path)", errno: .init(rawValue: error))
            }
            return fd
        }

        private func arrangeShmemFile(_ memory: ArrangedMemory, q: Int) throws(PageStatError) {
            try memory.pwrite(0..<q)
            memory.write(q..<3 * q)
            try memory.pageOut(2 * q..<3 * q)
        }
    }
}
