import VZCore

/// File names a descriptor gives (extents, `parentFileNameHint`) must stay inside the disk's
/// folder: a relative name is taken relative to the folder, an absolute one must name a file
/// directly in it. The result is a single file name. A parent may also live in another folder of
/// a datastore the job maps (`resolveParent`).
public enum VMDKNames {
    public static func resolve(_ raw: String, folder: String, field: String, in file: String) throws -> String {
        func fail(_ why: String) -> VZError { VZError(.sourceIO, "\(file): field '\(field)': '\(raw)' \(why)") }
        guard !raw.isEmpty, !raw.utf8.contains(0) else { throw fail("is not a file name") }
        guard !raw.contains("\\") else { throw fail("is a Windows path: copy the parent into the disk's folder and fix the name") }
        let base = normalize(folder)
        let full = normalize(raw.hasPrefix("/") ? raw : base + "/" + raw)
        guard let slash = full.lastIndex(of: "/") else { throw fail("is not a file name") }
        let dir = full[..<slash].isEmpty ? "/" : String(full[..<slash])
        let name = String(full[full.index(after: slash)...])
        guard dir == base, !name.isEmpty, name != ".", name != ".." else {
            throw fail("is outside the disk's folder \(folder): only files in that folder are read")
        }
        return name
    }

    /// Where a link's `parentFileNameHint` points: a file directly in the child's folder (as for
    /// `resolve`), or a file in any folder inside a datastore of `datastores` — an ESXi absolute
    /// hint `/vmfs/volumes/<name>/…` of a mapped name is translated to the datastore's mount
    /// first, and one that leaves the mount (`..`) is refused; any other absolute or relative
    /// hint must land inside a mount (lexically). Returns the folder and the file name.
    public static func resolveParent(_ raw: String, childFolder: String, datastores: VMDKDatastores,
                                     field: String, in file: String) throws -> (folder: String, name: String) {
        func fail(_ why: String) -> VZError { VZError(.sourceIO, "\(file): field '\(field)': '\(raw)' \(why)") }
        guard !raw.isEmpty, !raw.utf8.contains(0) else { throw fail("is not a file name") }
        guard !raw.contains("\\") else { throw fail("is a Windows path: copy the parent into the disk's folder and fix the name") }
        let base = normalize(childFolder)
        let full: String
        if let (mount, rest) = datastores.translate(raw) {
            full = normalize(mount + "/" + rest)
            guard full.hasPrefix(mount == "/" ? "/" : mount + "/") else {
                throw fail("leaves the datastore it names (mapped to \(mount))")
            }
        } else {
            full = normalize(raw.hasPrefix("/") ? raw : base + "/" + raw)
        }
        guard let slash = full.lastIndex(of: "/") else { throw fail("is not a file name") }
        let dir = full[..<slash].isEmpty ? "/" : String(full[..<slash])
        let name = String(full[full.index(after: slash)...])
        guard !name.isEmpty, name != ".", name != ".." else { throw fail("is not a file name") }
        if dir == base { return (childFolder, name) }
        guard datastores.mount(containing: dir) != nil else {
            throw fail("is outside the disk's folder \(childFolder)" + (datastores.isEmpty
                ? ": a parent on another datastore is read only through the job's \"datastores\" mapping"
                : " and every datastore the job maps (\(datastores.summary))"))
        }
        return (dir, name)
    }

    /// Lexical: "." dropped, ".." removes the previous component (never above "/").
    public static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for p in path.split(separator: "/", omittingEmptySubsequences: true) {
            if p == "." { continue }
            if p == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(p)
        }
        return (path.hasPrefix("/") ? "/" : "") + parts.joined(separator: "/")
    }
}

/// One link of a chain: a descriptor and its extents, concatenated.
public final class VMDKLink {
    public let fileName: String
    /// The folder that holds the link's descriptor and extents.
    public let folder: String
    public let descriptor: VMDKDescriptor
    let extents: [VMDKExtentReader]
    /// The first byte of each extent in the link's address space.
    let starts: [UInt64]
    public let capacity: UInt64

