/* examples/common/cli.h - the command line of every example and benchmark
 * program: one table of options, parsed strictly, and the run's output
 * files. Header-only; examples are not the library.
 *
 *   static int epochs = 2;  static const char *data = NULL;
 *   cli_opt opts[] = {
 *       CLI_STR_REQ("data", &data, "FILE", "training dataset"),
 *       CLI_INT("epochs", &epochs, 1, 1000000, "passes over the data"),
 *       CLI_END};
 *   cli_parse(argc, argv, "train: a short summary", opts);
 *
 * The default of an option is the value its variable holds before
 * cli_parse, so `--help` prints it (and cannot drift from the code).
 * Options are `--name value` or `--name=value`, matched exactly (no
 * abbreviations); `--` ends them. Positional arguments are table entries
 * made with CLI_POS*, filled in order.
 *
 * Errors (exit status 2, a message naming the option on stderr): an
 * unknown option, a missing value, a number that is not entirely a number
 * or is out of its range (no atoi: "abc" is not 0), a `--device` other than
 * cpu, cuda or cuda:N, a missing required option or positional, an extra
 * positional. `--help` prints every option with its default and exits 0.
 *
 * Output files (cli_out_open): written under PATH.part and renamed to PATH
 * by cli_out_commit() when the run succeeds. A run that exits without
 * committing (an error, exit(1) from DIE_IF) removes empty .part files and
 * says where non-empty partial ones are, so a failed run leaves no empty or
 * half-written file under the final name; cli_run_dir() creates the run
 * directory and removes it again when a failed run left it empty. */
#ifndef GPUML_EXAMPLES_CLI_H
#define GPUML_EXAMPLES_CLI_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <ctype.h>
#include <errno.h>
#include <gpuml/context.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum {
    CLI_T_STR,    /* const char **           */
    CLI_T_INT,    /* int *                   */
    CLI_T_I64,    /* int64_t *               */
    CLI_T_U64,    /* uint64_t *              */
    CLI_T_F64,    /* double *                */
    CLI_T_FLAG,   /* int *: set to 1, no value */
    CLI_T_DEVICE, /* gpuml_device *: cpu | cuda | cuda:N */
    CLI_T_CHOICE, /* const char **, one of choices ("a|b|c") */
    CLI_T_REST,   /* cli_rest *: every remaining positional argument */
} cli_type;

typedef struct {
    int n;
    char **v; /* points into argv */
} cli_rest;

typedef struct {
    const char *name; /* option: "epochs" for --epochs; positional: its metavar; NULL ends the table */
    cli_type type;
    void *dst;
    const char *metavar; /* NULL: from the type */
    const char *help;
    double lo, hi;       /* numbers: inclusive range */
    const char *choices; /* CLI_T_CHOICE */
    const char *unset; /* strings: what NULL means, for --help ("RUN_DIR/model.h5") */
    int required;
    int positional;
    int seen; /* set by cli_parse */
} cli_opt;

#define CLI_NUM_(t, n, d, lo_, hi_, h) {.name = n, .type = t, .dst = d, .help = h, .lo = (double)(lo_), .hi = (double)(hi_)}
#define CLI_INT(n, d, lo, hi, h) CLI_NUM_(CLI_T_INT, n, d, lo, hi, h)
#define CLI_I64(n, d, lo, hi, h) CLI_NUM_(CLI_T_I64, n, d, lo, hi, h)
#define CLI_U64(n, d, h) CLI_NUM_(CLI_T_U64, n, d, 0, 0, h)
#define CLI_F64(n, d, lo, hi, h) CLI_NUM_(CLI_T_F64, n, d, lo, hi, h)
#define CLI_STR(n, d, mv, h) {.name = n, .type = CLI_T_STR, .dst = d, .metavar = mv, .help = h}
#define CLI_STR_OR(n, d, mv, unset_, h) {.name = n, .type = CLI_T_STR, .dst = d, .metavar = mv, .help = h, .unset = unset_}
#define CLI_STR_REQ(n, d, mv, h) {.name = n, .type = CLI_T_STR, .dst = d, .metavar = mv, .help = h, .required = 1}
#define CLI_FLAG(n, d, h) {.name = n, .type = CLI_T_FLAG, .dst = d, .help = h}
#define CLI_DEVICE(d) {.name = "device", .type = CLI_T_DEVICE, .dst = d, .help = "cpu, cuda (GPU 0) or cuda:N"}
#define CLI_CHOICE(n, d, ch, h) {.name = n, .type = CLI_T_CHOICE, .dst = d, .choices = ch, .help = h}
/* Positionals: required ones first. */
#define CLI_POS_STR(mv, d, req, h) {.name = mv, .type = CLI_T_STR, .dst = d, .help = h, .required = req, .positional = 1}
#define CLI_POS_CHOICE(mv, d, ch, h)                                                                             \
    {.name = mv, .type = CLI_T_CHOICE, .dst = d, .choices = ch, .help = h, .required = 1, .positional = 1}
