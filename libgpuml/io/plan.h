/*
 * libgpuml/io/plan.h - the loader's epoch plan: which events, in which
 * batches, a rank reads in one epoch. A pure function of (row_splits,
 * config, epoch): every rank computes every rank's shard the same way, and
 * a resumed run recomputes exactly the plan it left. See gpuml_loader_create
 * in gpuml/io.h for the rules.
 */
#ifndef GPUML_IO_PLAN_H
#define GPUML_IO_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/internal.h"

typedef struct io_plan_cfg {
    uint64_t seed;
    bool shuffle;
    int64_t max_rows, max_events;
    int rank, world;
} io_plan_cfg;

typedef struct io_plan {
    int64_t epoch;     /* -1: empty plan */
    int64_t nbatches;
    int64_t *offsets;  /* [nbatches + 1] into events */
    int64_t *events;   /* event ids, ascending within each batch */
} io_plan;

/* Build rank cfg->rank's plan for `epoch`. Needs nevents >= world (or
 * nevents == 0 with world == 1). Errors: OUT_OF_MEMORY (fn named). */
gpuml_status io_plan_build(const int64_t *row_splits, int64_t nevents, const io_plan_cfg *cfg, int64_t epoch,
                           io_plan *out, const char *fn);
void io_plan_free(io_plan *p); /* leaves an empty plan (epoch -1) */

/* Identifies the plan family: row_splits and every config field. Never 0. */
uint64_t io_plan_fingerprint(const int64_t *row_splits, int64_t nevents, const io_plan_cfg *cfg);

#endif
