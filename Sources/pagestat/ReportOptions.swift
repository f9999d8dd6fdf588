import ArgumentParser
import PageStat
import PageStatRender

/// `--state`, `--kind` and `--path`: which mappings and runs a report keeps.
struct FilterOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Only these page states (comma-separated: present, swapped, cached, none, unknown).", valueName: "states"))
    var state: String?

    @Option(help: ArgumentHelp("Only mappings of these kinds (comma-separated: private-anon, shared-anon, shmem, file, special, hugetlb).", valueName: "kinds"))
    var kind: String?

    @Option(help: ArgumentHelp("Only mappings whose path holds this text, or matches it as a shell pattern when it has *, ? or [.", valueName: "path"))
    var path: String?

    func filter() throws(PageStatError) -> MappingFilter {
        try MappingFilter(parsingStates: state, kinds: kind, path: path)
    }

    func validate() throws {
        do { _ = try filter() } catch { throw ValidationError(error.description) }
    }
}

/// `--human` (the default), `--bytes`, `--pages`: how text output writes sizes.
extension SizeUnit: EnumerableFlag {
    public static func help(for value: SizeUnit) -> ArgumentHelp? {
        switch value {
        case .human: "Sizes in human units (KiB, MiB, ...; the default)."
        case .bytes: "Sizes as exact numbers of bytes."
        case .pages: "Sizes as numbers of pages."
        }
    }
}

/// Units and headers of text (and CSV) output.
struct LayoutOptions: ParsableArguments {
    @Flag var unit: SizeUnit = .human

    @Flag(help: "Leave out the title line and the header row (text), the header row (CSV); notes and warnings go to stderr.")
    var noHeaders = false
}

/// `-o/--columns`: the comma-separated column names (spaces ignored, any case) in order, nil when
/// the option was not given; a name that is not a column is a usage error naming every column.
func parseColumns<Column: RawRepresentable & CaseIterable>(_ text: String?) throws -> [Column]? where Column.RawValue == String {
    guard let text else { return nil }
    let names = text.split(separator: ",").map { String($0.filter { $0 != " " }).lowercased() }.filter { !$0.isEmpty }
    guard !names.isEmpty else { throw ValidationError("--columns: name at least one column") }
    return try names.map { name in
        guard let column = Column(rawValue: name) else {
            throw ValidationError("--columns: '\(escapedName(name))' is not a column (\(Column.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return column
    }
}
