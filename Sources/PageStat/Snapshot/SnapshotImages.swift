#if canImport(Glibc)
import Glibc
#endif

/// The image files of one snapshot: each written under a temporary name (removed on every way
/// out, signals included, by `UndoOnExit`) and renamed when complete. Holes are left unwritten:
/// the image is sparse.
package struct ImageSet {
    package let output: String
    package let directory: Bool
    package let pageSize: UInt64
    package private(set) var done: [SnapshotManifest.Image] = []
    private var current: (image: SnapshotManifest.Image, file: TemporaryFile)?

    package init(output: String, directory: Bool, pageSize: UInt64) {
        self.output = output
        self.directory = directory
        self.pageSize = pageSize
    }

    package mutating func write(_ chunk: SnapshotChunk, range: AddressRange?, objectSize: UInt64?) throws(PageStatError) {
        let base: UInt64
        if directory, let mapping = chunk.mapping {
            if current?.image.mapping != mapping {
                try finishCurrent(size: nil)
                if done.isEmpty && current == nil { try Self.makeDirectory(output) }
                let name = "\(String(mapping.range.start, radix: 16))-\(String(mapping.range.end, radix: 16)).img"
                current = (SnapshotManifest.Image(path: output + "/" + name, mapping: mapping, bytes: mapping.range.length),
                           try TemporaryFile(final: output + "/" + name))
            }
            base = mapping.range.start
        } else {
            if current == nil {
                current = (SnapshotManifest.Image(path: output, mapping: nil, bytes: range?.length ?? objectSize ?? 0),
                           try TemporaryFile(final: output))
            }
            base = range?.start ?? 0
        }
        let offset = chunk.start - base
        current!.image.add(start: chunk.start, pages: chunk.pages, source: chunk.source, imageOffset: offset, pageSize: pageSize)
        if let bytes = chunk.storage { try current!.file.write(bytes, at: offset) }
    }

    package mutating func finish(objectSize: UInt64?, range: AddressRange?) throws(PageStatError) {
        if current == nil && !directory {
            current = (SnapshotManifest.Image(path: output, mapping: nil, bytes: range?.length ?? objectSize ?? 0),
                       try TemporaryFile(final: output))
        }
        if current == nil && directory && done.isEmpty { try Self.makeDirectory(output) }
        try finishCurrent(size: nil)
    }

    private mutating func finishCurrent(size: UInt64?) throws(PageStatError) {
        guard let open = current else { return }
        current = nil
        try open.file.commit(size: open.image.bytes)
        done.append(open.image)
    }

    /// Removes what this snapshot wrote: the image being written and the images already complete.
    package mutating func abandon() {
        current?.file.discard()
        current = nil
        for image in done { unlink(image.path) }
        done = []
    }

    package static func makeDirectory(_ path: String) throws(PageStatError) {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw .system(call: "mkdir \(path)", errno: .init(rawValue: errno))
        }
    }

    package static func writeAtomically(_ text: String, to path: String) throws(PageStatError) {
        let file = try TemporaryFile(final: path)
        let bytes = Array(text.utf8)
        do throws(PageStatError) {
            let failure = bytes.withUnsafeBytes { bytes in Result { () throws(PageStatError) in try file.write(bytes, at: 0) } }
            try failure.get()
            try file.commit(size: UInt64(bytes.count))
        } catch {
            file.discard()
            throw error
        }
    }
}

/// A file written under a temporary name beside its final one, renamed into place when complete,
/// removed on failure and on any exit before that.
package final class TemporaryFile {
    package let final: String
    package let temporary: String
    package let fd: Int32
    private let undo: UndoOnExit.Action

    package init(final: String) throws(PageStatError) {
        self.final = final
        let slash = final.lastIndex(of: "/")
        let directory = slash.map { String(final[...$0]) } ?? ""
        let name = slash.map { String(final[final.index(after: $0)...]) } ?? final
        temporary = "\(directory).\(name).pagestat-\(getpid()).tmp"
        undo = try UndoOnExit.unlink(temporary)
        fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let error = errno
            undo.cancel()
            throw .system(call: "create \(temporary)", errno: .init(rawValue: error))
        }
    }

    package func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(PageStatError) {
        var done = 0
        while done < bytes.count {
            let written = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw .system(call: "write \(final)", errno: .init(rawValue: written < 0 ? errno : EIO)) }
            done += written
        }
    }

    /// Sets the size (the tail past the last written page stays a hole), then renames it into place.
    package func commit(size: UInt64) throws(PageStatError) {
        guard ftruncate(fd, off_t(size)) == 0, fsync(fd) == 0 else {
            throw .system(call: "write \(final)", errno: .init(rawValue: errno))
        }
        close(fd)
        guard rename(temporary, final) == 0 else {
            let error = errno
            undo.run()
            throw .system(call: "rename \(temporary) to \(final)", errno: .init(rawValue: error))
        }
        undo.cancel()
    }

    package func discard() {
        close(fd)
        undo.run()
    }
}
