// Small C shims for calls and constants Swift cannot see: openat2 (no glibc 2.36 wrapper, and
// Swift cannot call the variadic syscall()), fallocate flags, SEEK_DATA/SEEK_HOLE, sync_file_range.
#ifndef CVZSHIMS_H
#define CVZSHIMS_H
#include <stdint.h>
#include <sys/types.h>

/// openat2(dirfd, path, {flags, mode, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS}).
/// Returns the fd, or -1 with errno set (ENOSYS on kernels before 5.6).
int vz_openat_beneath(int dirfd, const char *path, int flags, mode_t mode);

/// fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length); -1 with errno on failure.
int vz_punch_hole(int fd, int64_t offset, int64_t length);

/// lseek(fd, offset, SEEK_DATA) / SEEK_HOLE; -1 with errno (ENXIO: no data past offset).
int64_t vz_seek_data(int fd, int64_t offset);
int64_t vz_seek_hole(int fd, int64_t offset);

/// sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE): starts writeback of the range's
/// dirty pages without waiting for it (not durable: no metadata, no device cache flush).
int vz_start_writeback(int fd, int64_t offset, int64_t length);

/// ioctl(fd, BLKGETSIZE64): the size of a block device in bytes, or -1 with errno.
int64_t vz_block_device_size(int fd);

/// mallopt(M_MMAP_THRESHOLD, mmap_threshold) and mallopt(M_TRIM_THRESHOLD, trim_threshold)
/// (<malloc.h> is not part of Swift's Glibc module).
void vz_tune_malloc(int mmap_threshold, int trim_threshold);

/// The errno value after a failing call (Swift sees errno, but this keeps the shim self-contained).
int vz_errno(void);
#endif
