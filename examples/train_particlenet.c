/* train_particlenet: ParticleNet-Lite on generated jets (examples/gen_dataset
 * jets), cross-entropy; held-out accuracy and ROC AUC.
 *
 *   train_particlenet --data train.h5 --val val.h5 [--run-dir runs/train_particlenet] [options]
 *
 * `train_particlenet --help` lists every option with its default; outputs
 * as in train_gravnet.c.
 *
 * --init-out saves the freshly initialised model (before any step), so a
 * peer implementation can start from the same weights (bench/train_peers.py). */
#include "common/driver.h"

typedef struct {
    float p;   /* probability of class 1 */
    int label;
} scored;

static int by_p(const void *a, const void *b)
{
    float x = ((const scored *)a)->p, y = ((const scored *)b)->p;
    return (x > y) - (x < y);
}

/* ROC AUC = P(score of a random positive > score of a random negative). */
static double roc_auc(scored *s, int64_t n)
{
    qsort(s, (size_t)n, sizeof *s, by_p);
    double pos = 0, neg = 0, rank_sum = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && s[j].p == s[i].p)
            j++;
        double avg_rank = 0.5 * (double)(i + 1 + j); /* ties share their mean rank */
        for (int64_t q = i; q < j; q++)
            if (s[q].label)
                rank_sum += avg_rank, pos++;
            else
                neg++;
        i = j;
    }
    return (pos > 0 && neg > 0) ? (rank_sum - pos * (pos + 1) / 2) / (pos * neg) : 0.5;
}

static void evaluate(gpuml_ctx *ctx, gpuml_trainer *tr, const char *path, double *acc, double *auc)
{
    const char *fields[] = {"points", "features", "event/label"};
    gpuml_loader_config lc;
    gpuml_loader_config_init_defaults(&lc);
    lc.path = path, lc.fields = fields, lc.num_fields = 3, lc.max_events = 256, lc.shuffle = 0;
    gpuml_loader *ld;
    DIE_IF(gpuml_loader_create(ctx, &lc, &ld));
    int64_t n = 0, cap = 1024, correct = 0;
    scored *s = malloc((size_t)cap * sizeof *s);
    gpuml_batch *b;
    while (gpuml_loader_next(ld, &b) == GPUML_OK && b) {
        gpuml_tensor *logits;
        DIE_IF(gpuml_trainer_predict_batch(tr, b, &logits));
        int64_t nb = gpuml_batch_num_events(b);
        float *lg = malloc((size_t)nb * 2 * sizeof(float));
        int32_t *lab = malloc((size_t)nb * sizeof(int32_t));
        DIE_IF(gpuml_tensor_copy_to_host(ctx, logits, lg, (size_t)nb * 2 * sizeof(float)));
        DIE_IF(gpuml_tensor_copy_to_host(ctx, gpuml_batch_field(b, 2), lab, (size_t)nb * sizeof(int32_t)));
        for (int64_t i = 0; i < nb; i++) {
            if (n == cap)
                s = realloc(s, (size_t)(cap *= 2) * sizeof *s);
            double d = (double)lg[2 * i + 1] - (double)lg[2 * i];
            s[n].p = (float)(1.0 / (1.0 + exp(-d)));
            s[n].label = lab[i];
            correct += (d > 0) == (lab[i] == 1);
            n++;
        }
        free(lg), free(lab);
        gpuml_batch_destroy(b);
    }
    *acc = (double)correct / (double)(n ? n : 1);
    *auc = roc_auc(s, n);
    free(s);
    gpuml_loader_destroy(ld);
}

