#if canImport(Glibc)
import Glibc
#endif
import CPagestat

extension XArrayWalker {
    /// The BPF program pinned in bpffs for later runs: what stays on the host, and its removal.
    ///
    /// As root, where bpffs is mounted at /sys/fs/bpf, the first load pins the program and its
    /// shared map (bpf(BPF_OBJ_PIN)) under /sys/fs/bpf/pagestat/xarray-<object hash>-<kernel
    /// release>-<kernel build id>/ (directories mode 0700, pins 0600, all root's). A pin is
    /// used only after it is checked: root's alone, the right program (an iter/task_file tracing
    /// program named xw_task_file, loaded by root) with the right map; one that fails a check is
    /// removed and replaced, and pins of other objects or kernels are removed by the next pin.
    /// bpffs lives in memory: a reboot removes every pin. pagestat never mounts bpffs itself.
    package enum Pin {
        /// The bpffs mount pins go under: /sys/fs/bpf, or PAGESTAT_BPF_PIN_ROOT (tests point it at
        /// a bpffs of their own; "off" loads with libbpf every run and pins nothing).
        package static var root: String {
            if let value = getenv("PAGESTAT_BPF_PIN_ROOT") { return String(cString: value) }
            return "/sys/fs/bpf"
        }

        /// Whether loads may use and make pins (PAGESTAT_BPF_PIN_ROOT is not "off" or empty).
        package static var enabled: Bool { root != "off" && !root.isEmpty }

        /// pagestat's directory under the bpffs mount.
        package static var directory: String { root + "/pagestat" }

        /// Whether `root` is a bpffs mount.
        package static var mounted: Bool { enabled && CPagestat_xw_is_bpffs(root) != 0 }

        /// The pin directory this object and the running kernel use.
        package static var currentName: String? {
            var name = [CChar](repeating: 0, count: 256)
            guard CPagestat_xw_pin_name(&name, name.count) == 0 else { return nil }
            return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }

        /// One entry of pagestat's directory in bpffs.
        package struct Entry: Sendable, Equatable {
            package var path: String
            /// This object's pin on the running kernel (later runs use it); otherwise a stale
            /// one, or a run's private directory.
            package var current: Bool
        }

        /// What pagestat keeps in bpffs now.
        package static func entries() -> [Entry] {
            guard enabled, let dir = opendir(directory) else { return [] }
            defer { closedir(dir) }
            let current = currentName
            var entries: [Entry] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                guard name != "." && name != ".." else { continue }
                entries.append(Entry(path: directory + "/" + name, current: name == current))
            }
            return entries.sorted { $0.path < $1.path }
        }

        /// Removes pagestat's directory in bpffs with every pin in it (running commands keep the
        /// program they hold; the next run loads and pins it again). Nil, or why it failed.
        package static func removeAll() -> String? {
            guard enabled else { return nil }
            let err = CPagestat_xw_remove_tree(directory)
            return err == 0 ? nil : "\(directory): \(String(cString: strerror(-err)))"
        }
    }
}
