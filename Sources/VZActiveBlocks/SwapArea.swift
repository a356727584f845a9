import VZCore

/// Linux swap: only the header page is active, unless a hibernation image lives there.
enum SwapArea {
    static let pageSizes: [Int] = [4096, 8192, 16384, 65536]
    static let hibernation = ["S1SUSPEND", "S2SUSPEND", "ULSUSPEND", "LINHIB0001"]

    enum Kind: Equatable { case swap(pageSize: Int), hibernated(pageSize: Int), oldSwap(pageSize: Int) }

    static func detect(_ head: [UInt8]) -> Kind? {
        let f = Fields(head, "swap header")
        for ps in pageSizes where head.count >= ps {
            if f.matches(ps - 10, "SWAPSPACE2") { return .swap(pageSize: ps) }
            if f.matches(ps - 10, "SWAP-SPACE") { return .oldSwap(pageSize: ps) }
            if hibernation.contains(where: { f.matches(ps - 10, $0) }) { return .hibernated(pageSize: ps) }
        }
        return nil
    }

    static func map(_ head: [UInt8], _ kind: Kind, _ window: VolumeWindow, _ collector: inout FreeCollector) -> ProbeOutcome {
        switch kind {
        case .hibernated: return .allActive("swap", "hibernated swap: it holds a hibernation image")
        case .oldSwap: return .allActive("swap", "unsupported: version 0 swap")
        case let .swap(ps):
            let f = Fields(head, "swap header")
            guard let version = try? f.u32(1024), version == 1, let lastPage = try? f.u32(1028) else {
                return .allActive("swap", "corrupt: swap header version is not 1")
            }
            // Pages 1...last_page are swap slots: worthless once the VM restarts.
            let end = Swift.min(window.length, (UInt64(lastPage) + 1) * UInt64(ps))
            if end > UInt64(ps) { collector.addFree(UInt64(ps), end - UInt64(ps)) }
            return .mapped("swap", [])
        }
    }
}
