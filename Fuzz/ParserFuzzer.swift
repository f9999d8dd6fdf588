// libFuzzer entry point: every /proc parser on the same bytes. Built and run by Fuzz/run.sh.
import PageStat
import PageStatLab

@_cdecl("LLVMFuzzerTestOneInput")
public func parserFuzzer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    for mapping in ProcMaps.parse(bytes: bytes) {
        precondition(mapping.range.start < mapping.range.end, "empty or inverted range: \(mapping)")
        precondition(mapping.permissions.utf8.count == 4, "permissions: \(mapping)")
    }
    for entry in ProcMaps.parseSmaps(bytes: bytes) {
        precondition(entry.range.start < entry.range.end, "empty or inverted range: \(entry.range)")
    }
    let text = String(decoding: bytes, as: UTF8.self)
    _ = ProcMaps.shmemDevices(mountinfo: text)
    _ = MemoryCgroup.locate(mountinfo: text, selfCgroup: text)
    _ = SysVShm.parse(text)
    _ = SwapArea.parse(text)
    _ = AddressSpaceIdentity(stat: bytes)
    _ = ProcStat.parentPID(bytes)
    _ = ProcStat.isZombie(bytes)
    _ = ProcessIdentity.effectiveUID(status: bytes)
    _ = ProcessIdentity.memoryCgroup(text)
    return 0
}
