#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// Another process's memory, read in place with process_vm_readv(2): the pages are read where
/// they are, without a copy-on-write break or a change to the target's page table. A page that is
/// not present would be faulted in (from swap: a swap-in), so callers read only pages they found
/// present in the target's pagemap.
struct ProcessMemory {
    let pid: Int32

    /// Copies `buffer.count` bytes at `address`; returns how many were copied (fewer at the first
    /// page the kernel could not read).
    /// The corresponding C function is `process_vm_readv`.
    func read(at address: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(PageStatError) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        var done = 0
        while done < buffer.count {
            let count = CPagestat_process_vm_readv(pid, base + done, buffer.count - done, address + UInt64(done))
            if count < 0 {
                let error = Errno(rawValue: errno)
                if error == .interrupted { continue }
                if error == .noSuchProcess { throw .processExited(pid: pid) }
                if error == .badAddress && done > 0 { return done }
                if error == .badAddress { return 0 }
                if error == .notPermitted || error == .permissionDenied {
                    throw .permissionDenied(.procFile("process_vm_readv of process \(pid) (needs ptrace access)"))
                }
                throw .system(call: "process_vm_readv of process \(pid) at 0x\(String(address + UInt64(done), radix: 16))", errno: error)
            }
            if count == 0 { break }
            done += count
        }
        return done
    }
}
