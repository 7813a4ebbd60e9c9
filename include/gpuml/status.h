/*
 * gpuml/status.h - status codes, error messages and logging.
 *
 * Every fallible gpuml function returns a gpuml_status; GPUML_OK (0) means
 * success. On failure the library records a message for the calling thread
 * that names the public function, the offending argument and, for backend
 * failures, the backend's own error text (CUDA, cuBLAS, cuDNN, NCCL, MPI,
 * HDF5). Outputs are left untouched unless a function documents otherwise.
 *
 *     gpuml_status st = gpuml_ctx_create(&cfg, &ctx);
 *     if (st != GPUML_OK)
 *         fprintf(stderr, "%s: %s\n", gpuml_status_string(st), gpuml_last_error());
 *
 * Logging goes through a callback set per context (gpuml_ctx_config); the
 * default writes warnings and errors to stderr. gpuml never prints to stdout.
 */
#ifndef GPUML_STATUS_H
#define GPUML_STATUS_H

#include "gpuml/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gpuml_status {
    GPUML_OK = 0,
    GPUML_ERR_INVALID_ARGUMENT = 1, /* NULL, out-of-range value, bad option     */
    GPUML_ERR_SHAPE = 2,            /* tensor shapes do not fit the contract     */
    GPUML_ERR_DTYPE = 3,            /* tensor dtype not accepted by the function */
    GPUML_ERR_DEVICE_MISMATCH = 4,  /* tensors on different devices / not ctx's  */
    GPUML_ERR_OUT_OF_MEMORY = 5,
    GPUML_ERR_NO_DEVICE = 6,        /* no usable GPU, or gpuml built without CUDA*/
    GPUML_ERR_UNSUPPORTED = 7,      /* valid request this build cannot perform   */
    GPUML_ERR_CUDA = 8,
    GPUML_ERR_CUBLAS = 9,
    GPUML_ERR_CUDNN = 10,
    GPUML_ERR_NCCL = 11,
    GPUML_ERR_MPI = 12,
    GPUML_ERR_HDF5 = 13,
    GPUML_ERR_IO = 14,              /* file system error                         */
    GPUML_ERR_FORMAT = 15,          /* malformed file, config or data            */
    GPUML_ERR_NOT_FOUND = 16,       /* named entity (layer, dataset) absent      */
    GPUML_ERR_STATE = 17,           /* call not valid in the object's state      */
    GPUML_ERR_QUEUE_FULL = 18,
    GPUML_ERR_TIMEOUT = 19,
    GPUML_ERR_CANCELLED = 20,
    GPUML_ERR_INTERNAL = 21,        /* a gpuml bug: please report it             */
    GPUML_STATUS_COUNT_ = 22
} gpuml_status;

/* Short constant name of a status ("GPUML_ERR_SHAPE"); never NULL. */
GPUML_API const char *gpuml_status_string(gpuml_status status);

/* Message of the last error recorded on the calling thread, "" if none.
 * The pointer stays valid until the next gpuml call on this thread. */
GPUML_API const char *gpuml_last_error(void);

/* Forget the calling thread's last error. */
GPUML_API void gpuml_clear_error(void);

typedef enum gpuml_log_level {
    GPUML_LOG_DEBUG = 0,
    GPUML_LOG_INFO = 1,
    GPUML_LOG_WARN = 2,
    GPUML_LOG_ERROR = 3,
    GPUML_LOG_OFF = 4
} gpuml_log_level;

/* Log sink. Called from whichever thread logs (engine threads included), so
 * it must be thread-safe. msg has no trailing newline. */
typedef void (*gpuml_log_fn)(void *user, gpuml_log_level level, const char *msg);

#ifdef __cplusplus
}
#endif
#endif
