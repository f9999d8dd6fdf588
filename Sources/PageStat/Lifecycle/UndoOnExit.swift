import CPagestat

#if canImport(Glibc)
import Glibc
#endif

/// What a command changed on the host (a temporary swap file, a sysctl), put back on every way
/// out: the command's own path, `exit`, a write error's exit, and the signals that end a process
/// (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, ...). SIGKILL cannot be caught.
///
/// The mechanism is the C shim's (`CPagestat_undo_*`): sigaction handlers that only call
/// swapoff, unlink, open, write and close on strings copied in at registration, then let the
/// signal end the process as it would have.
package enum UndoOnExit {
    /// One registered action.
    package struct Action: Sendable {
        package let slot: Int32
        /// What it does, for an error: "swapoff and unlink PATH".
        package let what: String

        /// Runs it now, unless a signal or an earlier call ran it: nil, or the failure.
        @discardableResult
        package func run() -> PageStatError? {
            let failure = CPagestat_undo_run(slot)
            return failure == 0 ? nil : .system(call: what, errno: .init(rawValue: failure))
        }

        /// Forgets it without running it.
        package func cancel() { CPagestat_undo_cancel(slot) }
    }

    /// swapoff(2) and unlink(2) of `path` on exit.
    package static func swapFile(_ path: String) throws(PageStatError) -> Action {
        CPagestat_undo_install()
        let slot = CPagestat_undo_swap_file(path)
        guard slot >= 0 else { throw .system(call: "register \(path) for removal at exit", errno: .init(rawValue: errno)) }
        return Action(slot: slot, what: "swapoff and unlink \(path)")
    }

    /// Writing `content` to `path` (a /proc/sys file) on exit.
    package static func write(_ content: String, to path: String) throws(PageStatError) -> Action {
        CPagestat_undo_install()
        let slot = CPagestat_undo_write_file(path, content)
        guard slot >= 0 else { throw .system(call: "register \(path) for restoring at exit", errno: .init(rawValue: errno)) }
        return Action(slot: slot, what: "write \(path)")
    }

    /// unlink(2) of `path` on exit: a temporary file that must not outlive the command.
    static func unlink(_ path: String) throws(PageStatError) -> Action {
        CPagestat_undo_install()
        let slot = CPagestat_undo_unlink(path)
        guard slot >= 0 else { throw .system(call: "register \(path) for removal at exit", errno: .init(rawValue: errno)) }
        return Action(slot: slot, what: "unlink \(path)")
    }

    /// kill(pid, SIGCONT) on exit: resumes a process this command stopped.
    static func continueProcess(_ pid: Int32) throws(PageStatError) -> Action {
        CPagestat_undo_install()
        let slot = CPagestat_undo_continue_process(pid)
        guard slot >= 0 else { throw .system(call: "register process \(pid) for resuming at exit", errno: .init(rawValue: errno)) }
        return Action(slot: slot, what: "resume process \(pid) (SIGCONT)")
    }

    /// Runs every registered action: for an exit path that ends the process without `exit`
    /// (`_exit`, or raising a signal whose handler was reset).
    package static func runAll() { CPagestat_undo_run_all() }
}
