/* train_gravnet: a GravNet model trained with object condensation on
 * HGCAL-like events (examples/gen_dataset hgcal).
 *
 *   train_gravnet --data train.h5 [--val val.h5] [--run-dir runs/train_gravnet] [options]
 *
 * `train_gravnet --help` lists every option with its default. The outputs
 * (model.h5, metrics.jsonl, checkpoint.h5) go to the run directory unless
 * --out / --metrics / --ckpt name other files; the metrics file appears
 * under its name only when the run succeeds (metrics.jsonl.part until then).
 *
 * Metrics go to the JSON-lines file (one object per step, one per
 * evaluation); the final metrics are printed as one JSON line on stdout.
 * --stop-after N ends the run after step N as a crash would (the schedule
 * still spans the whole run), for resume tests (tests/test_drivers_cuda.py).
 * --init-out saves the freshly initialised model (before any step), so a
 * peer implementation can start from the same weights (bench/train_peers.py).
 *
 * With --val, the end also shows physics: the model's outputs through
 * gpuml_oc_cluster (--t-beta 0.1, --t-d 0.5), matched to the truth showers
 * (include/gpuml/cluster.h; --min-energy 1 GeV), for the trained model, the
 * same model untrained and the CLUE baseline on the raw hits (--clue-dc 5,
 * --clue-rhoc 0.2, --clue-seed 10, --clue-outlier 20 [cm, GeV]: the
 * library's defaults, tuned on training events); a table on stderr and
 * "physics" in the final JSON line. */
#include "common/driver.h"
#include "common/oc_eval.h"

/* Physics of the trained model, the untrained one (same config and seed)
 * and CLUE on the validation file: a table on stderr, JSON into buf. */
typedef struct {
    double t_beta, t_d, clue_dc, clue_rhoc, clue_seed, clue_outlier, min_energy;
} physics_opts;

