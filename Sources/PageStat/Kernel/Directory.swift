#if canImport(Glibc)
import Glibc
#endif

/// A directory's entries: the one readdir(3) loop of the library.
package enum Directory {
    /// The names in `path`, in the order readdir gives them, `.` and `..` left out, each by its
    /// exact bytes (`NameBytes`); nil where the directory cannot be opened (`errno` says why).
    package static func names(_ path: String) -> [String]? {
        guard let dir = NameBytes.withCString(path, { opendir($0) }) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                NameBytes.decode(Array(raw.prefix(while: { $0 != 0 })))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
