#if canImport(Glibc)
import Glibc
#endif

/// Which mappings and runs a report keeps: `--state`, `--kind` and `--path` of `show`,
/// `summary` and `map`. Each part that is set must match; an empty filter keeps everything.
public struct MappingFilter: Sendable, Hashable {
    /// Runs in these states (and, for a per-mapping view, mappings with a page in one of them).
    public var states: Set<PageState>?
    /// Mappings of these kinds.
    public var kinds: Set<MappingKind>?
    /// Mappings whose path matches: a shell pattern (fnmatch) when it holds `*`, `?` or `[`,
    /// else a substring of the path.
    public var path: String?

    public init(states: Set<PageState>? = nil, kinds: Set<MappingKind>? = nil, path: String? = nil) {
        self.states = states
        self.kinds = kinds
        self.path = path
    }

    /// Parses the comma-separated lists of `--state` and `--kind`; an error names the word that
    /// is not a state or kind, and lists the ones that are.
    public init(parsingStates states: String?, kinds: String?, path: String?) throws(PageStatError) {
        func words(_ text: String) -> [String] {
            text.split(separator: ",").map { String($0.filter { $0 != " " }) }.filter { !$0.isEmpty }
        }
        if let states {
            var set = Set<PageState>()
            for word in words(states) {
                guard let state = PageState(name: word) else {
                    throw .invalidInput("--state: '\(escapedName(word))' is not a page state (\(PageState.allCases.map(\.description).joined(separator: ", ")))")
                }
                set.insert(state)
            }
            guard !set.isEmpty else { throw .invalidInput("--state: name at least one page state") }
            self.states = set
        }
        if let kinds {
            var set = Set<MappingKind>()
            for word in words(kinds) {
                guard let kind = MappingKind(rawValue: word) else {
                    throw .invalidInput("--kind: '\(escapedName(word))' is not a mapping kind (\(MappingKind.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                set.insert(kind)
            }
            guard !set.isEmpty else { throw .invalidInput("--kind: name at least one mapping kind") }
            self.kinds = set
        }
        if let path, path.isEmpty { throw .invalidInput("--path: give a substring or a pattern") }
        self.path = path
    }

    public var isEmpty: Bool { states == nil && kinds == nil && path == nil }

    /// Whether a mapping passes the kind and path parts.
    public func matches(_ mapping: Mapping) -> Bool {
        if let kinds, !kinds.contains(mapping.kind) { return false }
        if let path {
            if path.contains(where: { $0 == "*" || $0 == "?" || $0 == "[" }) {
                return NameBytes.withCString(path) { pattern in
                    NameBytes.withCString(mapping.path) { fnmatch(pattern, $0, 0) == 0 }
                }
            }
            return mapping.path.contains(path)
        }
        return true
    }

    /// Whether a run passes the state part.
    @inline(__always)
    public func keeps(_ run: PageRun) -> Bool { states?.contains(run.state) ?? true }

    /// Whether a mapping with these page counts has a page in a wanted state.
    public func keeps(_ counts: PageCounts) -> Bool {
        guard let states else { return true }
        return states.contains { counts[$0] > 0 }
    }
}
