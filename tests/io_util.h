/*
 * tests/io_util.h - helpers shared by the io tests: a scratch directory,
 * file surgery (truncate, overwrite bytes), stderr capture, and HDF5
 * bookkeeping checks (no identifier left open, error printing restored).
 * Header-only: each test includes it once.
 */
#ifndef GPUML_TESTS_IO_UTIL_H
#define GPUML_TESTS_IO_UTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The call returned `want` and its message holds must1 and must2 (each
 * may be NULL). Needs cmocka (fail_msg) and gpuml included before. */
static inline void expect_st(gpuml_status got, gpuml_status want, const char *must1, const char *must2)
{
    if (got != want)
        fail_msg("status %s, expected %s (%s)", gpuml_status_string(got), gpuml_status_string(want),
                 gpuml_last_error());
    if (must1 && !strstr(gpuml_last_error(), must1))
        fail_msg("message '%s' lacks '%s'", gpuml_last_error(), must1);
    if (must2 && !strstr(gpuml_last_error(), must2))
        fail_msg("message '%s' lacks '%s'", gpuml_last_error(), must2);
}

#define OK(x) expect_st((x), GPUML_OK, NULL, NULL)

static char io_tmpdir[256];

static inline void io_tmpdir_create(void)
{
    snprintf(io_tmpdir, sizeof io_tmpdir, "/tmp/gpuml_io_test_XXXXXX");
    if (!mkdtemp(io_tmpdir)) {
        perror("mkdtemp");
        exit(1);
    }
}

static inline void io_tmpdir_remove(void)
{
    DIR *d = opendir(io_tmpdir);
    if (!d)
        return;
    struct dirent *e;
    char p[600];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", io_tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(io_tmpdir);
}

/* Path of a file in the scratch directory (static buffer rotation). */
static inline const char *io_path(const char *name)
{
    static char bufs[8][512];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 512, "%s/%s", io_tmpdir, name);
    return b;
}

static inline int io_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Number of entries in the scratch directory whose name contains s. */
static inline int io_count_files(const char *s)
{
    DIR *d = opendir(io_tmpdir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, s))
            n++;
    if (d)
        closedir(d);
    return n;
}

static inline long io_file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static inline void *io_read_file(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc(n > 0 ? (size_t)n : 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *size = n;
    return b;
}

static inline int io_write_file(const char *path, const void *data, long n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(data, 1, (size_t)n, f) == (size_t)n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static inline int io_copy_file(const char *from, const char *to)
{
    long n;
    void *b = io_read_file(from, &n);
    if (!b)
        return -1;
    int r = io_write_file(to, b, n);
    free(b);
    return r;
}

/* Offset of the first occurrence of needle in the file, or -1. */
static inline long io_find_bytes(const char *path, const void *needle, size_t len)
{
    long n;
    unsigned char *b = io_read_file(path, &n);
    long at = -1;
    for (long i = 0; b && at < 0 && i + (long)len <= n; i++)
        if (!memcmp(b + i, needle, len))
            at = i;
    free(b);
    return at;
}

/* Turn a gpuml-written file into one without gpuml's whole-file checksum
 * (as h5py or an older gpuml would have written it): zero the checksum
 * block's magic. HDF5 still finds its superblock after the user block. */
static inline void io_strip_checksum(const char *path)
{
    int fd = open(path, O_WRONLY);
    static const char zeros[8] = {0};
    if (fd < 0 || pwrite(fd, zeros, 8, 0) != 8) {
        perror(path);
        exit(1);
    }
    close(fd);
}

static inline void io_poke(const char *path, long offset, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY);
    if (fd >= 0) {
        if (pwrite(fd, data, len, offset) != (ssize_t)len)
            perror("pwrite");
        close(fd);
    }
}

/* stderr capture: everything written to fd 2 between begin and end. */
static int io_saved_stderr = -1;
static char io_stderr_path[600];

static inline void io_stderr_begin(void)
{
    fflush(stderr);
    snprintf(io_stderr_path, sizeof io_stderr_path, "%s/stderr.txt", io_tmpdir);
    int fd = open(io_stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    io_saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
}

/* Returns the number of bytes written to stderr meanwhile. */
static inline long io_stderr_end(void)
{
    fflush(stderr);
    dup2(io_saved_stderr, 2);
    close(io_saved_stderr);
    long n = io_file_size(io_stderr_path);
    unlink(io_stderr_path);
    return n;
}

/* No HDF5 identifier (file, group, dataset, attribute, datatype,
 * dataspace, property list) may be left open by gpuml: the count of
 * identifiers now minus the count at io_h5_ids_baseline() (HDF5 registers
 * its predefined types and property lists when it starts). */
static long io_h5_id_base = -1;

static inline long io_h5_count_ids(void)
{
    static const H5I_type_t types[] = {H5I_FILE, H5I_GROUP, H5I_DATATYPE, H5I_DATASPACE,
                                       H5I_DATASET, H5I_ATTR, H5I_GENPROP_LST};
    long n = 0;
    H5E_auto2_t fn;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &fn, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* a type never used yet is an "error" */
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        hsize_t k = 0;
        if (H5Inmembers(types[i], &k) >= 0)
            n += (long)k;
    }
    H5Eset_auto2(H5E_DEFAULT, fn, data);
    return n;
}

static inline void io_h5_ids_baseline(void)
{
    H5open();
    io_h5_id_base = io_h5_count_ids();
}

static inline long io_h5_open_ids(void)
{
    return io_h5_count_ids() - io_h5_id_base;
}

/* HDF5's automatic error printer must be what it was before gpuml's calls:
 * io_h5_autoprint_record() at the start of main, then check. */
static H5E_auto2_t io_h5_initial_fn;
static void *io_h5_initial_data;

static inline void io_h5_autoprint_record(void)
{
    H5Eget_auto2(H5E_DEFAULT, &io_h5_initial_fn, &io_h5_initial_data);
}

static inline int io_h5_autoprint_intact(void)
{
    H5E_auto2_t fn = NULL;
    void *data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &fn, &data);
    return fn == io_h5_initial_fn && data == io_h5_initial_data && fn != NULL;
}

#endif
