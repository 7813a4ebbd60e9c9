/* Whole-file checksums in the HDF5 user block (see io/filesum.h). */
#define _POSIX_C_SOURCE 200809L
#include "io/filesum.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/blake2b.h"

#define SUM_MAGIC "GPUMLSUM"
#define SUM_VERSION 1u
#define SUM_ALGO_BLAKE2B_256 1u
#define SUM_DIGEST_AT 24
#define SUM_DIGEST_LEN 32
#define SUM_CHUNK ((size_t)1 << 20)

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

hid_t io_sum_fcpl(void)
{
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl >= 0 && H5Pset_userblock(fcpl, IO_SUM_BLOCK) < 0) {
        H5Pclose(fcpl);
        return -1;
    }
    return fcpl;
}

/* pread exactly n bytes at off: 0, or an errno (EIO for a short read). */
static int read_at(int fd, void *buf, size_t n, off_t off)
{
    char *p = buf;
    while (n > 0) {
        ssize_t got = pread(fd, p, n, off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno;
        if (got == 0)
            return EIO;
        p += got;
        n -= (size_t)got;
        off += got;
    }
    return 0;
}

/* Digest of the file: head (its first IO_SUM_BLOCK bytes, digest field
 * zeroed by the caller) then [IO_SUM_BLOCK, size) read from fd. */
static int digest_file(int fd, const unsigned char *head, off_t size, unsigned char out[SUM_DIGEST_LEN])
{
    io_blake2b s;
    io_blake2b_init(&s, SUM_DIGEST_LEN);
    io_blake2b_update(&s, head, IO_SUM_BLOCK);
    unsigned char *buf = malloc(SUM_CHUNK);
    if (!buf)
        return ENOMEM;
    int e = 0;
    for (off_t off = IO_SUM_BLOCK; off < size && !e;) {
        size_t n = (size_t)(size - off) < SUM_CHUNK ? (size_t)(size - off) : SUM_CHUNK;
        e = read_at(fd, buf, n, off);
        if (!e)
            io_blake2b_update(&s, buf, n);
        off += (off_t)n;
    }
    free(buf);
    if (!e)
        io_blake2b_final(&s, out);
    return e;
}

gpuml_status io_sum_write(const char *path, const char *fn)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return gpuml_fail(NULL, GPUML_ERR_IO, fn, "cannot reopen '%s' to checksum it: %s", path, strerror(e));
    }
    struct stat sb;
    int e = fstat(fd, &sb) != 0 ? errno : 0;
    if (!e && sb.st_size < IO_SUM_BLOCK)
        e = EIO;
    unsigned char head[IO_SUM_BLOCK] = {0};
    unsigned char digest[SUM_DIGEST_LEN];
    if (!e) {
        memcpy(head, SUM_MAGIC, 8);
        put_u32(head + 8, SUM_VERSION);
        put_u32(head + 12, SUM_ALGO_BLAKE2B_256);
        put_u64(head + 16, (uint64_t)sb.st_size - IO_SUM_BLOCK);
        e = digest_file(fd, head, sb.st_size, digest);
    }
    if (!e) {
        memcpy(head + SUM_DIGEST_AT, digest, SUM_DIGEST_LEN);
        ssize_t put = pwrite(fd, head, IO_SUM_BLOCK, 0);
        e = put < 0 ? errno : put != IO_SUM_BLOCK ? EIO : 0;
    }
    if (!e && fsync(fd) != 0)
        e = errno;
    close(fd);
    if (e)
        return gpuml_fail(NULL, GPUML_ERR_IO, fn, "cannot write the checksum of '%s': %s", path, strerror(e));
    return GPUML_OK;
}

gpuml_status io_sum_check(const char *path, bool *verified, const char *fn)
{
    *verified = false;
    /* O_NONBLOCK: a FIFO under the name must not block the caller */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return gpuml_fail(NULL, GPUML_ERR_IO, fn, "cannot open '%s': %s", path, strerror(e));
    }
    gpuml_status st = GPUML_OK;
    struct stat sb;
    unsigned char head[IO_SUM_BLOCK];
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = gpuml_fail(NULL, GPUML_ERR_IO, fn, "'%s' is not a regular file", path);
        goto done;
    }
    if (sb.st_size < IO_SUM_BLOCK) /* too small to carry one */
        goto done;
    int e = read_at(fd, head, IO_SUM_BLOCK, 0);
    if (e) {
        st = gpuml_fail(NULL, GPUML_ERR_IO, fn, "cannot read '%s': %s", path, strerror(e));
        goto done;
    }
    if (memcmp(head, SUM_MAGIC, 8) != 0)
        goto done;
    uint64_t version = get_le(head + 8, 4), algo = get_le(head + 12, 4), len = get_le(head + 16, 8);
    if (version != SUM_VERSION || algo != SUM_ALGO_BLAKE2B_256) {
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                        "'%s': checksum block of layout %llu, algorithm %llu; this gpuml knows layout 1, algorithm 1 "
                        "(corrupted, or written by a newer gpuml)",
                        path, (unsigned long long)version, (unsigned long long)algo);
        goto done;
    }
    if (len != (uint64_t)sb.st_size - IO_SUM_BLOCK) {
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                        "'%s' is %lld bytes, its checksum was written for %llu: the file is truncated, extended or "
                        "corrupted",
                        path, (long long)sb.st_size, (unsigned long long)len + IO_SUM_BLOCK);
        goto done;
    }
    unsigned char stored[SUM_DIGEST_LEN], digest[SUM_DIGEST_LEN];
    memcpy(stored, head + SUM_DIGEST_AT, SUM_DIGEST_LEN);
    memset(head + SUM_DIGEST_AT, 0, SUM_DIGEST_LEN);
    e = digest_file(fd, head, sb.st_size, digest);
    if (e) {
        st = gpuml_fail(NULL, e == ENOMEM ? GPUML_ERR_OUT_OF_MEMORY : GPUML_ERR_IO, fn, "cannot read '%s': %s", path,
                        strerror(e));
        goto done;
    }
    if (memcmp(stored, digest, SUM_DIGEST_LEN) != 0) {
        st = gpuml_fail(NULL, GPUML_ERR_FORMAT, fn,
                        "'%s' does not match its checksum (BLAKE2b-256 of the whole file): the file is corrupted",
                        path);
        goto done;
    }
    *verified = true;
done:
    close(fd);
    return st;
}

gpuml_status io_sum_verify(const gpuml_ctx *ctx, bool require, const char *path, const char *fn)
{
    bool verified;
    GPUML_TRY(io_sum_check(path, &verified, fn));
    if (verified)
        return GPUML_OK;
    if (require)
        return gpuml_fail(ctx, GPUML_ERR_FORMAT, fn,
                          "'%s' carries no gpuml checksum, and verification is required (require_checksum)", path);
    gpuml_ctx_log(ctx, GPUML_LOG_WARN,
                  "%s: '%s' carries no gpuml checksum (an older gpuml file, or written by another tool): "
                  "reading it unverified",
                  fn, path);
    return GPUML_OK;
}