    /// createTypes that are devices or raw mappings: not read through files here.
    static let unsupportedCreateTypes: Set<String> = ["fullDevice", "partitionedDevice", "vmfsRDM", "vmfsRawDeviceMap",
                                                      "vmfsRDMP", "vmfsPassthroughRawDeviceMap", "vmfsRaw", "vsanSparse"]

    /// Opens the link whose descriptor is `fileName` (a text descriptor, or a sparse file
    /// with one embedded) in `folder`, and every extent it names.
    public init(fileName: String, folder: String, access: VMDKFileAccess) throws {
        self.fileName = fileName
        self.folder = folder
        let size = try access.size(of: fileName)
        let head = try access.read(fileName, at: 0, count: Int(min(size, 512)))
        var embeddedHeader: SparseExtentHeader?
        if SparseExtentHeader.hasMagic(head) {
            let h = try SparseExtentHeader.parse(head, fileName: fileName, fileSize: size)
            let region = h.descriptorSectors > 0
                ? try access.read(fileName, at: h.descriptorOffset * 512, count: Int(h.descriptorSectors) * 512) : []
            guard region.contains(where: { $0 != 0 }) else {
                throw VZError(.sourceIO, "\(fileName): a sparse extent without an embedded descriptor (field 'descriptorOffset'): give the disk's descriptor file as the source, not one of its extents")
            }
            descriptor = try VMDKDescriptor.parse(region, fileName: fileName)
            embeddedHeader = h
        } else if Array(head.prefix(4)) == Array("COWD".utf8) || Array(head.prefix(8)) == [0xBE, 0xBA, 0xFE, 0xCA, 0, 0, 0, 0] {
            throw VZError(.sourceIO, "\(fileName): an ESXi snapshot delta extent: give its descriptor (the .vmdk without -delta/-sesparse) as the source")
        } else {
            guard VMDKDescriptor.looksLikeDescriptor(head) else {
                throw VZError(.sourceIO, "\(fileName): neither a VMDK descriptor nor a sparse VMDK (no 'createType', no KDMV magic)")
            }
            guard size <= UInt64(VMDKDescriptor.maxBytes) else {
                throw VZError(.sourceIO, "\(fileName): descriptor of \(size) bytes is larger than \(VMDKDescriptor.maxBytes): not a VMDK descriptor")
            }
            descriptor = try VMDKDescriptor.parse(try access.read(fileName, at: 0, count: Int(size)), fileName: fileName)
        }
        guard !VMDKLink.unsupportedCreateTypes.contains(descriptor.createType) else {
            throw VZError(.sourceUnsupported, "\(fileName): descriptor field 'createType': '\(descriptor.createType)' (a raw device mapping or device disk) is not read from files; replicate the device it maps instead")
        }
        var extents: [VMDKExtentReader] = []
        var starts: [UInt64] = []
        var at: UInt64 = 0
        for (i, e) in descriptor.extents.enumerated() {
            guard e.access != .noaccess else {
                throw VZError(.sourceIO, "\(fileName): extent \(i + 1) field 'access' is NOACCESS: the disk cannot be read")
            }
            let reader: VMDKExtentReader
            if e.type == .zero {
                reader = ZeroExtent(sectors: e.sectors)
            } else {
                let name = try VMDKNames.resolve(e.fileName ?? "", folder: folder, field: "extent \(i + 1) fileName", in: fileName)
                do {
                    reader = try VMDKLink.openExtent(e, name: name, link: fileName, embeddedHeader: embeddedHeader, access: access)
                } catch let error as VZError where !error.message.hasPrefix("\(fileName): ") {
                    // Name the descriptor that points at the extent, not only the extent.
                    throw VZError(error.kind, "\(fileName): extent \(i + 1) '\(name)': \(error.message)")
                }
            }
            starts.append(at)
            extents.append(reader)
            at += reader.byteCount
        }
        self.extents = extents
        self.starts = starts
        self.capacity = at
    }

