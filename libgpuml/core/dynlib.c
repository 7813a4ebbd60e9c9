/* Optional libraries opened with dlopen (see dynlib.h). */
#define _GNU_SOURCE /* RTLD_NODELETE */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "core/dynlib.h"
#include "core/internal.h"

gpuml_status gpuml_dynlib_load(const char *what, const char *env_var, const char *soname, const char *const *names,
                               void **fns, size_t n, const char *fn)
{
    const char *file = env_var ? getenv(env_var) : NULL;
    if (!file || !*file)
        file = soname;
    void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) {
        const char *e = dlerror();
        return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn,
                          "%s is needed here but could not be loaded: dlopen(\"%s\") failed: %s (set %s to the "
                          "library's path)", what, file, e ? e : "unknown error", env_var ? env_var : "its path");
    }
    /* Resolve all before writing any, so a failure leaves fns untouched. */
    void *tmp[64];
    if (n > sizeof tmp / sizeof tmp[0]) {
        dlclose(h);
        return gpuml_fail(NULL, GPUML_ERR_INTERNAL, fn, "gpuml_dynlib_load: %zu symbols asked for, at most 64", n);
    }
    for (size_t i = 0; i < n; i++) {
        dlerror();
        tmp[i] = dlsym(h, names[i]);
        if (!tmp[i]) {
            const char *e = dlerror();
            dlclose(h);
            return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn,
                              "%s loaded from \"%s\" lacks the function %s (%s): too old for this gpuml", what, file,
                              names[i], e ? e : "no such symbol");
        }
    }
    memcpy(fns, tmp, n * sizeof *fns);
    /* RTLD_NODELETE: the library stays mapped; this drops only our count. */
    dlclose(h);
    return GPUML_OK;
}
