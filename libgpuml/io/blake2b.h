/*
 * libgpuml/io/blake2b.h - BLAKE2b (RFC 7693), unkeyed, digest of 1 to 64
 * bytes: the hash behind the whole-file checksums of gpuml's files
 * (io/filesum.c). Written here from the RFC's description; tested against
 * Python's hashlib.blake2b values in tests/test_io.c.
 *
 *     io_blake2b s;
 *     io_blake2b_init(&s, 32);
 *     io_blake2b_update(&s, data, n);      // any number of times
 *     io_blake2b_final(&s, digest);        // 32 bytes
 */
#ifndef GPUML_IO_BLAKE2B_H
#define GPUML_IO_BLAKE2B_H

#include <stddef.h>
#include <stdint.h>

typedef struct io_blake2b {
    uint64_t h[8];
    uint64_t t[2];        /* bytes compressed so far (128-bit counter) */
    unsigned char buf[128];
    size_t fill;          /* bytes waiting in buf (1..128 once data came) */
    size_t outlen;
} io_blake2b;

/* outlen in [1, 64]; other values are clamped into that range. */
void io_blake2b_init(io_blake2b *s, size_t outlen);
void io_blake2b_update(io_blake2b *s, const void *data, size_t n);
/* Writes s->outlen bytes to out. s must not be updated afterwards. */
void io_blake2b_final(io_blake2b *s, unsigned char *out);

#endif