static void physics(const physics_opts *po, uint64_t seed, gpuml_ctx *ctx, gpuml_model *trained, const char *config,
                    const char *val, char *buf, size_t size)
{
    gpuml_oc_cluster_params p;
    gpuml_oc_cluster_params_init_defaults(&p);
    p.t_beta = (float)po->t_beta, p.t_d = (float)po->t_d;
    gpuml_clue_params cp;
    gpuml_clue_params_init_defaults(&cp);
    cp.dc = (float)po->clue_dc, cp.rho_c = (float)po->clue_rhoc;
    cp.seed_delta = (float)po->clue_seed, cp.outlier_delta = (float)po->clue_outlier;
    gpuml_cluster_eval_config ec;
    gpuml_cluster_eval_config_init_defaults(&ec);
    ec.min_energy = po->min_energy;
    gpuml_model *untrained;
    DIE_IF(gpuml_model_create_from_file(ctx, config, &untrained));
    DIE_IF(gpuml_model_init_params(untrained, seed));
    const char *names[3] = {"trained", "untrained", "clue"};
    gpuml_cluster_eval_result r[3];
    for (int k = 0; k < 3; k++) {
        gpuml_cluster_eval *ev;
        DIE_IF(gpuml_cluster_eval_create(&ec, &ev));
        if (k < 2)
            DIE_IF(oc_eval_model(ctx, k ? untrained : trained, val, &p, ev));
        else
            DIE_IF(oc_eval_clue(ctx, val, &cp, ev));
        DIE_IF(gpuml_cluster_eval_get(ev, &r[k]));
        gpuml_cluster_eval_destroy(ev);
    }
    gpuml_model_destroy(untrained);
    fprintf(stderr, "\nshowers of E >= %g GeV in %s (%lld), clusters matched by shared energy:\n", ec.min_energy,
            val, (long long)r[0].showers);
    fprintf(stderr, "%-10s %10s %9s %9s %9s %9s %10s %10s\n", "", "efficiency", "fake", "merge", "split",
            "response", "resolution", "noise rej.");
    for (int k = 0; k < 3; k++)
        fprintf(stderr, "%-10s %10.3f %9.3f %9.3f %9.3f %9.3f %10.3f %10.3f\n", names[k], r[k].efficiency,
                r[k].fake_rate, r[k].merge_rate, r[k].split_rate, r[k].response_mean, r[k].resolution,
                r[k].noise_rejection);
    fprintf(stderr, "(oc_cluster t_beta %g, t_d %g; CLUE on x, y, z: dc %g cm, rho_c %g GeV, seed_delta %g cm, "
                    "outlier_delta %g cm)\n",
            (double)p.t_beta, (double)p.t_d, (double)cp.dc, (double)cp.rho_c, (double)cp.seed_delta,
            (double)cp.outlier_delta);
    FILE *f = fmemopen(buf, size, "w");
    if (!f)
        return;
    fprintf(f, "{\"min_energy\": %g, \"t_beta\": %g, \"t_d\": %g", ec.min_energy, (double)p.t_beta, (double)p.t_d);
    for (int k = 0; k < 3; k++) {
        fprintf(f, ", \"%s\": ", names[k]);
        oc_eval_json(f, &r[k]);
    }
    fprintf(f, "}");
    fclose(f);
}

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
    driver_opts o;
    driver_opts_defaults(&o, "runs/train_gravnet", cli_data_path("configs/gravnet_oc.json"));
    o.max_rows = 20000;
    int64_t stop_after = -1;
    gpuml_clue_params clue_defaults;
    gpuml_clue_params_init_defaults(&clue_defaults);
    physics_opts po = {0.1, 0.5, clue_defaults.dc, clue_defaults.rho_c, clue_defaults.seed_delta,
                       clue_defaults.outlier_delta, 1.0};
    cli_opt table[] = {DRIVER_OPTS_COMMON(o),
                       CLI_I64("max-rows", &o.max_rows, 1, INT64_MAX, "hits per batch, at most"),
                       CLI_I64("stop-after", &stop_after, -1, INT64_MAX,
                               "end after this step as a crash would (resume tests; -1: never)"),
                       CLI_F64("t-beta", &po.t_beta, 0, 1, "oc_cluster: beta threshold of a condensation point (--val)"),
                       CLI_F64("t-d", &po.t_d, 0, 1e30, "oc_cluster: distance threshold in the clustering space"),
                       CLI_F64("clue-dc", &po.clue_dc, 0, 1e30, "CLUE baseline: density radius [cm]"),
                       CLI_F64("clue-rhoc", &po.clue_rhoc, 0, 1e30, "CLUE baseline: seed density [GeV]"),
                       CLI_F64("clue-seed", &po.clue_seed, 0, 1e30, "CLUE baseline: seed separation [cm]"),
                       CLI_F64("clue-outlier", &po.clue_outlier, 0, 1e30, "CLUE baseline: outlier distance [cm]"),
                       CLI_F64("min-energy", &po.min_energy, 0, 1e30, "metrics: showers counted above [GeV]"),
                       CLI_END};
    cli_parse(argc, argv, "GravNet + object condensation on HGCAL-like events (gen_dataset hgcal)", table);
    const char *data = o.data, *val = o.val, *resume = o.resume;
    int64_t max_rows = o.max_rows;
    dist_env de = dist_setup(&o); /* --distributed: one rank per process, mpirun / srun */
    gpuml_ctx *ctx = de.ctx;
    int lead = de.rank == 0;      /* rank 0 alone writes metrics, checkpoints and the model */
    driver_outputs(&o, lead);
    const char *ckpt = o.ckpt;
    FILE *metrics;
    gpuml_model *model = driver_model(&o, &de, &metrics);
    const char *fields[] = {"features", "truth_id"};
    gpuml_loader_config lc;
    gpuml_loader_config_init_defaults(&lc);
    lc.path = data, lc.fields = fields, lc.num_fields = 2, lc.max_rows = max_rows;
    lc.max_events = o.max_events, lc.seed = o.seed;
    lc.rank = de.rank, lc.world_size = de.size; /* disjoint, row-balanced shards */
    gpuml_loader *loader;
    DIE_IF(gpuml_loader_create(ctx, &lc, &loader));
    int64_t per_epoch;
    DIE_IF(gpuml_loader_num_batches(loader, 0, &per_epoch));
    int64_t total = o.max_steps > 0 ? o.max_steps : per_epoch * o.epochs;

    gpuml_trainer_config tc;
    gpuml_trainer_config_init_defaults(&tc); /* object condensation on outputs beta, coords */
    tc.oc.max_objects = field_max_count(data, "event/n_showers", 1 << 16) + 1;
    tc.optim.lr = (float)o.lr;
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
        driver_resume(resume, &de, ctx, model, tr, loader, &ts);
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
        if (lead && o.ckpt_every > 0 && (step % o.ckpt_every == 0 || step == total))
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
    const char *out = o.out;
    if (lead)
        DIE_IF(gpuml_model_save(model, out));
    static char phys[16384] = "null";
    if (val && lead)
        physics(&po, o.seed, ctx, model, o.config, val, phys, sizeof phys);
    if (lead)
        printf("{\"model\": \"%s\", \"steps\": %lld, \"train_loss_last\": %.6g, \"val_loss\": %.6g, "
           "\"events_per_s\": %.2f, \"train_time_s\": %.2f, \"physics\": %s}\n",
           out, (long long)total, s.loss, val_loss, events * de.size / train_time, train_time, phys);
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
