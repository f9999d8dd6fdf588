import PageStat
extension SwapArea {
    /// Throws `.unsupported` when no swap area is active (/proc/swaps): `what` cannot make pages
    /// swap without one. The error says how to turn swap on.
    package static func require(for what: String, active: [Entry] = SwapArea.active()) throws(PageStatError) {
        guard active.isEmpty else { return }
        throw .unsupported("swap is off, and \(what) needs it: turn swap on (see `swapon --show`; as root: fallocate -l 1G F; chmod 600 F; mkswap F; swapon F)")
    }
}