#define CLI_POS_NUM(t, mv, d, lo_, hi_, h)                                                                       \
    {.name = mv, .type = t, .dst = d, .help = h, .lo = (double)(lo_), .hi = (double)(hi_), .positional = 1}
#define CLI_POS_REST(mv, d, req, h) {.name = mv, .type = CLI_T_REST, .dst = d, .help = h, .required = req, .positional = 1}
#define CLI_END {.name = NULL}

static const char *cli_prog_ = "program";

static inline void cli_fail_(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void cli_fail_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cli_prog_);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(%s --help lists the options)\n", cli_prog_);
    exit(2);
}

/* "cpu", "cuda", "cuda:N" (N decimal, 0-1023); 0 on success. */
static inline int cli_device_from_string(const char *s, gpuml_device *d)
{
    if (!strcmp(s, "cpu")) {
        d->type = GPUML_DEVICE_CPU, d->index = 0;
        return 0;
    }
    if (strncmp(s, "cuda", 4))
        return -1;
    if (s[4] == '\0') {
        d->type = GPUML_DEVICE_CUDA, d->index = 0;
        return 0;
    }
    if (s[4] != ':' || !isdigit((unsigned char)s[5]) || strlen(s + 5) > 4)
        return -1;
    for (const char *p = s + 5; *p; p++)
        if (!isdigit((unsigned char)*p))
            return -1;
    d->type = GPUML_DEVICE_CUDA, d->index = atoi(s + 5); /* all digits, at most 4: cannot overflow */
    return d->index < 1024 ? 0 : -1;
}

static inline const char *cli_dash_(const cli_opt *o) { return o->positional ? "" : "--"; }

/* Parse one value into o->dst; exits 2 with a message on any error. */
static inline void cli_set_(cli_opt *o, const char *v)
{
    const char *what = o->name, *dash = cli_dash_(o);
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case CLI_T_STR:
        *(const char **)o->dst = v;
        break;
    case CLI_T_CHOICE: {
        size_t n = strlen(v);
        const char *c = o->choices;
        while (c) {
            const char *bar = strchr(c, '|');
            size_t len = bar ? (size_t)(bar - c) : strlen(c);
            if (len == n && n > 0 && !strncmp(c, v, n)) {
                *(const char **)o->dst = v;
                return;
            }
            c = bar ? bar + 1 : NULL;
        }
        cli_fail_("%s%s: '%s' is not one of %s", dash, what, v, o->choices);
    }
    case CLI_T_INT:
    case CLI_T_I64: {
        if (!*v || isspace((unsigned char)*v))
            cli_fail_("%s%s: '%s' is not an integer", dash, what, v);
        long long x = strtoll(v, &end, 10);
        if (*end)
            cli_fail_("%s%s: '%s' is not an integer", dash, what, v);
        if (errno == ERANGE || (double)x < o->lo || (double)x > o->hi)
            cli_fail_("%s%s: %s is out of range [%.0f, %.0f]", dash, what, v, o->lo, o->hi);
        if (o->type == CLI_T_INT)
            *(int *)o->dst = (int)x; /* the range fits an int: checked by cli_check_table_ */
        else
            *(int64_t *)o->dst = (int64_t)x;
        break;
    }
    case CLI_T_U64: {
        if (!isdigit((unsigned char)*v)) /* strtoull would take "-1" as 2^64 - 1 */
            cli_fail_("%s%s: '%s' is not a non-negative integer", dash, what, v);
        unsigned long long x = strtoull(v, &end, 10);
        if (*end)
            cli_fail_("%s%s: '%s' is not a non-negative integer", dash, what, v);
        if (errno == ERANGE)
            cli_fail_("%s%s: %s is out of range [0, %llu]", dash, what, v, (unsigned long long)UINT64_MAX);
        *(uint64_t *)o->dst = (uint64_t)x;
        break;
    }
    case CLI_T_F64: {
        if (!*v || isspace((unsigned char)*v))
            cli_fail_("%s%s: '%s' is not a number", dash, what, v);
        double x = strtod(v, &end);
        if (*end || isnan(x))
            cli_fail_("%s%s: '%s' is not a number", dash, what, v);
        if (errno == ERANGE && fabs(x) > 1.0) /* overflow; underflow to ~0 is fine */
            cli_fail_("%s%s: %s is out of range", dash, what, v);
        if (!(x >= o->lo && x <= o->hi))
            cli_fail_("%s%s: %s is out of range [%g, %g]", dash, what, v, o->lo, o->hi);
        *(double *)o->dst = x;
        break;
    }
    case CLI_T_DEVICE:
        if (cli_device_from_string(v, (gpuml_device *)o->dst))
            cli_fail_("--%s: '%s' is not a device: use cpu, cuda or cuda:N", what, v);
        break;
    case CLI_T_FLAG:
        *(int *)o->dst = 1;
        break;
    case CLI_T_REST: {
        cli_rest *r = o->dst;
        r->v[r->n++] = (char *)v;
        break;
    }
    }
}