int main(int argc, char **argv)
{
    driver_opts o;
    driver_opts_defaults(&o, "runs/train_particlenet", cli_data_path("configs/particlenet_lite.json"));
    o.epochs = 5, o.max_events = 64, o.lr = 3e-3, o.ckpt_every = 100;
    cli_opt table[] = {DRIVER_OPTS_COMMON(o), CLI_END};
    cli_parse(argc, argv, "ParticleNet-Lite on generated jets (gen_dataset jets), cross-entropy", table);
    const char *data = o.data, *val = o.val, *resume = o.resume;
    dist_env de = dist_setup(&o); /* --distributed: one rank per process, mpirun / srun */
    gpuml_ctx *ctx = de.ctx;
    int lead = de.rank == 0;      /* rank 0 alone writes metrics, checkpoints and the model */
    driver_outputs(&o, lead);
    const char *ckpt = o.ckpt;
    FILE *metrics;
    gpuml_model *model = driver_model(&o, &de, &metrics);
    const char *fields[] = {"points", "features", "event/label"};
    gpuml_loader_config lc;
    gpuml_loader_config_init_defaults(&lc);
    lc.path = data, lc.fields = fields, lc.num_fields = 3;
    lc.max_events = o.max_events, lc.seed = o.seed;
    lc.rank = de.rank, lc.world_size = de.size; /* disjoint, row-balanced shards */
    gpuml_loader *loader;
    DIE_IF(gpuml_loader_create(ctx, &lc, &loader));
    int64_t per_epoch;
    DIE_IF(gpuml_loader_num_batches(loader, 0, &per_epoch));
    int64_t total = o.max_steps > 0 ? o.max_steps : per_epoch * o.epochs;

    gpuml_trainer_config tc;
    gpuml_trainer_config_init_defaults(&tc);
    tc.loss = GPUML_LOSS_CROSS_ENTROPY;
    tc.num_inputs = 2, tc.input_fields[0] = 0, tc.input_fields[1] = 1, tc.target_field = 2;
    tc.optim.lr = (float)o.lr;
    tc.optim.schedule = GPUML_SCHED_COSINE, tc.optim.warmup_steps = total / 20, tc.optim.total_steps = total;
    gpuml_trainer *tr;
    DIE_IF(gpuml_trainer_create(model, &tc, &tr));
    gpuml_ddp *ddp = driver_ddp(&de, model, tr);
    gpuml_train_state ts = {0};
    if (resume)
        driver_resume(resume, &de, ctx, model, tr, loader, &ts);
    progress pg;
    progress_init(&pg, total);
    double t0 = now_s(), events = 0, acc = 0, auc = 0;
    gpuml_step_stats s = {0};
    for (int64_t step = ts.step; step < total;) {
        gpuml_batch *b;
        DIE_IF(gpuml_loader_next(loader, &b));
        if (!b) {
            ts.epoch++;
            continue;
        }
        dist_step_check(&de, &o, step + 1, gpuml_trainer_step_batch(tr, b, &s));
        gpuml_batch_destroy(b);
        step++;
        events += (double)s.events;
        double elapsed = now_s() - t0, eps = events * de.size / elapsed; /* all ranks: shards are balanced */
        if (lead) /* events, rows, time_s: per-step batch sizes and the clock, for bench/train_peers.py */
            fprintf(metrics, "{\"step\": %lld, \"epoch\": %lld, \"loss\": %.8g, \"accuracy\": %.4f, \"lr\": %.6g, "
                         "\"events\": %lld, \"rows\": %lld, \"time_s\": %.6f, \"events_per_s\": %.3f}\n",
                (long long)step, (long long)ts.epoch, s.loss, (double)s.correct / (double)s.events, s.lr,
                (long long)s.events, (long long)s.rows, elapsed, eps);
        if (lead)
            progress_update(&pg, step, eps, "loss %.4f acc %.3f", s.loss, (double)s.correct / (double)s.events);
        if (lead && o.ckpt_every > 0 && step % o.ckpt_every == 0)
            driver_checkpoint(ckpt, ctx, model, tr, loader, &ts, step);
    }
    double train_time = now_s() - t0;
    if (val && lead) {
        evaluate(ctx, tr, val, &acc, &auc);
        fprintf(metrics, "{\"eval\": \"%s\", \"accuracy\": %.4f, \"roc_auc\": %.4f}\n", val, acc, auc);
    }
    const char *out = o.out;
    if (lead)
        DIE_IF(gpuml_model_save(model, out));
    if (lead)
        printf("{\"model\": \"%s\", \"steps\": %lld, \"train_loss_last\": %.6g, \"val_accuracy\": %.4f, "
           "\"val_roc_auc\": %.4f, \"events_per_s\": %.2f, \"train_time_s\": %.2f}\n",
           out, (long long)total, s.loss, acc, auc, events * de.size / train_time, train_time);
    if (cli_out_commit()) /* metrics.jsonl.part -> metrics.jsonl */
        return 1;
    gpuml_trainer_destroy(tr);
    gpuml_ddp_destroy(ddp);
    gpuml_loader_destroy(loader);
    gpuml_model_destroy(model);
    gpuml_ctx_destroy(ctx);
    gpuml_comm_destroy(de.comm);
    return 0;
}
