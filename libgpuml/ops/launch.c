/* libgpuml/ops/launch.c - where kernels say why they failed, and how that
 * becomes the caller's message (kernels/common.h, gpuml_kfail). */
#include <stdio.h>
#include <string.h>

#include "ops/dispatch.h"

/* Kernels run their failing checks on the calling thread (before any
 * parallel loop), so one record per thread is enough, as for the thread's
 * last error. */
static _Thread_local gpuml_kfail tl_kfail;

gpuml_kfail *gpuml_kfail_slot(void) { return &tl_kfail; }

gpuml_status gpuml_launch_report(gpuml_ctx *ctx, gpuml_status st)
{
    gpuml_kfail f = tl_kfail;
    memset(&tl_kfail, 0, sizeof tl_kfail);
    if (!f.what) { /* failed in a call that recorded its own message */
        gpuml_ctx_adopt_error(ctx);
        return st;
    }
    char vals[64] = "", detail[GPUML_MSG_MAX / 2] = "";
    if (f.nv == 1)
        snprintf(vals, sizeof vals, " (%lld)", f.v[0]);
    else if (f.nv >= 2)
        snprintf(vals, sizeof vals, " (%lld, %lld)", f.v[0], f.v[1]);
    if (f.detail && f.code)
        snprintf(detail, sizeof detail, ": %s (%s)", f.detail, f.code);
    else if (f.detail || f.code)
        snprintf(detail, sizeof detail, ": %s", f.detail ? f.detail : f.code);
    return gpuml_fail(ctx, st, f.op ? f.op : "kernel", "%s%s%s", f.what, vals, detail);
}