    static func openExtent(_ e: VMDKDescriptor.Extent, name: String, link fileName: String,
                           embeddedHeader: SparseExtentHeader?, access: VMDKFileAccess) throws -> VMDKExtentReader {
        switch e.type {
        case .flat, .vmfs:
            return try FlatExtent(access: access, fileName: name, sectors: e.sectors, offsetSectors: e.offsetSectors, descriptor: fileName)
        case .sparse:
            return try HostedSparseExtent(access: access, fileName: name, sectors: e.sectors,
                                          header: name == fileName ? embeddedHeader : nil, descriptor: fileName)
        case .vmfsSparse:
            return try COWDExtent(access: access, fileName: name, sectors: e.sectors, descriptor: fileName)
        case .seSparse:
            return try SESparseExtent(access: access, fileName: name, sectors: e.sectors, descriptor: fileName)
        case .zero:
            return ZeroExtent(sectors: e.sectors)
        }
    }

    /// The extent holding byte `offset` of the link.
    func extentIndex(_ offset: UInt64) -> Int {
        var lo = 0, hi = starts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if starts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    public func grainRemainder(at offset: UInt64) -> UInt64 {
        let i = extentIndex(offset)
        return extents[i].grainRemainder(at: offset - starts[i])
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> GrainRead {
        let i = extentIndex(offset)
        return try extents[i].read(at: offset - starts[i], into: buffer)
    }

    public func allocation() throws -> (zero: ExtentSet, unallocated: ExtentSet) {
        var zero: [Extent] = [], unallocated: [Extent] = []
        for (e, s) in zip(extents, starts) {
            let (z, u) = try e.allocation()
            zero += z.map { Extent(offset: $0.offset + s, length: $0.length) }
            unallocated += u.map { Extent(offset: $0.offset + s, length: $0.length) }
        }
        return (ExtentSet(zero), ExtentSet(unallocated))
    }
}

/// A VMDK chain read as one disk: the leaf first, then each parent down to the base
/// (VMDK-FORMATS.md §4). Reads go top-down per grain, clipped to each link's grain; what is
/// unallocated everywhere, zero extents and zeroed grains are known zeros.
public final class VMDKChain: BlockReader {
    public let links: [VMDKLink]
    public let folder: String
    public let capacity: UInt64
    public var displayName: String {
        "\(folder)/\(links[0].fileName)" + (links.count > 1 ? " (chain of \(links.count) links)" : "")
    }

    /// Deeper chains are refused (ESXi allows 32 snapshots).
    public static let maxLinks = 255

    /// Opens the leaf `fileName` in `folder` and follows `parentFileNameHint` to the base,
    /// checking each link's parentCID against its parent's CID, equal capacities and loops. A
    /// parent in another folder must lie in one of `datastores`, whose files `opener` opens.
    public init(leaf fileName: String, folder: String, access: VMDKFileAccess,
                datastores: VMDKDatastores = VMDKDatastores(), opener: VMDKFolderOpener? = nil) throws {
        self.folder = folder
        var links = [try VMDKLink(fileName: fileName, folder: folder, access: access)]
        // Keyed by the normalised folder: a chain that comes back to a folder reuses its access.
        var accesses: [String: VMDKFileAccess] = [VMDKNames.normalize(folder): access]
        var seen: Set<String> = [VMDKNames.normalize(folder + "/" + fileName)]
        while let child = links.last, child.descriptor.hasParent {
            guard let hint = child.descriptor.parentFileNameHint else {
                throw VZError(.sourceIO, "\(child.fileName): field 'parentFileNameHint' is missing, but parentCID is \(String(format8: child.descriptor.parentCID)): the parent cannot be found")
            }
            let (parentFolder, name) = try VMDKNames.resolveParent(hint, childFolder: child.folder, datastores: datastores,
                                                                   field: "parentFileNameHint", in: child.fileName)
            guard seen.insert(VMDKNames.normalize(parentFolder + "/" + name)).inserted else {
                throw VZError(.sourceIO, "\(child.fileName): field 'parentFileNameHint': '\(hint)' is already in the chain (a loop)")
            }
            guard links.count < VMDKChain.maxLinks else {
                throw VZError(.sourceIO, "\(child.fileName): field 'parentFileNameHint': the chain is deeper than \(VMDKChain.maxLinks) links")
            }
            let parent: VMDKLink
            do {
                let parentAccess: VMDKFileAccess
                if let known = accesses[VMDKNames.normalize(parentFolder)] {
                    parentAccess = known
                } else {
                    guard let opener, let mount = datastores.mount(containing: parentFolder) else {
                        throw VZError(.sourceIO, "\(parentFolder) is not a folder this agent can open")
                    }
                    parentAccess = try opener.access(folder: parentFolder, beneath: mount)
                    accesses[VMDKNames.normalize(parentFolder)] = parentAccess
                }
                parent = try VMDKLink(fileName: name, folder: parentFolder, access: parentAccess)
            } catch let e as VZError {
                throw VZError(e.kind, "\(child.fileName): field 'parentFileNameHint': parent '\(hint)' cannot be opened: \(e.message)")
            }
            guard child.descriptor.parentCID == parent.descriptor.cid else {
                throw VZError(.sourceIO, "\(child.fileName): field 'parentCID' is \(String(format8: child.descriptor.parentCID)), but its parent \(name) has CID \(String(format8: parent.descriptor.cid)): the parent changed after the snapshot was taken, the chain is invalid")
            }
            guard parent.capacity == child.capacity else {
                throw VZError(.sourceIO, "\(child.fileName): field 'capacity': \(child.capacity) bytes, but its parent \(name) has \(parent.capacity)")
            }
            links.append(parent)
        }
        self.links = links
        self.capacity = links[0].capacity
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard offset <= capacity, UInt64(buffer.count) <= capacity - offset else {
            throw VZError(.internal, "\(displayName): read of \(buffer.count) bytes at \(offset) is past the disk's \(capacity) bytes")
        }
        try read(link: 0, at: offset, into: buffer)
    }

    private func read(link i: Int, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let at = offset + UInt64(done)
            let n = Int(min(UInt64(buffer.count - done), links[i].grainRemainder(at: at)))
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + n])
            switch try links[i].read(at: at, into: piece) {
            case .data: break
            case .zero: piece.initializeMemory(as: UInt8.self, repeating: 0)
            case .unallocated:
                if i + 1 < links.count { try read(link: i + 1, at: at, into: piece) } else {
                    piece.initializeMemory(as: UInt8.self, repeating: 0)
                }
            }
            done += n
        }
    }

    /// Zero where the first link, top-down, that holds something says zero, or where no link
    /// holds anything.
    public func knownZeroExtents() throws -> ExtentSet {
        var known = ExtentSet()
        var pending = ExtentSet([Extent(offset: 0, length: capacity)])
        for link in links {
            let (zero, unallocated) = try link.allocation()
            known = known.union(pending.intersection(zero))
            pending = pending.intersection(unallocated)
            if pending.isEmpty { break }
        }
        return known.union(pending)
    }

    /// Each link as the CID record and the logs name it: file, CID, parentCID.
    public var chainDescription: [(file: String, cid: UInt32, parentCID: UInt32)] {
        links.map { (describe($0.folder, $0.fileName), $0.descriptor.cid, $0.descriptor.parentCID) }
    }

    /// The chain as the source sends it (`diskChain`) and the target records it in `.vzcid`.
    public var sourceChain: [SourceChainLink] {
        chainDescription.map { SourceChainLink(file: $0.file, cid: $0.cid, parentCID: $0.parentCID) }
    }

    /// A file in the disk's folder by its name; one in another folder by its path.
    public func describe(_ linkFolder: String, _ name: String) -> String {
        VMDKNames.normalize(linkFolder) == VMDKNames.normalize(folder) ? name : (linkFolder == "/" ? "/" : linkFolder + "/") + name
    }
}
