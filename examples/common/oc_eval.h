/* examples/common/oc_eval.h - the physics of an object condensation model
 * on a dataset file (examples/gen_dataset hgcal layout: features [N, 5] =
 * x, y, z, energy, layer; truth_id [N]):
 *   oc_eval_model: the model's beta and clustering coordinates through
 *     gpuml_oc_cluster, the clusters matched to the truth showers
 *     (gpuml_cluster_eval);
 *   oc_eval_clue:  the CLUE baseline on the raw hits (x, y, z), energy
 *     weighted, on the same events, same metrics;
 *   oc_eval_json:  one result as a JSON object.
 * Header-only; examples are not the library. */
#ifndef GPUML_EXAMPLES_OC_EVAL_H
#define GPUML_EXAMPLES_OC_EVAL_H

#include <gpuml/gpuml.h>
#include <stdio.h>
#include <stdlib.h>

#define OC_EVAL_CHUNK 16 /* events per forward pass */

/* Events [first, first + count) of ds: host copies of the row splits,
 * features and truth ids (caller frees), and the features as a tensor on
 * ctx's device (caller destroys). */
static inline gpuml_status oc_eval_read(gpuml_dataset *ds, gpuml_ctx *ctx, int64_t first, int64_t count,
                                        gpuml_tensor **rs_t, gpuml_tensor **feat_t, int64_t **rs, float **feat,
                                        int32_t **truth)
{
    const char *names[] = {"features", "truth_id"};
    gpuml_tensor *out[2];
    gpuml_status st = gpuml_dataset_read(ds, ctx, first, count, 2, names, rs_t, out);
    if (st != GPUML_OK)
        return st;
    int64_t n = gpuml_tensor_dim(out[0], 0);
    *rs = malloc((size_t)(count + 1) * sizeof(int64_t));
    *feat = malloc((size_t)(n ? n : 1) * 5 * sizeof(float));
    *truth = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    if (!*rs || !*feat || !*truth)
        st = GPUML_ERR_OUT_OF_MEMORY;
    if (st == GPUML_OK)
        st = gpuml_tensor_copy_to_host(ctx, *rs_t, *rs, (size_t)(count + 1) * sizeof(int64_t));
    if (st == GPUML_OK)
        st = gpuml_tensor_copy_to_host(ctx, out[0], *feat, (size_t)n * 5 * sizeof(float));
    if (st == GPUML_OK)
        st = gpuml_tensor_copy_to_host(ctx, out[1], *truth, (size_t)n * sizeof(int32_t));
    gpuml_tensor_destroy(out[1]);
    *feat_t = out[0];
    if (st != GPUML_OK) {
        gpuml_tensor_destroy(*rs_t), gpuml_tensor_destroy(*feat_t);
        free(*rs), free(*feat), free(*truth);
    }
    return st;
}

/* Run model m (outputs beta [N, 1], coords [N, D]) over every event of
 * path, cluster with p, and add each event to ev. */
static inline gpuml_status oc_eval_model(gpuml_ctx *ctx, gpuml_model *m, const char *path,
                                         const gpuml_oc_cluster_params *p, gpuml_cluster_eval *ev)
{
    gpuml_dataset *ds;
    gpuml_status st = gpuml_dataset_open(path, &ds);
    if (st != GPUML_OK)
        return st;
    gpuml_tape *tape;
    if ((st = gpuml_tape_create(ctx, &tape)) != GPUML_OK) {
        gpuml_dataset_close(ds);
        return st;
    }
    gpuml_tape_set_grad_enabled(tape, 0);
    gpuml_tape_set_training(tape, 0);
    int64_t nev = gpuml_dataset_num_events(ds);
    for (int64_t first = 0; first < nev && st == GPUML_OK; first += OC_EVAL_CHUNK) {
        int64_t count = nev - first < OC_EVAL_CHUNK ? nev - first : OC_EVAL_CHUNK;
        gpuml_tensor *rs_t, *feat_t;
        int64_t *rs;
        float *feat;
        int32_t *truth;
        if ((st = oc_eval_read(ds, ctx, first, count, &rs_t, &feat_t, &rs, &feat, &truth)) != GPUML_OK)
            break;
        int64_t n = rs[count];
        float *energy = malloc((size_t)(n ? n : 1) * sizeof(float));
        int32_t *id_h = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
        gpuml_tensor *en = NULL, *id = NULL, *cp = NULL, *cnt = NULL;
        gpuml_var *outs[2];
        gpuml_tape_reset(tape);
        const gpuml_tensor *ins[1] = {feat_t};
        st = energy && id_h ? gpuml_model_forward(m, tape, ins, rs_t, outs) : GPUML_ERR_OUT_OF_MEMORY;
        for (int64_t i = 0; st == GPUML_OK && i < n; i++)
            energy[i] = feat[i * 5 + 3];
        if (st == GPUML_OK)
            st = gpuml_tensor_create(ctx, GPUML_F32, 1, (int64_t[]){n}, &en);
        if (st == GPUML_OK)
            st = gpuml_tensor_copy_from_host(ctx, en, energy, (size_t)n * sizeof(float));
        if (st == GPUML_OK)
            st = gpuml_tensor_create(ctx, GPUML_I32, 1, (int64_t[]){n}, &id);
        if (st == GPUML_OK)
            st = gpuml_tensor_create(ctx, GPUML_I32, 1, (int64_t[]){n}, &cp);
        if (st == GPUML_OK)
            st = gpuml_tensor_create(ctx, GPUML_I32, 1, (int64_t[]){count}, &cnt);
        if (st == GPUML_OK)
            st = gpuml_oc_cluster(ctx, gpuml_var_value(outs[0]), gpuml_var_value(outs[1]), rs_t, en, p, id, cp, NULL,
                                  cnt);
        if (st == GPUML_OK)
            st = gpuml_tensor_copy_to_host(ctx, id, id_h, (size_t)n * sizeof(int32_t));
        for (int64_t e = 0; st == GPUML_OK && e < count; e++)
            st = gpuml_cluster_eval_add(ev, rs[e + 1] - rs[e], truth + rs[e], energy + rs[e], id_h + rs[e]);
        gpuml_tensor_destroy(en), gpuml_tensor_destroy(id), gpuml_tensor_destroy(cp), gpuml_tensor_destroy(cnt);
        gpuml_tensor_destroy(rs_t), gpuml_tensor_destroy(feat_t);
        free(rs), free(feat), free(truth), free(energy), free(id_h);
    }
    gpuml_tape_destroy(tape);
    gpuml_dataset_close(ds);
    return st;
}

