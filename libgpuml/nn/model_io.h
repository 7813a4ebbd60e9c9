/*
 * libgpuml/nn/model_io.h - what model files (nn/model_file.c) share with
 * checkpoints (train/checkpoint.c): the header, the weights and buffers in
 * both layouts, and the staging that lets a bad file change nothing.
 *
 * Layouts (format_version):
 *   1  one dataset per tensor: /weights/<layer>/<param>,
 *      /buffers/<layer>/<name> (read only; gpuml wrote it until 2026-12).
 *   2  one slab per kind, so a file holds a handful of HDF5 objects and no
 *      group needs HDF5's dense link storage (fractal heaps, B-trees):
 *        /<kind>/values  f32 [P]        the tensors, packed in index order
 *        /<kind>/index   i64 [n, 10]    per tensor: offset into values,
 *                                       ndim, shape (8 entries, 0-padded)
 *        /<kind>/names   u8  [L]        the n names ("layer.param"),
 *                                       joined by '\n'
 *      with kind "weights" and, when the model has any, "buffers".
 *      Entries are matched to the model by name, not position.
 */
#ifndef GPUML_NN_MODEL_IO_H
#define GPUML_NN_MODEL_IO_H

#include <stdbool.h>

#include "core/internal.h"
#include "gpuml/io.h"
#include "gpuml/model.h"

#define MODEL_FORMAT "gpuml-model"
#define MODEL_FORMAT_VERSION 2

/* Root attributes, then the weights and buffers in the current layout. */
gpuml_status model_io_write(gpuml_h5_writer *w, const gpuml_model *m);

/* Check the root attributes; *config receives the stored JSON (caller
 * frees), *version the format_version (1 or 2). */
gpuml_status model_io_read_header(gpuml_h5_reader *r, const char *path, const char *fn, char **config,
                                  int64_t *version);

/* Read m's weights and buffers from r into fresh host slabs laid out like
 * m's (validated against m: every tensor present once, same shapes). */
gpuml_status model_io_stage(gpuml_h5_reader *r, int64_t version, const gpuml_model *m, const char *path,
                            const char *fn, gpuml_tensor **pslab, gpuml_tensor **bslab);
/* Copy staged slabs into m (through its context). */
gpuml_status model_io_apply(gpuml_model *m, gpuml_tensor *pslab, gpuml_tensor *bslab);
void model_io_free_staged(gpuml_tensor *t); /* NULL: no-op */

/* Configs are compared as JSON values, not strings. */
bool model_io_same_config(const char *a, const char *b);

#endif
