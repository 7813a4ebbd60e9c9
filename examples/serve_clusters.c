/* serve_clusters: a trained object condensation model served through the
 * asynchronous engine, asking for showers instead of raw beta and
 * coordinates (gpuml_engine_config.clusters, include/gpuml/infer.h).
 *
 *   serve_clusters --model gravnet_model.h5 --data hgcal_val.h5 [--device cpu|cuda]
 *                  [--threads 2] [--t-beta 0.1] [--t-d 0.5] [--min-energy 1]
 *
 * Every event of the file is submitted at once (the engine batches them);
 * each completion callback receives, per hit, its cluster id and, per
 * cluster, its condensation point and energy (the hits' energy column 3).
 * The clusters are then matched to the truth showers (gpuml_cluster_eval):
 * the same numbers as train_gravnet's "trained" row for the same file and
 * thresholds. Prints a summary and the metrics as one JSON line. */
#include <pthread.h>
#include <stdatomic.h>

#include "common/driver.h"
#include "common/oc_eval.h"

typedef struct pending {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int64_t left;
    gpuml_status first_error;
} pending;

static void on_done(void *user, gpuml_status st)
{
    pending *p = user;
    pthread_mutex_lock(&p->lock);
    if (st != GPUML_OK && p->first_error == GPUML_OK)
        p->first_error = st;
    if (--p->left == 0)
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->lock);
}

int main(int argc, char **argv)
{
    driver_opts o;
    driver_opts_defaults(&o, NULL, NULL);
    const char *model = NULL, *data = NULL;
    int threads = 0;
    double t_beta = 0.1, t_d = 0.5, min_energy = 1.0;
    cli_opt table[] = {CLI_STR_REQ("model", &model, "FILE", "trained object condensation model (train_gravnet --out)"),
                       CLI_STR_REQ("data", &data, "FILE", "events to cluster (gen_dataset hgcal)"),
                       CLI_DEVICE(&o.device),
                       CLI_INT("threads", &threads, 0, 4096, "engine CPU threads (0: the engine's default)"),
                       CLI_F64("t-beta", &t_beta, 0, 1, "beta threshold of a condensation point"),
                       CLI_F64("t-d", &t_d, 0, 1e30, "distance threshold in the clustering space"),
                       CLI_F64("min-energy", &min_energy, 0, 1e30, "metrics: showers counted above [GeV]"),
                       CLI_END};
    cli_parse(argc, argv, "a trained object condensation model served with clusters as its output", table);
    gpuml_ctx *ctx = make_ctx(&o);
    gpuml_engine_config cfg;
    gpuml_engine_config_init_defaults(&cfg);
    cfg.device = gpuml_ctx_device(ctx);
    cfg.cpu_threads = threads;
    cfg.max_batch_events = 16, cfg.max_batch_rows = 16384;
    cfg.clusters.enabled = 1;
    cfg.clusters.beta_output = 0, cfg.clusters.coords_output = 1; /* the model's outputs: beta, coords */
    cfg.clusters.energy_input = 0, cfg.clusters.energy_column = 3; /* hits: x, y, z, energy, layer */
    cfg.clusters.t_beta = (float)t_beta, cfg.clusters.t_d = (float)t_d;
    gpuml_engine *eng;
    DIE_IF(gpuml_engine_create(model, &cfg, &eng));
    int n_out = gpuml_model_num_outputs(gpuml_engine_model(eng));

    gpuml_dataset *ds;
    DIE_IF(gpuml_dataset_open(data, &ds));
    int64_t nev = gpuml_dataset_num_events(ds);
    gpuml_tensor *rs_t, *feat_t;
    int64_t *rs;
    float *feat;
    int32_t *truth;
    DIE_IF(oc_eval_read(ds, ctx, 0, nev, &rs_t, &feat_t, &rs, &feat, &truth));
    int64_t n = rs[nev];
    /* cluster outputs for all events: id, cp, energy per row, count per event */
    float *cl = malloc((size_t)(3 * n + nev + 1) * sizeof(float));
    float **outs = calloc((size_t)nev * (size_t)(n_out + 4), sizeof(float *));
    const float **ins = calloc((size_t)nev, sizeof(float *));
    if (!cl || !outs || !ins) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    pending p = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, nev, GPUML_OK};
    double t0 = now_s();
    for (int64_t e = 0; e < nev; e++) {
        float **oe = outs + e * (n_out + 4); /* the model's own outputs stay NULL: not wanted */
        oe[n_out + 0] = cl + rs[e];
        oe[n_out + 1] = cl + n + rs[e];
        oe[n_out + 2] = cl + 2 * n + rs[e];
        oe[n_out + 3] = cl + 3 * n + e;
        ins[e] = feat + rs[e] * 5;
        gpuml_engine_request req;
        gpuml_engine_request_init(&req);
        req.rows = rs[e + 1] - rs[e], req.inputs = &ins[e], req.outputs = oe;
        gpuml_status st;
        while ((st = gpuml_engine_submit(eng, &req, on_done, &p)) == GPUML_ERR_QUEUE_FULL)
            nanosleep(&(struct timespec){0, 200000}, NULL);
        DIE_IF(st);
    }
    pthread_mutex_lock(&p.lock);
    while (p.left > 0)
        pthread_cond_wait(&p.cv, &p.lock);
    pthread_mutex_unlock(&p.lock);
    double wall = now_s() - t0;
    DIE_IF(p.first_error);

    gpuml_cluster_eval_config ec;
    gpuml_cluster_eval_config_init_defaults(&ec);
    ec.min_energy = min_energy;
    gpuml_cluster_eval *ev;
    DIE_IF(gpuml_cluster_eval_create(&ec, &ev));
    int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    float *energy = malloc((size_t)(n ? n : 1) * sizeof(float));
    int64_t clusters = 0;
    for (int64_t i = 0; i < n; i++)
        ids[i] = (int32_t)cl[i], energy[i] = feat[i * 5 + 3];
    for (int64_t e = 0; e < nev; e++) {
        clusters += (int64_t)cl[3 * n + e];
        DIE_IF(gpuml_cluster_eval_add(ev, rs[e + 1] - rs[e], truth + rs[e], energy + rs[e], ids + rs[e]));
    }
    gpuml_cluster_eval_result r;
    DIE_IF(gpuml_cluster_eval_get(ev, &r));
    fprintf(stderr, "served %lld events through the engine in %.3f s (%.1f events/s), %.2f clusters per event\n",
            (long long)nev, wall, (double)nev / wall, (double)clusters / (double)(nev ? nev : 1));
    if (nev > 0) {
        fprintf(stderr, "event 0: %d clusters;", (int)cl[3 * n]);
        for (int c = 0; c < (int)cl[3 * n] && c < 8; c++)
            fprintf(stderr, " [cp row %d, %.2f GeV]", (int)cl[n + c], (double)cl[2 * n + c]);
        fprintf(stderr, "\n");
    }
    printf("{\"served_events\": %lld, \"events_per_s\": %.2f, \"clusters\": ", (long long)nev, (double)nev / wall);
    oc_eval_json(stdout, &r);
    printf("}\n");
    gpuml_cluster_eval_destroy(ev);
    gpuml_engine_destroy(eng);
    gpuml_tensor_destroy(rs_t), gpuml_tensor_destroy(feat_t);
    gpuml_dataset_close(ds);
    gpuml_ctx_destroy(ctx);
    free(rs), free(feat), free(truth), free(cl), free(outs), free(ins), free(ids), free(energy);
    return 0;
}
