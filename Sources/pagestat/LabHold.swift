import ArgumentParser
import PageStat
import PageStatRender
import PageStatLab

#if canImport(Glibc)
import Glibc
#endif

extension Pagestat.Lab {
    /// A process holding every page layout the scanner must get right (or one of a few special
    /// layouts), for end-to-end checks: the tests, `bench` and the kernel matrix point pagestat
    /// at it, and so may anyone who wants to see pagestat's answer on a layout known in advance.
    struct Hold: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hold",
            abstract: "Arrange every page layout pagestat must get right in a process and hold it until standard input closes.",
            discussion: """
            For end-to-end checks of pagestat on another process (the test suite, `pagestat \
            bench`, the kernel matrix use it): the layout is known in advance, so every page \
            pagestat reports can be compared with what was arranged.

            Maps, in this process: shared anonymous memory, a memfd, a /dev/shm file, a SysV \
            segment, private anonymous memory and a regular file, each PAGES pages, writes, \
            pwrite()s, pages out (MADV_PAGEOUT) and guards parts of them, prints one JSON line \
            with their addresses (and the process's pid), and keeps them until standard input \
            closes. Needs swap for the paged-out parts. --map, --repeated-mappings, \
            --hostile-name, --vanish and --vfork-exec arrange one special layout instead.

            Examples:
              # Hold the layouts while standard input stays open; scan them from elsewhere.
              sleep infinity | pagestat lab hold --pages 64 > layout.json &
              pagestat show --pid PID
            """
        )

        @Option(help: "Pages in each region (a multiple of 16).")
        var pages: Int = 64

        @Option(help: "Directory for the regular file (not tmpfs).")
        var fileDirectory: String = "/var/tmp"

        @Option(help: "Instead of the layouts, map this file (e.g. /proc/PID/fd/N) MAP_SHARED and read pages --read.")
        var map: String?

        @Option(help: "With --map: the pages to read, FIRST-END (end exclusive).")
        var read: String?

        @Option(help: "With --map: map only the file's pages FIRST-END (end exclusive), touching none of them.")
        var mapPages: String?

        @Option(help: ArgumentHelp("Instead of the layouts, map one memfd this many times, one page per mapping (see --object-pages).", valueName: "n"))
        var repeatedMappings: Int?

        @Option(help: ArgumentHelp("With --repeated-mappings: the memfd's pages (default: one per mapping); mapping i maps page i % PAGES. The first half of the pages is written, the first quarter paged out.", valueName: "pages"))
        var objectPages: Int?

        @Option(help: ArgumentHelp("Instead of the layouts, give hostile names (these bytes, in hex) to this process's comm, a memfd and two files in --file-directory.", valueName: "hex"))
        var hostileName: String?

        @Flag(help: "Instead of the layouts, map --pages pages of shared memory followed by a 16-page hole; unmap them on an 'unmap' line on standard input.")
        var vanish = false

        @Option(help: ArgumentHelp("Instead of the layouts (first): map --pages pages of private memory and write them, then vfork(2) a child that, still sharing them, waits for a byte on standard input and executes this program again with the same arguments but 'again' (with ASLR off, as under setarch -R, the same layout); that one (again) prints its pid and holds nothing.", valueName: "first|again"))
        var vforkExec: String?

        func run() throws {
            try reportingErrors { () throws(PageStatError) in
                if let map {
                    try mapOnly(map)
                } else if let repeatedMappings {
                    try mapRepeatedly(repeatedMappings, objectPages: objectPages ?? repeatedMappings)
                } else if let hostileName {
                    try hostileNames(hostileName)
                } else if vanish {
                    try vanishing()
                } else if let vforkExec {
                    try vforkAndExec(vforkExec)
                } else {
                    try arrange()
                }
            }
        }

        /// Names with every byte a hostile process may choose: the comm (prctl PR_SET_NAME, first
        /// 15 bytes), a memfd (mapped, `pages` pages, [0, pages/2) written), a tmpfs file `m`+NAME
        /// (mapped, the same) and a file `o`+NAME held open, never mapped ([0, 1) written).
        private func hostileNames(_ hex: String) throws(PageStatError) {
            let digits = Array(hex.utf8)
            guard digits.count % 2 == 0 else { throw .invalidInput("--hostile-name takes an even number of hex digits") }
            var name: [UInt8] = []
            for index in stride(from: 0, to: digits.count, by: 2) {
                guard let byte = UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) else {
                    throw .invalidInput("--hostile-name: not hex")
                }
                name.append(byte)
            }
            guard !name.isEmpty, !name.contains(0), !name.contains(0x2f) else {
                throw .invalidInput("--hostile-name: the name must be non-empty, without NUL or '/'")
            }
            let objects = try HostileNamedObjects(name: name, pages: pages, directory: fileDirectory)
            let memfd = objects.memfd, mapped = objects.mapped
            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            json.field("pages", pages)
            json.key("regions")
            json.beginObject()
            json.field("memfd", memfd.address)
            json.field("tmpfs", mapped.address)
            json.endObject()
            json.endObject()
            writeOut(json.output + "\n")
            waitForEOF()
            withExtendedLifetime(objects) {}
        }

        /// `pages` pages of shared anonymous memory, one page in 512 written, then a 16-page hole
        /// (never mapped by anyone: it was part of the mapping and is unmapped at once). On a line
        /// `unmap` on standard input, unmaps the pages and answers `unmapped`; holds on until EOF.
        private func vanishing() throws(PageStatError) {
            let mapping = try VanishingMapping(pages: pages)
            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            json.field("pages", pages)
            json.field("start", mapping.start)
            json.endObject()
            writeOut(json.output + "\n")
            var line: [UInt8] = []
            var byte: UInt8 = 0
            while !StandardOutput.lost && Glibc.read(0, &byte, 1) > 0 {
                guard byte == 0x0a else { line.append(byte); continue }
                if line == Array("unmap".utf8) {
                    mapping.unmap()
                    writeOut("unmapped\n")
                }
                line = []
            }
        }

        /// `first`: `pages` pages of private anonymous memory, written, and a vfork child sharing
        /// them that execs this program with `again` once a byte arrives on standard input (its
        /// pid: /proc/PID/task/PID/children). `again`: prints its pid. Both hold until EOF.
        private func vforkAndExec(_ generation: String) throws(PageStatError) {
            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            guard generation == "first" else {
                guard generation == "again" else { throw .invalidInput("--vfork-exec takes first or again") }
                json.field("generation", generation)
                json.endObject()
                writeOut(json.output + "\n")
                waitForEOF()
                return
            }
            let memory = try ArrangedMemory(pages: pages, backing: .privateAnonymous)
            memory.write(0..<pages)
            json.field("pages", pages)
            json.field("start", memory.address)
            json.endObject()
            writeOut(json.output + "\n")
            let child = try VforkExec.startAgain()
            waitForEOF()
            var status: Int32 = 0
            waitpid(child, &status, 0)
            withExtendedLifetime(memory) {}
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
            if let mapPages {
                let bounds = mapPages.split(separator: "-").compactMap { Int($0) }
                let pagesMapped = try MappedFilePages(path: path, pages: bounds.count == 2 && bounds[0] < bounds[1] ? bounds[0]..<bounds[1] : nil,
                                                      invalid: .invalidInput("--map-pages takes FIRST-END"))
                var json = JSONWriter()
                json.beginObject()
                json.field("pid", getpid())
                json.field("pages", bounds[1] - bounds[0])
                json.field("mapped", pagesMapped.address)
                json.endObject()
                writeOut(json.output + "\n")
                waitForEOF()
                withExtendedLifetime(pagesMapped) {}
                return
            }
            let file = try MappedFile(path: path)
            let memory = file.memory
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
            withExtendedLifetime(file) {}
        }

        private func waitForEOF() {
            guard !StandardOutput.lost else { return }  // nobody learns the layout: hold nothing
            var byte: UInt8 = 0
            while Glibc.read(0, &byte, 1) > 0 {}
        }

        private func arrange() throws(PageStatError) {
            let layout = try ArrangedLayout(pages: pages, fileDirectory: fileDirectory)
            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            json.field("pages", pages)
            json.field("page_size", ProcFS.pageSize)
            json.key("regions")
            json.beginObject()
            for region in ArrangedLayout.regionNames { json.field(region, layout.address(region) ?? 0) }
            json.endObject()
            json.key("paths")
            json.beginObject()
            json.field("memfd", "/proc/\(getpid())/fd/\(layout.memfd.fd ?? -1)")
            json.field("tmpfs", layout.shmPath)
            json.field("tmpfs-open", layout.openPath)
            json.field("file", layout.filePath)
            json.endObject()
            json.endObject()
            writeOut(json.output + "\n")
            // Hold everything until our parent closes standard input (or dies).
            waitForEOF()
            withExtendedLifetime(layout) {}
        }
    }
}
