import Foundation
import Logging
import VZActiveBlocks
import VZCore
import VZFormats
import VZPlatform

/// The ABM step of a disk's pass: map the disk's active extents, write them durably as the
/// active-block filter `DISK.vmdk-abbt.vztemp` in the job's workDir, and hand the planner what
/// the file holds (read back, so the plan is exactly what a field engineer finds there).
struct ActiveBlockFilter {
    let active: ExtentSet
    let map: ActiveBlockMap
    let directory: Directory
    let fileName: String

    static func build(disk: JobConfig.DiskConfig, reader: BlockReader, job: JobConfig, events: EventEmitter,
                      logger: Logger) throws -> ActiveBlockFilter {
        // 512-byte granules (a sector: FAT clusters need not be 4 KiB-aligned): the free parts of mixed
        // blocks are known, and zeroed before they are sent; coarsened to whole blocks if a
        // fragmented disk would make the set large.
        let map = ActiveBlockMapper.map(reader, granularity: 512, coarseGranularity: UInt64(job.blockSize),
                                        journalOverlay: job.abmJournalOverlay)
        let name = ActiveBlockFilterFile.fileName(disk: disk.name)
        let directory: Directory
        let active: ExtentSet
        do {
            directory = try Directory.openCreating(job.effectiveWorkDir, errorKind: .sourceIO)
            let filter = ActiveBlockFilterFile.Filter(granularity: UInt32(map.granularity), capacity: reader.capacity, active: map.active)
            try directory.writeAtomically(name, ActiveBlockFilterFile.encode(filter))
            let size = ActiveBlockFilterFile.maxFileSize(capacity: reader.capacity)
            guard let bytes = try directory.readFile(name, maxSize: Int(clamping: size)) else {
                throw VZError(.sourceIO, "\(directory.path)/\(name) vanished after it was written")
            }
            active = try ActiveBlockFilterFile.decode(bytes, fileName: "\(directory.path)/\(name)").active
        } catch let e as VZError {
            throw VZError(.sourceIO, "disk '\(disk.name)': cannot keep the active-block filter in workDir \(job.effectiveWorkDir): \(e.message)")
        }
        for w in map.warnings { logger.warning("ABM: \(w)") }
        logger.info("ABM: \(map.volumes.count) volume(s), \(map.activeBytes) of \(reader.capacity) bytes active, \(map.metadataBytesRead) metadata bytes read")
        events.emit("volumes", ["disk": disk.name, "activeBytes": map.activeBytes, "capacityBytes": reader.capacity,
                                "metadataBytesRead": map.metadataBytesRead, "warnings": map.warnings,
                                "filter": "\(directory.path)/\(name)",
                                "volumes": map.volumes.map(ActiveBlockFilter.fields)])
        return ActiveBlockFilter(active: active, map: map, directory: directory, fileName: name)
    }

    /// Removes the filter when the disk is done (unless the operator asked to keep it).
    func remove(logger: Logger) {
        do {
            try directory.remove(fileName)
        } catch {
            logger.warning("cannot remove \(directory.path)/\(fileName): \(error)")
        }
    }

    static func fields(_ v: Volume) -> [String: Any] {
        var f: [String: Any] = ["name": v.name, "kind": v.kind.rawValue, "scheme": v.scheme, "filesystem": v.filesystem,
                                "offset": v.offset, "size": v.size, "activeBytes": v.activeBytes, "allActive": v.allActive]
        if let t = v.partitionType { f["partitionType"] = t }
        if let r = v.reason { f["reason"] = r }
        return f
    }
}

/// `vzrepl-source abm-map`: what ABM makes of a disk, without a pass (for field engineers and
/// `make bench`).
public enum ActiveBlockReport {
    public static func describe(source: String, blockSize: UInt32) throws -> [String: Any] {
        let reader = try RawBlockReader(path: source)
        let started = Date()
        let map = ActiveBlockMapper.map(reader, granularity: 512, coarseGranularity: UInt64(blockSize))
        let seconds = Date().timeIntervalSince(started)
        let blocks = map.active.blocksTouched(ofSize: UInt64(blockSize), capacity: reader.capacity)
        return ["source": source, "capacityBytes": reader.capacity, "activeBytes": map.activeBytes,
                "activeBlockBytes": blocks.totalLength, "blockSize": blockSize, "extents": map.active.extents.count,
                "metadataBytesRead": map.metadataBytesRead, "seconds": (seconds * 1000).rounded() / 1000,
                "warnings": map.warnings, "volumes": map.volumes.map(ActiveBlockFilter.fields)]
    }
}
