/*
 * libgpuml/io/filesum.h - the whole-file checksum of the files gpuml writes.
 *
 * Why: HDF5 parses its own metadata (object headers, B-trees, link-name
 * heaps) before any of our checks run, and Debian's HDF5 1.10 crashes
 * (SIGBUS in H5Literate) on some single-byte corruptions of it. So every
 * file gpuml's HDF5 writer creates starts with a 512-byte HDF5 user block
 * (h5py, h5ls and HDF5 itself skip it) that holds a BLAKE2b-256 digest of
 * the whole file, and readers check it with plain file I/O before HDF5
 * opens the file.
 *
 * User block layout (little-endian):
 *     [0, 8)    magic "GPUMLSUM"
 *     [8, 12)   u32 layout version = 1
 *     [12, 16)  u32 algorithm = 1 (BLAKE2b, 32-byte digest)
 *     [16, 24)  u64 file size - 512 (the HDF5 part)
 *     [24, 56)  digest: BLAKE2b-256 of the whole file with these 32 bytes
 *               taken as zero
 *     [56, 512) zero
 * A file whose first 8 bytes are not the magic carries no checksum (older
 * gpuml files, files from h5py or other tools): it reads as "unverified".
 */
#ifndef GPUML_IO_FILESUM_H
#define GPUML_IO_FILESUM_H

#include <hdf5.h>
#include <stdbool.h>

#include "core/internal.h"

#define IO_SUM_BLOCK 512

/* File-creation property list reserving the user block (caller closes). */
hid_t io_sum_fcpl(void);

/* Fill in the user block of the closed file at `path` (created with
 * io_sum_fcpl) and fsync it. Errors: IO. */
gpuml_status io_sum_write(const char *path, const char *fn);

/* Check the file at `path`: *verified = true when it carries a checksum
 * that matches, false when it carries none. A checksum that does not match
 * (or a size that differs from the recorded one, or an unknown layout) is
 * FORMAT naming the file; unreadable is IO. */
gpuml_status io_sum_check(const char *path, bool *verified, const char *fn);

/* The policy for model files and checkpoints: io_sum_check, and for a file
 * without a checksum either a WARN through ctx's log (ctx may be NULL:
 * stderr) or, with require, FORMAT. */
gpuml_status io_sum_verify(const gpuml_ctx *ctx, bool require, const char *path, const char *fn);

#endif
