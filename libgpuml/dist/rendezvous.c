/* Rendezvous without MPI: launcher environment and the id file. See
 * rendezvous.h. */
#define _POSIX_C_SOURCE 200809L
#include "core/runtime.h" /* gpuml_clock_s, inline: no gpuml symbol */
#include "rendezvous.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILE_MAGIC "gpuml-nccl-id 1"

void gpuml_rdv_hex_encode(const unsigned char *bytes, size_t n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 15];
    }
    hex[2 * n] = '\0';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int gpuml_rdv_hex_decode(const char *hex, unsigned char *bytes, size_t n)
{
    if (!hex)
        return GPUML_RDV_ERROR;
    while (isspace((unsigned char)*hex))
        hex++;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval((unsigned char)hex[2 * i]);
        int lo = hi < 0 ? -1 : hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return GPUML_RDV_ERROR;
        bytes[i] = (unsigned char)(hi << 4 | lo);
    }
    for (const char *p = hex + 2 * n; *p; p++)
        if (!isspace((unsigned char)*p))
            return GPUML_RDV_ERROR;
    return 0;
}

int gpuml_rdv_env_int(const char *const *names, int *value, const char **which, char *err, size_t errlen)
{
    for (; *names; names++) {
        const char *v = getenv(*names);
        if (!v || !*v)
            continue;
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || *end || x < 0 || x > INT_MAX) {
            snprintf(err, errlen, "environment variable %s = '%s' is not a non-negative integer", *names, v);
            return GPUML_RDV_ERROR;
        }
        *value = (int)x;
        if (which)
            *which = *names;
        return 0;
    }
    return GPUML_RDV_ERROR;
}

int gpuml_rdv_env_ranks(int *rank, int *size, int *local_rank, char *err, size_t errlen)
{
    static const char *const rank_vars[] = {"SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK", NULL};
    static const char *const size_vars[] = {"SLURM_NTASKS", "SLURM_NPROCS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", NULL};
    static const char *const local_vars[] = {"SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", NULL};
    err[0] = '\0';
    if (*rank < 0 && gpuml_rdv_env_int(rank_vars, rank, NULL, err, errlen) != 0) {
        if (!err[0])
            snprintf(err, errlen, "the rank is neither configured nor in the environment (SLURM_PROCID, "
                                  "OMPI_COMM_WORLD_RANK, PMI_RANK)");
        return GPUML_RDV_ERROR;
    }
    if (*size < 0 && gpuml_rdv_env_int(size_vars, size, NULL, err, errlen) != 0) {
        if (!err[0])
            snprintf(err, errlen, "the number of ranks is neither configured nor in the environment "
                                  "(SLURM_NTASKS, OMPI_COMM_WORLD_SIZE, PMI_SIZE)");
        return GPUML_RDV_ERROR;
    }
    if (*local_rank < 0 && gpuml_rdv_env_int(local_vars, local_rank, NULL, err, errlen) != 0) {
        if (err[0])
            return GPUML_RDV_ERROR;
        if (*size != 1) {
            snprintf(err, errlen, "the local rank is neither configured nor in the environment (SLURM_LOCALID, "
                                  "OMPI_COMM_WORLD_LOCAL_RANK)");
            return GPUML_RDV_ERROR;
        }
        *local_rank = 0;
    }
    if (*size < 1 || *rank >= *size) {
        snprintf(err, errlen, "rank %d is not in [0, %d)", *rank, *size);
        return GPUML_RDV_ERROR;
    }
    return 0;
}

void gpuml_rdv_default_tag(char *tag, size_t len)
{
    const char *job = getenv("SLURM_JOB_ID");
    const char *step = getenv("SLURM_STEP_ID");
    if (job && *job)
        snprintf(tag, len, "%s.%s", job, step && *step ? step : "0");
    else if (len)
        tag[0] = '\0';
}

static int write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

int gpuml_rdv_file_publish(const char *path, const char *tag, const unsigned char *id, size_t n, char *err,
                           size_t errlen)
{
    if (n > 512 || strlen(tag) > 200 || strchr(tag, '\n')) {
        snprintf(err, errlen, "invalid id size, or tag longer than 200 characters or with a newline");
        return GPUML_RDV_ERROR;
    }
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        snprintf(err, errlen, "path '%s' is too long", path);
        return GPUML_RDV_ERROR;
    }
    char hex[1025];
    gpuml_rdv_hex_encode(id, n, hex);
    char body[1400];
    int len = snprintf(body, sizeof body, FILE_MAGIC "\ntag %s\nid %s\n", tag, hex);
    if (len < 0 || len >= (int)sizeof body) {
        snprintf(err, errlen, "tag '%s' is too long", tag);
        return GPUML_RDV_ERROR;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create '%s': %s", tmp, strerror(errno));
        return GPUML_RDV_ERROR;
    }
    /* The rename publishes a complete file: readers never see a partial id. */
    if (write_all(fd, body, (size_t)len) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write '%s': %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return GPUML_RDV_ERROR;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        unlink(tmp);
        return GPUML_RDV_ERROR;
    }
    return 0;
}

/* 0: id read; 1: file absent or from another job (*other_tag filled); -1: malformed. */
static int read_id_file(const char *path, const char *tag, unsigned char *id, size_t n, char *other_tag,
                        size_t other_len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    char line[1200], ftag[256] = "", hex[1100] = "";
    int ok = fgets(line, sizeof line, f) && !strncmp(line, FILE_MAGIC "\n", sizeof FILE_MAGIC);
    if (ok && fgets(line, sizeof line, f) && !strncmp(line, "tag ", 4)) {
        line[strcspn(line, "\n")] = '\0';
        snprintf(ftag, sizeof ftag, "%.255s", line + 4);
    } else {
        ok = 0;
    }
    if (ok && fgets(line, sizeof line, f) && !strncmp(line, "id ", 3))
        snprintf(hex, sizeof hex, "%.1099s", line + 3);
    else
        ok = 0;
    fclose(f);
    if (!ok)
        return -1;
    if (strcmp(ftag, tag) != 0) {
        snprintf(other_tag, other_len, "%s", ftag);
        return 1;
    }
    return gpuml_rdv_hex_decode(hex, id, n) == 0 ? 0 : -1;
}

int gpuml_rdv_file_wait(const char *path, const char *tag, unsigned char *id, size_t n, double timeout_s,
                        char *err, size_t errlen)
{
    double t0 = gpuml_clock_s();
    char other[256] = "";
    int malformed = 0;
    for (;;) {
        int r = read_id_file(path, tag, id, n, other, sizeof other);
        if (r == 0)
            return 0;
        /* A malformed file may be a foreign file; keep polling, say so at the end. */
        malformed |= r < 0;
        double waited = gpuml_clock_s() - t0;
        if (waited >= timeout_s)
            break;
        /* Shared file systems: a few polls per second are plenty. */
        double nap = waited < 0.1 ? 0.005 : 0.05;
        struct timespec ts = {0, (long)(nap * 1e9)};
        nanosleep(&ts, NULL);
    }
    if (other[0] || malformed)
        snprintf(err, errlen, "rank 0 did not publish the NCCL id in '%s' within %.3g s (the file there %s)", path,
                 timeout_s, malformed ? "is not a gpuml id file" : "has another job's tag");
    else
        snprintf(err, errlen, "rank 0 did not publish the NCCL id in '%s' within %.3g s (is the path on a file "
                 "system every rank sees?)", path, timeout_s);
    return GPUML_RDV_TIMEOUT;
}
