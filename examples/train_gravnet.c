/* train_gravnet: a GravNet model trained with object condensation on
 * HGCAL-like events (examples/gen_dataset hgcal).
 *
 *   train_gravnet --data train.h5 [--val val.h5] [--config configs/gravnet_oc.json]
 *                 [--epochs 2] [--max-rows 20000] [--max-events 16] [--lr 1e-3]
 *                 [--out model.h5] [--metrics metrics.jsonl] [--ckpt ckpt.h5]
 *                 [--ckpt-every 50] [--resume ckpt.h5] [--max-steps N] [--stop-after N]
 *                 [--device cpu|cuda] [--threads N] [--seed S] [--init-out init.h5]
 *
 * Metrics go to the JSON-lines file (one object per step, one per
 * evaluation); the final metrics are printed as one JSON line on stdout.
 * --stop-after N ends the run after step N as a crash would (the schedule
 * still spans the whole run), for resume tests (tests/test_drivers_cuda.py).
 * --init-out saves the freshly initialised model (before any step), so a
 * peer implementation can start from the same weights (bench/train_peers.py). */
#include "common/driver.h"

static double evaluate(gpuml_ctx *ctx, gpuml_trainer *tr, const char *path, int64_t max_rows, float comp[3])
{
    const char *fields[] = {"features", "truth_id"};
    gpuml_loader_config lc;
    gpuml_loader_config_init_defaults(&lc);
    lc.path = path, lc.fields = fields, lc.num_fields = 2, lc.max_rows = max_rows, lc.shuffle = 0;
    gpuml_loader *ld;
    DIE_IF(gpuml_loader_create(ctx, &lc, &ld));
    gpuml_batch *b;
    double loss = 0, c[3] = {0, 0, 0};
    int64_t events = 0;
    while (gpuml_loader_next(ld, &b) == GPUML_OK && b) {
        gpuml_step_stats s;
        DIE_IF(gpuml_trainer_evaluate_batch(tr, b, &s));
        loss += s.loss * (double)s.events;
        for (int i = 0; i < 3; i++)
            c[i] += s.components[i] * (double)s.events;
        events += s.events;
        gpuml_batch_destroy(b);
    }
    gpuml_loader_destroy(ld);
    for (int i = 0; i < 3; i++)
        comp[i] = (float)(c[i] / (double)(events ? events : 1));
    return loss / (double)(events ? events : 1);
}

