import ArgumentParser
import PageStat

#if canImport(Glibc)
import Glibc
#endif

extension Pagestat {
    /// pagemap's own binary format, with swapped shared pages marked: what the 2021 patch would
    /// have given, minus the swap location.
    struct Raw: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "raw",
            abstract: "Write a process's pagemap entries for a range, swapped shared pages marked (binary).",
            discussion: """
            Writes one 8-byte entry per page of the range to standard output, exactly in \
            /proc/PID/pagemap's format (the kernel's byte order: little-endian on x86_64 and \
            arm64), so it fits where `dd if=/proc/PID/pagemap` did:
              bit 63 present, 62 swapped, 61 file page or shared anonymous, 58 guard,
              57 uffd-wp, 56 exclusive, 55 soft-dirty; bits 0-54 the PFN, or the swap
              type (bits 0-4) and offset (bits 5-54).

            Every entry is the kernel's own, except one kind: a page of shared memory (shared \
            anonymous, memfd, tmpfs or /dev/shm file, SysV shm) that is swapped out, which the \
            kernel reports as 0, carries bit 62 (swapped). Its swap type and offset stay 0: user \
            space cannot learn where in swap a shared page went. That is what the unmerged 2021 \
            patch would have reported, minus the location.

            Shared pages that are in memory but not mapped by the process (`cached` in \
            `pagestat show`) stay 0, as they did with that patch, which only looked for swap.

            The range is widened to whole pages (start rounded down, end rounded up). Every \
            page of it must lie in a mapping: otherwise raw writes nothing and exits 5, naming \
            the first part that is not mapped. A mapping that goes away while raw is writing \
            does not stop it: from then on the entries of its pages are what pagemap gives for \
            unmapped addresses (0), the output still has one entry per page of the range, and \
            a note on stderr names the part that was no longer mapped. A mapping replaced by \
            another while raw reads it stops raw before the first entry of the other mapping, \
            with one line naming both (exit 6). If the process exits or executes a new program, raw stops (exit 6).

            Finding the swapped shared pages needs root (/proc/PID/map_files); without it the \
            entries are the kernel's and a note on stderr says so. Like pagemap, it is a \
            snapshot taken while the process runs.

            --kernel writes the kernel's entries unchanged, to compare with.

            Examples:
              pagestat raw --pid 1234 --range 0x7f0000000000+1M | hexdump -C
              pagestat raw --pid 1234 --range 0x7f0000000000+1M --kernel | hexdump -C
              cmp <(pagestat raw --pid 1234 --range 0x7f0000000000+1M --kernel) \\
                  <(dd if=/proc/1234/pagemap bs=8 count=256 \\
                       skip=$((0x7f0000000000 / 4096)))
            """
        )

        @OptionGroup var process: ProcessOption

        @Option(help: ArgumentHelp("START-END (hexadecimal, 0x optional, as /proc/PID/maps writes it) or START+LENGTH (hex with 0x, or decimal; LENGTH may end in K, M, G or T), widened to whole pages.", valueName: "range"))
        var range: String

        @Flag(help: "The kernel's own entries, unchanged.")
        var kernel = false

        @OptionGroup var engineOption: EngineOption

        func validate() throws {
            do { _ = try AddressRange(parsing: range) } catch { throw ValidationError(error.description) }
        }

        func run() throws {
            let pid = try process.pid
            try reportingErrors { () throws(PageStatError) in
                guard isatty(1) == 0 else {
                    throw .invalidInput("refusing to write binary pagemap entries to a terminal: pipe them to `hexdump -C` or redirect them to a file")
                }
                let raw = try RawPagemap(pid: pid, engine: engineOption.engine)
                do throws(PageStatError) {
                    try raw.stream(try AddressRange(parsing: range), kernelOnly: kernel) { (bytes: UnsafeRawBufferPointer) throws(PageStatError) in
                        guard StandardOutput.write(bytes) else { throw .system(call: "write standard output", errno: .init(rawValue: errno)) }
                    }
                } catch .system(call: "write standard output", errno: _) {
                    return  // the exit says how output was lost (`StandardOutput`)
                }
                for note in raw.notes.all { printError("pagestat: note: \(escapedName(note.description))") }
            }
        }
    }
}