static inline void cli_default_(const cli_opt *o, char *buf, size_t n)
{
    if (o->required) {
        snprintf(buf, n, "required");
        return;
    }
    switch (o->type) {
    case CLI_T_STR:
    case CLI_T_CHOICE: {
        const char *s = *(const char *const *)o->dst;
        snprintf(buf, n, "default: %s", s ? s : o->unset ? o->unset : "none");
        break;
    }
    case CLI_T_INT: snprintf(buf, n, "default: %d", *(const int *)o->dst); break;
    case CLI_T_I64: snprintf(buf, n, "default: %lld", (long long)*(const int64_t *)o->dst); break;
    case CLI_T_U64: snprintf(buf, n, "default: %llu", (unsigned long long)*(const uint64_t *)o->dst); break;
    case CLI_T_F64: snprintf(buf, n, "default: %g", *(const double *)o->dst); break;
    case CLI_T_FLAG: snprintf(buf, n, "default: %s", *(const int *)o->dst ? "on" : "off"); break;
    case CLI_T_REST: snprintf(buf, n, "default: none"); break;
    case CLI_T_DEVICE: {
        const gpuml_device *d = o->dst;
        if (d->type == GPUML_DEVICE_CPU)
            snprintf(buf, n, "default: cpu");
        else
            snprintf(buf, n, "default: cuda:%d", d->index);
        break;
    }
    }
}

static inline const char *cli_metavar_(const cli_opt *o)
{
    if (o->metavar)
        return o->metavar;
    switch (o->type) {
    case CLI_T_INT:
    case CLI_T_I64:
    case CLI_T_U64: return "N";
    case CLI_T_F64: return "X";
    case CLI_T_DEVICE: return "DEV";
    case CLI_T_CHOICE: return o->choices;
    case CLI_T_FLAG: return "";
    default: return "STR";
    }
}

static inline void cli_help_(const char *summary, const cli_opt *opts)
{
    printf("usage: %s [options]", cli_prog_);
    for (const cli_opt *o = opts; o->name; o++)
        if (o->positional)
            printf(o->required ? " %s%s" : " [%s%s]", o->name, o->type == CLI_T_REST ? "..." : "");
    printf("\n%s\n\n", summary);
    for (const cli_opt *o = opts; o->name; o++) {
        char left[96], def[160];
        if (o->positional)
            snprintf(left, sizeof left, "%s", o->name);
        else
            snprintf(left, sizeof left, "--%s%s%s", o->name, o->type == CLI_T_FLAG ? "" : " ", cli_metavar_(o));
        cli_default_(o, def, sizeof def);
        printf("  %-24s %s (%s)\n", left, o->help, def);
    }
    printf("  %-24s %s\n", "--help", "print this help and exit");
}

/* The table itself: integer ranges must fit the variable (a programming
 * error otherwise; caught by the --help test of every program). */
static inline void cli_check_table_(const cli_opt *opts)
{
    for (const cli_opt *o = opts; o->name; o++)
        if ((o->type == CLI_T_INT && (o->lo < INT_MIN || o->hi > INT_MAX)) || o->lo > o->hi) {
            fprintf(stderr, "%s: bad option table entry %s\n", cli_prog_, o->name);
            exit(70);
        }
}