int main(int argc, char **argv)
{
    opts o = {argc, argv};
    const char *data = opt_str(&o, "--data", NULL), *val = opt_str(&o, "--val", NULL);
    const char *config = opt_str(&o, "--config", "examples/configs/gravnet_oc.json");
    const char *resume = opt_str(&o, "--resume", NULL), *ckpt = opt_str(&o, "--ckpt", "gravnet_ckpt.h5");
    if (!data) {
        fprintf(stderr, "usage: train_gravnet --data FILE [options]; see the top of examples/train_gravnet.c\n");
        return 2;
    }
    long epochs = opt_int(&o, "--epochs", 2), ckpt_every = opt_int(&o, "--ckpt-every", 50);
    long max_steps = opt_int(&o, "--max-steps", -1), stop_after = opt_int(&o, "--stop-after", -1);
    int64_t max_rows = opt_int(&o, "--max-rows", 20000);
    dist_env de = dist_setup(&o); /* --distributed: one rank per process, mpirun / srun */
    gpuml_ctx *ctx = de.ctx;
    int lead = de.rank == 0;      /* rank 0 alone writes metrics, checkpoints and the model */
    FILE *metrics;
    gpuml_model *model = driver_model(&o, &de, config, "gravnet_metrics.jsonl", resume != NULL, &metrics);
    const char *fields[] = {"features", "truth_id"};
    gpuml_loader_config lc;
    gpuml_loader_config_init_defaults(&lc);
    lc.path = data, lc.fields = fields, lc.num_fields = 2, lc.max_rows = max_rows;
    lc.max_events = opt_int(&o, "--max-events", 16), lc.seed = (uint64_t)opt_int(&o, "--seed", 1);
    lc.rank = de.rank, lc.world_size = de.size; /* disjoint, row-balanced shards */
    gpuml_loader *loader;
    DIE_IF(gpuml_loader_create(ctx, &lc, &loader));
    int64_t per_epoch;
    DIE_IF(gpuml_loader_num_batches(loader, 0, &per_epoch));
    int64_t total = max_steps > 0 ? max_steps : per_epoch * epochs;

    gpuml_trainer_config tc;
    gpuml_trainer_config_init_defaults(&tc); /* object condensation on outputs beta, coords */
    tc.oc.max_objects = field_max_i32(data, "event/n_showers") + 1;
    tc.optim.lr = (float)opt_f(&o, "--lr", 1e-3);
    tc.optim.clip_norm = 1.0f;
    tc.optim.schedule = GPUML_SCHED_COSINE, tc.optim.warmup_steps = total / 20, tc.optim.total_steps = total;
    gpuml_trainer *tr;
    DIE_IF(gpuml_trainer_create(model, &tc, &tr));
    gpuml_ddp *ddp = driver_ddp(&de, model, tr);
    char summary[8192];
    gpuml_model_summary(model, summary, sizeof summary);
    fprintf(stderr, "%s", summary);

    gpuml_train_state ts = {0};
    if (resume)
        driver_resume(resume, ctx, model, tr, loader, &ts);
    progress pg;
    progress_init(&pg, total);
    double t0 = now_s(), events = 0;
    gpuml_step_stats s = {0};
    for (int64_t step = ts.step; step < total;) {
        gpuml_batch *b;
        DIE_IF(gpuml_loader_next(loader, &b));
        if (!b) { /* end of an epoch */
            ts.epoch++;
            continue;
        }
        dist_step_check(&de, &o, step + 1, gpuml_trainer_step_batch(tr, b, &s));
        gpuml_batch_destroy(b);
        step++;
        events += (double)s.events;
        double elapsed = now_s() - t0, eps = events * de.size / elapsed; /* all ranks: shards are balanced */
        if (lead) /* events, rows, time_s: per-step batch sizes and the clock, for bench/train_peers.py */
            fprintf(metrics, "{\"step\": %lld, \"epoch\": %lld, \"loss\": %.8g, \"L_V\": %.6g, \"L_beta\": %.6g, "
                         "\"L_noise\": %.6g, \"lr\": %.6g, \"events\": %lld, \"rows\": %lld, \"time_s\": %.6f, "
                         "\"events_per_s\": %.3f}\n",
                (long long)step, (long long)ts.epoch, s.loss, s.components[0], s.components[1], s.components[2],
                s.lr, (long long)s.events, (long long)s.rows, elapsed, eps);
        if (lead)
            progress_update(&pg, step, eps, "loss %.4f", s.loss);
        if (lead && ckpt_every > 0 && (step % ckpt_every == 0 || step == total))
            driver_checkpoint(ckpt, ctx, model, tr, loader, &ts, step);
        if (step == stop_after)
            break;
    }
    fflush(metrics);
    double train_time = now_s() - t0;
    float comp[3] = {0, 0, 0};
    double val_loss = val && lead ? evaluate(ctx, tr, val, max_rows, comp) : -1;
    if (val && lead)
        fprintf(metrics, "{\"eval\": \"%s\", \"loss\": %.6g, \"L_V\": %.6g, \"L_beta\": %.6g, \"L_noise\": %.6g}\n",
                val, val_loss, comp[0], comp[1], comp[2]);
    const char *out = opt_str(&o, "--out", "gravnet_model.h5");
    if (lead)
        DIE_IF(gpuml_model_save(model, out));
    if (lead)
        printf("{\"model\": \"%s\", \"steps\": %lld, \"train_loss_last\": %.6g, \"val_loss\": %.6g, "
           "\"events_per_s\": %.2f, \"train_time_s\": %.2f}\n",
           out, (long long)total, s.loss, val_loss, events * de.size / train_time, train_time);
    fclose(metrics);
    gpuml_trainer_destroy(tr);
    gpuml_ddp_destroy(ddp);
    gpuml_loader_destroy(loader);
    gpuml_model_destroy(model);
    gpuml_ctx_destroy(ctx);
    gpuml_comm_destroy(de.comm);
    return 0;
}
