import CVZShims

/// Keeps glibc from handing block buffers back to the kernel after every block. Each block in
/// flight is a fresh 1–8 MiB array allocated on a worker thread; by default such chunks are
/// mmap'ed or trimmed away when freed, so the next block page-faults all of its memory in again
/// (measured: ~165 faults per 1 MiB block, more system time than the hashing). With a fixed mmap
/// threshold above the largest block and a high trim threshold, freed buffers are reused. Live
/// memory is still bounded by the pipelines; only freed chunks up to that peak stay mapped.
public enum MemoryTuning {
    public static func apply() {
        vz_tune_malloc(32 << 20, 256 << 20)
    }
}
