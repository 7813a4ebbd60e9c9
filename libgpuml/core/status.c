/* Status strings, per-thread last error, logging. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "core/runtime.h"

/* The last error is per thread, like errno: a context may be used by one
 * thread at a time, but functions without a context (and the engine, which
 * is called from many threads) still need a place for their message. */
static _Thread_local char tl_last_error[GPUML_MSG_MAX];

static const char *const status_names[GPUML_STATUS_COUNT_] = {
    "GPUML_OK",
    "GPUML_ERR_INVALID_ARGUMENT",
    "GPUML_ERR_SHAPE",
    "GPUML_ERR_DTYPE",
    "GPUML_ERR_DEVICE_MISMATCH",
    "GPUML_ERR_OUT_OF_MEMORY",
    "GPUML_ERR_NO_DEVICE",
    "GPUML_ERR_UNSUPPORTED",
    "GPUML_ERR_CUDA",
    "GPUML_ERR_CUBLAS",
    "GPUML_ERR_CUDNN",
    "GPUML_ERR_NCCL",
    "GPUML_ERR_MPI",
    "GPUML_ERR_HDF5",
    "GPUML_ERR_IO",
    "GPUML_ERR_FORMAT",
    "GPUML_ERR_NOT_FOUND",
    "GPUML_ERR_STATE",
    "GPUML_ERR_QUEUE_FULL",
    "GPUML_ERR_TIMEOUT",
    "GPUML_ERR_CANCELLED",
    "GPUML_ERR_INTERNAL",
};

const char *gpuml_status_string(gpuml_status status)
{
    if ((int)status < 0 || status >= GPUML_STATUS_COUNT_)
        return "GPUML_ERR_UNKNOWN";
    return status_names[status];
}

const char *gpuml_last_error(void) { return tl_last_error; }

void gpuml_clear_error(void) { tl_last_error[0] = '\0'; }

void gpuml_log_default(gpuml_log_level level, const char *msg)
{
    static const char *const names[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "gpuml %s: %s\n", names[level < GPUML_LOG_OFF ? level : GPUML_LOG_ERROR], msg);
}

static void log_message(const gpuml_ctx *ctx, gpuml_log_level level, const char *msg)
{
    gpuml_log_level threshold = ctx ? ctx->log_level : GPUML_LOG_WARN;
    if (level < threshold || level >= GPUML_LOG_OFF)
        return;
    if (ctx && ctx->log_fn)
        ctx->log_fn(ctx->log_user, level, msg);
    else
        gpuml_log_default(level, msg);
}

void gpuml_ctx_log(const gpuml_ctx *ctx, gpuml_log_level level, const char *fmt, ...)
{
    char buf[GPUML_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_message(ctx, level, buf);
}

gpuml_status gpuml_fail(const gpuml_ctx *ctx, gpuml_status status, const char *fn, const char *fmt,
                        ...)
{
    char body[GPUML_MSG_MAX - 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    /* Errors raised by an inner call keep their (more precise) text when an
     * outer function only passes the status up: callers use GPUML_TRY. */
    snprintf(tl_last_error, sizeof tl_last_error, "%s: %s", fn ? fn : "gpuml", body);
    if (ctx) {
        /* The context is owned by the calling thread for the duration of the
         * call, so writing its message buffer is not a race. */
        gpuml_ctx *mctx = (gpuml_ctx *)ctx;
        memcpy(mctx->last_error, tl_last_error, sizeof mctx->last_error);
    }
    log_message(ctx, GPUML_LOG_DEBUG, tl_last_error);
    return status;
}

void gpuml_ctx_adopt_error(gpuml_ctx *ctx)
{
    if (ctx)
        memcpy(ctx->last_error, tl_last_error, sizeof ctx->last_error);
}

const char *gpuml_ctx_last_error(const gpuml_ctx *ctx) { return ctx ? ctx->last_error : ""; }

const char *gpuml_shape_str(int ndim, const int64_t *shape, char *buf, size_t size)
{
    size_t used = 0;
    if (size == 0)
        return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}