/* Parses argv into the table; returns only when everything parsed (or
 * exits: 0 after --help, 2 on any error). */
static inline void cli_parse(int argc, char **argv, const char *summary, cli_opt *opts)
{
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    cli_prog_ = slash ? slash + 1 : argc > 0 ? argv[0] : "program";
    cli_check_table_(opts);
    cli_opt *next_pos = opts;
    int only_pos = 0;
    for (cli_opt *o = opts; o->name; o++)
        if (o->type == CLI_T_REST) {
            cli_rest *r = o->dst;
            r->n = 0;
            r->v = argv + 1; /* in place: argv[1 + k] is already parsed when the k-th one is stored */
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && !strcmp(a, "--")) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && !strcmp(a, "--help")) {
            cli_help_(summary, opts);
            exit(0);
        }
        if (!only_pos && a[0] == '-' && a[1] != '\0') {
            if (a[1] != '-')
                cli_fail_("unknown option '%s' (options are --name)", a);
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            cli_opt *o = opts;
            for (; o->name; o++)
                if (!o->positional && strlen(o->name) == len && !strncmp(o->name, a + 2, len))
                    break;
            if (!o->name)
                cli_fail_("unknown option '%.*s'", (int)(len + 2), a);
            if (o->type == CLI_T_FLAG) {
                if (eq)
                    cli_fail_("option '--%s' takes no value", o->name);
                cli_set_(o, NULL);
            } else if (eq) {
                cli_set_(o, eq + 1);
            } else {
                /* "--data --epochs 3": a forgotten value, not a file named --epochs */
                if (i + 1 >= argc || (argv[i + 1][0] == '-' && argv[i + 1][1] == '-'))
                    cli_fail_("option '--%s' needs a value (%s)", o->name, cli_metavar_(o));
                cli_set_(o, argv[++i]);
            }
            o->seen = 1;
            continue;
        }
        while (next_pos->name && !next_pos->positional)
            next_pos++;
        if (!next_pos->name)
            cli_fail_("unexpected argument '%s'", a);
        if (next_pos->type == CLI_T_REST) {
            cli_set_(next_pos, a);
            next_pos->seen = 1;
            continue; /* takes all that follow */
        }
        cli_set_(next_pos, a);
        next_pos->seen = 1;
        next_pos++;
    }
    for (cli_opt *o = opts; o->name; o++)
        if (o->required && !o->seen)
            cli_fail_(o->positional ? "missing argument %s%s" : "missing option '%s%s'", cli_dash_(o), o->name);
}

/* 1 when the option was given on the command line. */
static inline int cli_given(const cli_opt *opts, const char *name)
{
    for (const cli_opt *o = opts; o->name; o++)
        if (!strcmp(o->name, name))
            return o->seen;
    return 0;
}

/* Before creating a context on `d`: a CUDA device this build and this
 * machine do not have is an error (exit 2), never a silent CPU run. */
static inline void cli_require_device(gpuml_device d)
{
    if (d.type != GPUML_DEVICE_CUDA)
        return;
    if (!gpuml_has_feature("cuda"))
        cli_fail_("--device cuda:%d: this gpuml was built without CUDA (meson option cuda)", d.index);
    int n = gpuml_cuda_device_count();
    if (d.index >= n)
        cli_fail_("--device cuda:%d: %s", d.index,
                  n == 0 ? "no usable CUDA device (no GPU or no driver)" : "no such CUDA device");
}

/* ---- files --------------------------------------------------------------- */

/* A default data file (e.g. "configs/gravnet_oc.json") wherever this
 * program's files are: next to an installed program
 * (<prefix>/share/gpuml/<rel>, found from /proc/self/exe), else in the
 * source tree it was built from (GPUML_EXAMPLES_DIR, set by meson). The
 * working directory plays no part. Returns a static buffer; the source-tree
 * path when neither exists (the error then names it). */
static inline const char *cli_data_path(const char *rel)
{
    static char buf[8][PATH_MAX];
    static int slot;
    char *out = buf[slot++ % 8];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *s = strrchr(exe, '/');
        if (s) {
            *s = '\0'; /* <prefix>/bin */
            int len = snprintf(out, PATH_MAX, "%s/../share/gpuml/%s", exe, rel);
            if (len > 0 && len < PATH_MAX && access(out, R_OK) == 0)
                return out;
        }
    }
