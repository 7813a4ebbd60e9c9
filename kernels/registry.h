/*
 * kernels/registry.h - what the library and the tests generate from the op
 * registry (kernels/ops.def):
 *   - GPUML_REG_NAMES(FAMILY): the initialiser of a family's name table,
 *     indexed by the public enum (gpuml_unary_op_name, ...);
 *   - compile-time checks that each family list is the public enum, entry
 *     for entry and in order, with the same count (a value added to the
 *     enum and not here, or the reverse, stops the build);
 *   - gpuml_op_kind, the families of the GPUML_OPS lines.
 * Usable from C and from the C++ of the CUDA launchers.
 */
#ifndef GPUML_KERNELS_REGISTRY_H
#define GPUML_KERNELS_REGISTRY_H

#include "gpuml/ops.h"
#include "ops.def"

#ifdef __cplusplus
#define GPUML_REG_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define GPUML_REG_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

/* The column of GPUML_OPS for an op without a CUDA launcher. Declared so
 * that the tests can take the address of every entry point named. */
#define GPUML_NO_CUDA gpuml_no_cuda_entry_
#ifdef __cplusplus
extern "C" {
#endif
gpuml_status gpuml_no_cuda_entry_(void);
#ifdef __cplusplus
}
#endif

/* Position of each entry in its family list: GPUML_REG_UNARY_NEG, ... */
#define GPUML_REG_POS_(F, E, n, d) GPUML_REG_##F##_##E,
enum { GPUML_UNARY_OPS(GPUML_REG_POS_, UNARY) GPUML_REG_UNARY_COUNT_ };
enum { GPUML_BINARY_OPS(GPUML_REG_POS_, BINARY) GPUML_REG_BINARY_COUNT_ };
enum { GPUML_REDUCE_OPS(GPUML_REG_POS_, REDUCE) GPUML_REG_REDUCE_COUNT_ };

#define GPUML_REG_SAME_(F, E, n, d)                                                   \
    GPUML_REG_STATIC_ASSERT((int)GPUML_##F##_##E == (int)GPUML_REG_##F##_##E,         \
                            "kernels/ops.def: GPUML_" #F "_" #E " is not at its enum position");
GPUML_UNARY_OPS(GPUML_REG_SAME_, UNARY)
GPUML_BINARY_OPS(GPUML_REG_SAME_, BINARY)
GPUML_REDUCE_OPS(GPUML_REG_SAME_, REDUCE)
GPUML_REG_STATIC_ASSERT((int)GPUML_UNARY_COUNT_ == (int)GPUML_REG_UNARY_COUNT_,
                        "kernels/ops.def: GPUML_UNARY_OPS does not list every gpuml_unary_op");
GPUML_REG_STATIC_ASSERT((int)GPUML_BINARY_COUNT_ == (int)GPUML_REG_BINARY_COUNT_,
                        "kernels/ops.def: GPUML_BINARY_OPS does not list every gpuml_binary_op");
GPUML_REG_STATIC_ASSERT((int)GPUML_REDUCE_COUNT_ == (int)GPUML_REG_REDUCE_COUNT_,
                        "kernels/ops.def: GPUML_REDUCE_OPS does not list every gpuml_reduce_op");

/* static const char *const names[GPUML_UNARY_COUNT_] = {GPUML_REG_NAMES(UNARY)}; */
#define GPUML_REG_NAME_(F, E, n, d) #n,
#define GPUML_REG_NAMES(F) GPUML_##F##_OPS(GPUML_REG_NAME_, F)

/* The families of GPUML_OPS (its `kind` column). */
#define GPUML_OP_KINDS(X)                                                             \
    X(UNARY) X(BINARY) X(ELEMENTWISE) X(REDUCE) X(MATMUL) X(ROWS) X(SEGMENT) X(NORM)  \
    X(RANDOM) X(LOSS) X(GRAPH) X(CLUSTER) X(OPTIM)
#define GPUML_OPK_ENUM_(K) GPUML_OPK_##K,
typedef enum gpuml_op_kind { GPUML_OP_KINDS(GPUML_OPK_ENUM_) GPUML_OPK_COUNT_ } gpuml_op_kind;

#endif