/* The CLUE baseline on the hits (x, y, z) of every event of path. */
static inline gpuml_status oc_eval_clue(gpuml_ctx *ctx, const char *path, const gpuml_clue_params *p,
                                        gpuml_cluster_eval *ev)
{
    gpuml_dataset *ds;
    gpuml_status st = gpuml_dataset_open(path, &ds);
    if (st != GPUML_OK)
        return st;
    int64_t nev = gpuml_dataset_num_events(ds);
    for (int64_t e = 0; e < nev && st == GPUML_OK; e++) {
        gpuml_tensor *rs_t, *feat_t;
        int64_t *rs;
        float *feat;
        int32_t *truth;
        if ((st = oc_eval_read(ds, ctx, e, 1, &rs_t, &feat_t, &rs, &feat, &truth)) != GPUML_OK)
            break;
        int64_t n = rs[1];
        float *xyz = malloc((size_t)(n ? n : 1) * 3 * sizeof(float)), *w = malloc((size_t)(n ? n : 1) * sizeof(float));
        int32_t *id = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
        st = xyz && w && id ? GPUML_OK : GPUML_ERR_OUT_OF_MEMORY;
        for (int64_t i = 0; st == GPUML_OK && i < n; i++) {
            for (int c = 0; c < 3; c++)
                xyz[i * 3 + c] = feat[i * 5 + c];
            w[i] = feat[i * 5 + 3];
        }
        if (st == GPUML_OK)
            st = gpuml_clue_cluster(n, 3, xyz, w, p, id, NULL);
        if (st == GPUML_OK)
            st = gpuml_cluster_eval_add(ev, n, truth, w, id);
        gpuml_tensor_destroy(rs_t), gpuml_tensor_destroy(feat_t);
        free(rs), free(feat), free(truth), free(xyz), free(w), free(id);
    }
    gpuml_dataset_close(ds);
    return st;
}

static inline void oc_eval_json(FILE *f, const gpuml_cluster_eval_result *r)
{
    fprintf(f, "{\"showers\": %lld, \"efficiency\": %.4f, \"fake_rate\": %.4f, \"merge_rate\": %.4f, "
               "\"split_rate\": %.4f, \"response\": %.4f, \"resolution\": %.4f, \"noise_rejection\": %.4f, "
               "\"clusters\": %lld, \"bins\": [",
            (long long)r->showers, r->efficiency, r->fake_rate, r->merge_rate, r->split_rate, r->response_mean,
            r->resolution, r->noise_rejection, (long long)r->clusters);
    for (int b = 0; b < r->num_bins; b++)
        fprintf(f, "%s{\"lo\": %g, \"hi\": %g, \"showers\": %lld, \"efficiency\": %.4f, \"response\": %.4f, "
                   "\"resolution\": %.4f}",
                b ? ", " : "", r->bins[b].lo, r->bins[b].hi, (long long)r->bins[b].showers, r->bins[b].efficiency,
                r->bins[b].response_mean, r->bins[b].resolution);
    fprintf(f, "]}");
}

#endif
