/*
 * libgpuml/dist/rendezvous.h - how ranks without MPI find each other: the
 * rank/size/local rank from the launcher's environment, and the NCCL unique
 * id through a shared file or an environment variable.
 *
 * Self-contained (no other gpuml symbols), so that tests compile it in
 * directly: functions return 0 on success and write a message into err.
 */
#ifndef GPUML_DIST_RENDEZVOUS_H
#define GPUML_DIST_RENDEZVOUS_H

#include <stddef.h>

/* Return codes besides 0. */
enum { GPUML_RDV_ERROR = -1, GPUML_RDV_TIMEOUT = 1 };

/* bytes[n] -> 2n lower-case hex digits + NUL in hex. */
void gpuml_rdv_hex_encode(const unsigned char *bytes, size_t n, char *hex);
/* Exactly 2n hex digits (surrounding white space allowed) -> bytes[n]. */
int gpuml_rdv_hex_decode(const char *hex, unsigned char *bytes, size_t n);

/* A non-negative int from the first of the variables names[0..] that is
 * set; *which receives its name. GPUML_RDV_ERROR when none is set or the
 * value is not a number (err says which). */
int gpuml_rdv_env_int(const char *const *names, int *value, const char **which, char *err, size_t errlen);

/* Rank, size and local rank from SLURM (SLURM_PROCID, SLURM_NTASKS,
 * SLURM_LOCALID) or Open MPI (OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK) or
 * PMI (PMI_RANK, PMI_SIZE); a local rank that is not found is 0 when size is
 * 1. Entries already >= 0 are kept. */
int gpuml_rdv_env_ranks(int *rank, int *size, int *local_rank, char *err, size_t errlen);

/* The default job tag: "$SLURM_JOB_ID.$SLURM_STEP_ID" when SLURM_JOB_ID is
 * set, else "" (no tag). */
void gpuml_rdv_default_tag(char *tag, size_t len);

/* Rank 0: write the id with the tag to path atomically (a temporary file in
 * the same directory, fsync, rename). */
int gpuml_rdv_file_publish(const char *path, const char *tag, const unsigned char *id, size_t n, char *err,
                           size_t errlen);
/* Other ranks: poll path until it holds an id with the same tag (a file with
 * another tag is a leftover of another job and is ignored), at most
 * timeout_s seconds. GPUML_RDV_TIMEOUT when it never appears. */
int gpuml_rdv_file_wait(const char *path, const char *tag, unsigned char *id, size_t n, double timeout_s,
                        char *err, size_t errlen);

#endif
