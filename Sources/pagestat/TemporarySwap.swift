import PageStat
import PageStatLab
import PageStatRender

extension TemporarySwap {
    /// Makes sure swap is on (`TemporarySwap.enable`), and says which through `say` (standard
    /// output by default).
    static func ensure(directory: String, bytes: UInt64, always: Bool = false,
                       say: (String) -> Void = writeOut) throws(PageStatError) {
        switch try enable(directory: directory, bytes: bytes, always: always) {
        case .using(let paths):
            say("Swap: using \(paths.map { escapedName($0) }.joined(separator: ", ")).\n\n")
        case .turnedOn(let path, let bytes, let noneWasOn):
            say("Swap: \(noneWasOn ? "none was on; turned" : "turned") on a temporary \(humanBytes(bytes)) swap file \(escapedName(path)) (removed at exit).\n\n")
        }
    }

    /// Turns off and removes the temporary swap file, saying on standard error why it could not.
    static func removeSaying() {
        if let failure = remove() { printError("pagestat: \(escapedName(failure.description))") }
    }
}
