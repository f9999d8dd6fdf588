import Foundation
import Testing

@testable import PageStat
@testable import PageStatCore

/// Whether this process has a [vsyscall] mapping (kernels built with it, vsyscall not `none`).
private let hasVsyscall = ((try? ProcFS.readText("/proc/self/maps", pid: getpid(), what: "maps")) ?? "").contains("[vsyscall]")

@Suite("Notes that help: only for what the output shows, naming what could not be read")
struct HelpfulNoteTests {
    static let vsyscallNote = "[vsyscall]: unknown: it lies above the user address space"

    func occurrences(_ text: String, _ part: String) -> Int { text.components(separatedBy: part).count - 1 }

    /// The [vsyscall] note comes with the [vsyscall] mapping, and only then.
    @Test(.enabled(if: hasVsyscall, "this kernel maps no [vsyscall]"))
    func vsyscallNoteFollowsTheFilters() throws {
        let pid = String(getpid())
        let shown = try runPagestat(["show", pid])
        #expect(shown.status == 0, "\(shown.stderr)")
        #expect(occurrences(shown.stdout, Self.vsyscallNote) == 1, "\(shown.stdout)")
        let special = try runPagestat(["show", pid, "--kind", "special", "--format", "csv"])
        #expect(occurrences(special.stderr, Self.vsyscallNote) == 1, "\(special.stderr)")

        for arguments in [["show", pid, "--kind", "private-anon"], ["show", pid, "--path", "[stack]"],
                          ["show", pid, "--kind", "private-anon", "--format", "json"],
                          ["show", pid, "--kind", "private-anon", "--format", "csv"],
                          ["summary", pid, "--kind", "private-anon"], ["summary", pid, "--path", "[heap]", "--format", "json"],
                          ["map", pid, "--kind", "private-anon"], ["top", "-p", pid]] {
            let run = try runPagestat(arguments)
            #expect(run.status == 0, "\(arguments): \(run.stderr)")
            #expect(!run.stdout.contains(Self.vsyscallNote) && !run.stderr.contains(Self.vsyscallNote), "\(arguments): \(run.stdout)")
        }
    }

    /// summary --interval says a note once, not every round.
    @Test(.enabled(if: hasVsyscall, "this kernel maps no [vsyscall]"))
    func intervalRoundsSayANoteOnce() throws {
        let run = try runPagestat(["summary", String(getpid()), "--interval", "0.1", "--count", "3"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(occurrences(run.stdout, "\u{394}PRESENT") == 3, "\(run.stdout)")
        #expect(occurrences(run.stdout, Self.vsyscallNote) == 1, "\(run.stdout)")
    }

    /// As another user, root's processes cannot be read: `top` and `objects` say which, and why.
    @Test(.requires(TestEnvironment.isRoot, "root (to run pagestat as another user)"))
    func unreadableProcessesAreNamedWithTheirReason() throws {
        let fixture = try FixtureProcess(pages: 16)
        defer { fixture.stop() }
        let named = "note: process \(fixture.pid) (pagestat) could not be read: permission denied: /proc/\(fixture.pid)/"
        for command in ["top", "objects"] {
            let brief = try runPagestat([command], asUser: 65534)
            #expect(brief.status == 0, "\(command): \(brief.stderr)")
            let count = try #require(brief.stdout.split(separator: "\n").first { $0.contains("could not be read") && !$0.hasPrefix("note:") },
                                     "\(command): \(brief.stdout)")
            #expect(!count.contains("(permission)"), "\(count)")
            // Many root processes: a count, and where to find the list.
            let many = brief.stdout.split(separator: "\n").filter { $0.contains("could not be read") && $0.hasPrefix("note:") }
            #expect(many.count == 1 && many[0].hasSuffix("could not be read (all for permission): --verbose names each with its reason")
                    || many.count <= 3 && many.allSatisfy { $0.contains("permission denied") }, "\(command): \(many)")

            let verbose = try runPagestat([command, "--verbose"], asUser: 65534)
            #expect(verbose.status == 0, "\(command): \(verbose.stderr)")
            #expect(verbose.stdout.contains(named), "\(command) --verbose: \(verbose.stdout)")

            let json = try runPagestat([command, "--format", "json"], asUser: 65534)
            let object = try #require(try JSONSerialization.jsonObject(with: json.output) as? [String: Any])
            let listed = try #require(object["unreadable_processes"] as? [[String: Any]])
            let entry = try #require(listed.first { ($0["pid"] as? Int) == Int(fixture.pid) }, "\(command): \(listed)")
            #expect(entry["command"] as? String == "pagestat")
            #expect((entry["reason"] as? String)?.hasPrefix("permission denied: /proc/\(fixture.pid)/") == true, "\(entry)")
            #expect(listed.count == object["unreadable"] as? Int)
        }
        // Filters apply to the note: `top -p PID` names no process but PID, though many others
        // could not be read either.
        let one = try runPagestat(["top", "-p", String(fixture.pid), "--verbose"], asUser: 65534)
        #expect(one.status == 0, "\(one.stderr)")
        let notes = one.stdout.split(separator: "\n").filter { $0.hasPrefix("note: process ") }
        #expect(notes.count == 1 && notes[0].hasPrefix(named), "\(one.stdout)")
        #expect(one.stdout.contains("0 processes, 1 could not be read"), "\(one.stdout)")
    }
}