#ifdef GPUML_EXAMPLES_DIR
    snprintf(out, PATH_MAX, "%s/%s", GPUML_EXAMPLES_DIR, rel);
#else
    snprintf(out, PATH_MAX, "%s", rel);
#endif
    return out;
}

typedef struct {
    char path[PATH_MAX], part[PATH_MAX];
    FILE *f;
} cli_outfile_;

static cli_outfile_ cli_outs_[8];
static int cli_nouts_, cli_committed_;
static char cli_made_dir_[PATH_MAX];

static inline void cli_cleanup_(void)
{
    if (cli_committed_)
        return;
    for (int i = 0; i < cli_nouts_; i++) {
        cli_outfile_ *o = &cli_outs_[i];
        long size = -1;
        if (o->f) {
            fflush(o->f);
            size = ftell(o->f);
            fclose(o->f);
            o->f = NULL;
        }
        if (!o->part[0]) {
            continue;
        } else if (size == 0) {
            remove(o->part);
        } else if (size > 0) {
            fprintf(stderr, "%s: the run failed; what it wrote is in %s\n", cli_prog_, o->part);
        }
    }
    if (cli_made_dir_[0])
        rmdir(cli_made_dir_); /* only when empty: fails harmlessly otherwise */
}

static inline void cli_register_cleanup_(void)
{
    static int done;
    if (!done) {
        atexit(cli_cleanup_);
        done = 1;
    }
}

/* mkdir -p DIR; remembered so a failed run that leaves it empty removes it. */
static inline void cli_run_dir(const char *dir)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    struct stat st;
    if (stat(p, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            cli_fail_("--run-dir %s: exists and is not a directory", dir);
        return;
    }
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0777); /* parents; EEXIST is fine, other errors show below */
            *s = '/';
        }
    if (mkdir(p, 0777) != 0) {
        fprintf(stderr, "%s: cannot create the run directory %s: %s\n", cli_prog_, dir, strerror(errno));
        exit(1);
    }
    snprintf(cli_made_dir_, sizeof cli_made_dir_, "%s", dir);
    cli_register_cleanup_();
}

/* DIR/NAME in a static buffer (a few at a time). */
static inline const char *cli_join(const char *dir, const char *name)
{
    static char buf[8][PATH_MAX];
    static int slot;
    char *out = buf[slot++ % 8];
    snprintf(out, PATH_MAX, "%s/%s", dir, name);
    return out;
}

/* An output text file, written as PATH.part until cli_out_commit().
 * append: start from PATH's current contents (resuming a run). */
static inline FILE *cli_out_open(const char *path, int append)
{
    if (cli_nouts_ == (int)(sizeof cli_outs_ / sizeof cli_outs_[0])) {
        fprintf(stderr, "%s: too many output files\n", cli_prog_);
        exit(1);
    }
    cli_outfile_ *o = &cli_outs_[cli_nouts_];
    snprintf(o->path, sizeof o->path, "%s", path);
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        o->part[0] = '\0'; /* /dev/null, a pipe: written directly, nothing to rename */
        o->f = fopen(path, append ? "a" : "w");
    } else {
        snprintf(o->part, sizeof o->part, "%s.part", path);
        o->f = fopen(o->part, "w");
    }
    if (!o->f) {
        fprintf(stderr, "%s: cannot write %s: %s\n", cli_prog_, o->part[0] ? o->part : path, strerror(errno));
        exit(1);
    }
    cli_nouts_++;
    cli_register_cleanup_();
    FILE *old = append && o->part[0] ? fopen(path, "r") : NULL;
    if (old) {
        char buf[1 << 14];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, old)) > 0)
            fwrite(buf, 1, n, o->f);
        fclose(old);
    }
    return o->f;
}

/* The run succeeded: every output file closed and renamed to its final
 * name. 0 on success. */
static inline int cli_out_commit(void)
{
    int bad = 0;
    for (int i = 0; i < cli_nouts_; i++) {
        cli_outfile_ *o = &cli_outs_[i];
        if (o->f && fclose(o->f) != 0)
            bad = 1;
        o->f = NULL;
        if (!bad && o->part[0] && rename(o->part, o->path) != 0) {
            fprintf(stderr, "%s: cannot rename %s to %s: %s\n", cli_prog_, o->part, o->path, strerror(errno));
            bad = 1;
        }
    }
    if (bad)
        return 1;
    cli_committed_ = 1;
    return 0;
}

#endif
