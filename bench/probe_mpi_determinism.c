/* bench/probe_mpi_determinism.c - is the MPI library's own all-reduce
 * reproducible, the same on every rank, and in rank order? (Raw MPI, no
 * gpuml: this is what decided that gpuml needs its own deterministic sum.)
 *
 *   mpirun --oversubscribe -np 4 build/bench/probe_mpi_determinism
 *
 * For each size: a hash of MPI_Allreduce's result and of MPI_Iallreduce's
 * (run the program twice and compare the hashes), whether all ranks got the
 * same bits, and how many elements differ from the sum taken in rank order
 * ((x0 + x1) + x2 ...). The inputs mix magnitudes 1e-3 and 1e4 so that the
 * order shows in the low bits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "../examples/common/cli.h"

static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *c = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static float value(int rank, size_t i)
{
    uint64_t x = (uint64_t)rank * 0x9E3779B97F4A7C15ULL + i * 0xBF58476D1CE4E5B9ULL + 1;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 29;
    double u = (double)(x >> 11) / 9007199254740992.0 - 0.5;
    return (float)(u * ((rank % 2) ? 1e4 : 1e-3));
}

int main(int argc, char **argv)
{
    cli_opt no_options[] = {CLI_END};
    cli_parse(argc, argv, "is Open MPI's all-reduce deterministic? (raw MPI; run under mpirun)", no_options);
    MPI_Init(&argc, &argv);
    int r, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    static const size_t sizes[] = {1, 7, 100, 1000, 10000, 100000, 1000000, 4000000};
    if (r == 0)
        printf("# %d ranks: count, MPI_Allreduce hash / ranks agree / elements != rank-order sum, "
               "then the same for MPI_Iallreduce\n", n);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t c = sizes[s];
        float *mine = malloc(c * 4), *a = malloc(c * 4), *b = malloc(c * 4), *ref = malloc(c * 4);
        for (size_t i = 0; i < c; i++) {
            mine[i] = value(r, i);
            ref[i] = value(0, i);
            for (int q = 1; q < n; q++)
                ref[i] += value(q, i);
        }
        memcpy(a, mine, c * 4);
        memcpy(b, mine, c * 4);
        MPI_Allreduce(MPI_IN_PLACE, a, (int)c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        MPI_Request q;
        MPI_Iallreduce(MPI_IN_PLACE, b, (int)c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &q);
        MPI_Wait(&q, MPI_STATUS_IGNORE);
        uint64_t h[2] = {fnv(a, c * 4), fnv(b, c * 4)}, mx[2], mn[2];
        MPI_Allreduce(h, mx, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(h, mn, 2, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
        size_t da = 0, db = 0;
        for (size_t i = 0; i < c; i++) {
            da += a[i] != ref[i];
            db += b[i] != ref[i];
        }
        if (r == 0)
            printf("%8zu | %016llx %s %7zu | %016llx %s %7zu\n", c, (unsigned long long)h[0],
                   mx[0] == mn[0] ? "same" : "DIFF", da, (unsigned long long)h[1], mx[1] == mn[1] ? "same" : "DIFF",
                   db);
        free(mine);
        free(a);
        free(b);
        free(ref);
    }
    MPI_Finalize();
    return 0;
}
