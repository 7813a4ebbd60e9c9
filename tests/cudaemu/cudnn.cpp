/* tests/cudaemu/cudnn.cpp - the emulated cuDNN batch normalization (spatial
 * and per-activation, NCHW float), on the handle's stream, in double.
 * Checks as documented: handle set, descriptors set and of matching
 * shapes, the parameter descriptor 1xCx1x1 (spatial) or 1xCxHxW,
 * epsilon >= CUDNN_BN_MIN_EPSILON, saved mean and inverse variance both or
 * neither; else CUDNN_STATUS_BAD_PARAM. The running variance is updated with
 * the unbiased variance, as cuDNN does. */
#include <cmath>
#include <vector>

#include "cudnn.h"
#include "internal.hpp"

extern "C" void gpuml_emu_device_fault(const char *what);

struct cudnnContext {
    int device;
    cudaStream_t stream = nullptr;
};

struct cudnnTensorStruct {
    bool set = false;
    int n = 0, c = 0, h = 0, w = 0;
};

EMU_API cudnnStatus_t cudnnCreate(cudnnHandle_t *h)
{
    if (!h)
        return CUDNN_STATUS_BAD_PARAM;
    if (emu::ndevices() == 0)
        return CUDNN_STATUS_NOT_INITIALIZED;
    *h = new cudnnContext{emu::current_device()};
    return CUDNN_STATUS_SUCCESS;
}

EMU_API cudnnStatus_t cudnnDestroy(cudnnHandle_t h)
{
    if (!h)
        return CUDNN_STATUS_BAD_PARAM;
    delete h;
    return CUDNN_STATUS_SUCCESS;
}

EMU_API cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s)
{
    if (!h)
        return CUDNN_STATUS_BAD_PARAM;
    h->stream = s;
    return CUDNN_STATUS_SUCCESS;
}

EMU_API const char *cudnnGetErrorString(cudnnStatus_t s)
{
    switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH: return "CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    }
    return "CUDNN_STATUS_UNKNOWN";
}

EMU_API cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d)
{
    if (!d)
        return CUDNN_STATUS_BAD_PARAM;
    *d = new cudnnTensorStruct;
    return CUDNN_STATUS_SUCCESS;
}

EMU_API cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d)
{
    delete d;
    return CUDNN_STATUS_SUCCESS;
}

EMU_API cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
                                                 cudnnDataType_t type, int n, int c, int h, int w)
{
    if (!d || n <= 0 || c <= 0 || h <= 0 || w <= 0)
        return CUDNN_STATUS_BAD_PARAM;
    if (format != CUDNN_TENSOR_NCHW || type != CUDNN_DATA_FLOAT)
        return CUDNN_STATUS_NOT_SUPPORTED; /* all the emulation implements */
    if ((long long)n * c * h * w > 0x7fffffffLL)
        return CUDNN_STATUS_BAD_PARAM;
    d->set = true;
    d->n = n, d->c = c, d->h = h, d->w = w;
    return CUDNN_STATUS_SUCCESS;
}

namespace {
struct Shape {
    int N, C, S; /* S: spatial size h*w */
    int groups;  /* parameter entries: C (spatial) or C*S */
    size_t total() const { return (size_t)N * C * S; }
    size_t at(int n, int c, int s) const { return ((size_t)n * C + c) * S + s; }
    int param(int c, int s, bool spatial) const { return spatial ? c : c * S + s; }
};

cudnnStatus_t check(cudnnHandle_t h, cudnnBatchNormMode_t mode, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t y,
                    cudnnTensorDescriptor_t p, double eps, Shape *sh)
{
    if (!h || !x || !y || !p || !x->set || !y->set || !p->set)
        return CUDNN_STATUS_BAD_PARAM;
    if (mode != CUDNN_BATCHNORM_SPATIAL && mode != CUDNN_BATCHNORM_PER_ACTIVATION)
        return CUDNN_STATUS_BAD_PARAM;
    if (x->n != y->n || x->c != y->c || x->h != y->h || x->w != y->w)
        return CUDNN_STATUS_BAD_PARAM;
    bool spatial = mode == CUDNN_BATCHNORM_SPATIAL;
    if (p->n != 1 || p->c != x->c || (spatial ? (p->h != 1 || p->w != 1) : (p->h != x->h || p->w != x->w)))
        return CUDNN_STATUS_BAD_PARAM;
    if (eps < CUDNN_BN_MIN_EPSILON)
        return CUDNN_STATUS_BAD_PARAM;
    sh->N = x->n, sh->C = x->c, sh->S = x->h * x->w;
    sh->groups = spatial ? x->c : x->c * sh->S;
    return CUDNN_STATUS_SUCCESS;
}

bool dev(const void *p, size_t bytes) { return gpuml_emu_is_device(p, bytes); }
} // namespace

EMU_API cudnnStatus_t cudnnBatchNormalizationForwardTraining(
    cudnnHandle_t h, cudnnBatchNormMode_t mode, const void *alpha, const void *beta, const cudnnTensorDescriptor_t xd,
    const void *x, const cudnnTensorDescriptor_t yd, void *y, const cudnnTensorDescriptor_t pd, const void *scale,
    const void *bias, double factor, void *rmean, void *rvar, double eps, void *smean, void *sinv)
{
    Shape sh;
    cudnnStatus_t st = check(h, mode, xd, yd, pd, eps, &sh);
    if (st != CUDNN_STATUS_SUCCESS)
        return st;
    if (!alpha || !beta || !x || !y || !scale || !bias || (!rmean) != (!rvar) || (!smean) != (!sinv))
        return CUDNN_STATUS_BAD_PARAM;
    float al = *(const float *)alpha, be = *(const float *)beta;
    bool spatial = mode == CUDNN_BATCHNORM_SPATIAL;
    cudaError_t e = gpuml_emu_enqueue(h->stream, [=] {
        size_t T = sh.total(), G = (size_t)sh.groups;
        if (!dev(x, T * 4) || !dev(y, T * 4) || !dev(scale, G * 4) || !dev(bias, G * 4) ||
            (rmean && (!dev(rmean, G * 4) || !dev(rvar, G * 4))) || (smean && (!dev(smean, G * 4) || !dev(sinv, G * 4))))
            return gpuml_emu_device_fault("cudnnBatchNormalizationForwardTraining: an argument is not device memory");
        const float *X = (const float *)x, *g = (const float *)scale, *b = (const float *)bias;
        float *Y = (float *)y;
        std::vector<double> sum(G, 0.0), sq(G, 0.0);
        double cnt = spatial ? (double)sh.N * sh.S : (double)sh.N;
        for (int n = 0; n < sh.N; n++)
            for (int c = 0; c < sh.C; c++)
                for (int s = 0; s < sh.S; s++)
                    sum[sh.param(c, s, spatial)] += X[sh.at(n, c, s)];
        for (size_t q = 0; q < G; q++)
            sum[q] /= cnt;
        for (int n = 0; n < sh.N; n++)
            for (int c = 0; c < sh.C; c++)
                for (int s = 0; s < sh.S; s++) {
                    int q = sh.param(c, s, spatial);
                    double d = X[sh.at(n, c, s)] - sum[q];
                    sq[q] += d * d;
                }
        for (size_t q = 0; q < G; q++) {
            double var = sq[q] / cnt, inv = 1.0 / std::sqrt(var + eps);
            if (rmean) {
                float *rm = (float *)rmean, *rv = (float *)rvar;
                double unbiased = cnt > 1 ? sq[q] / (cnt - 1) : var;
                rm[q] = (float)((1.0 - factor) * rm[q] + factor * sum[q]);
                rv[q] = (float)((1.0 - factor) * rv[q] + factor * unbiased);
            }
            if (smean) {
                ((float *)smean)[q] = (float)sum[q];
                ((float *)sinv)[q] = (float)inv;
            }
            sq[q] = inv;
        }
        for (int n = 0; n < sh.N; n++)
            for (int c = 0; c < sh.C; c++)
                for (int s = 0; s < sh.S; s++) {
                    int q = sh.param(c, s, spatial);
                    size_t i = sh.at(n, c, s);
                    double v = g[q] * (X[i] - sum[q]) * sq[q] + b[q];
                    Y[i] = (float)(be == 0.0f ? al * v : al * v + be * Y[i]);
                }
    });
    return e == cudaSuccess ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_EXECUTION_FAILED;
}

EMU_API cudnnStatus_t cudnnBatchNormalizationForwardInference(
    cudnnHandle_t h, cudnnBatchNormMode_t mode, const void *alpha, const void *beta, const cudnnTensorDescriptor_t xd,
    const void *x, const cudnnTensorDescriptor_t yd, void *y, const cudnnTensorDescriptor_t pd, const void *scale,
    const void *bias, const void *emean, const void *evar, double eps)
{
    Shape sh;
    cudnnStatus_t st = check(h, mode, xd, yd, pd, eps, &sh);
    if (st != CUDNN_STATUS_SUCCESS)
        return st;
    if (!alpha || !beta || !x || !y || !scale || !bias || !emean || !evar)
        return CUDNN_STATUS_BAD_PARAM;
    float al = *(const float *)alpha, be = *(const float *)beta;
    bool spatial = mode == CUDNN_BATCHNORM_SPATIAL;
    cudaError_t e = gpuml_emu_enqueue(h->stream, [=] {
        size_t T = sh.total(), G = (size_t)sh.groups;
        if (!dev(x, T * 4) || !dev(y, T * 4) || !dev(scale, G * 4) || !dev(bias, G * 4) || !dev(emean, G * 4) ||
            !dev(evar, G * 4))
            return gpuml_emu_device_fault("cudnnBatchNormalizationForwardInference: an argument is not device memory");
        const float *X = (const float *)x, *g = (const float *)scale, *b = (const float *)bias,
                    *m = (const float *)emean, *v = (const float *)evar;
        float *Y = (float *)y;
        for (int n = 0; n < sh.N; n++)
            for (int c = 0; c < sh.C; c++)
                for (int s = 0; s < sh.S; s++) {
                    int q = sh.param(c, s, spatial);
                    size_t i = sh.at(n, c, s);
                    double r = g[q] * ((double)X[i] - m[q]) / std::sqrt((double)v[q] + eps) + b[q];
                    Y[i] = (float)(be == 0.0f ? al * r : al * r + be * Y[i]);
                }
    });
    return e == cudaSuccess ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_EXECUTION_FAILED;
}

EMU_API cudnnStatus_t cudnnBatchNormalizationBackward(
    cudnnHandle_t h, cudnnBatchNormMode_t mode, const void *alphaD, const void *betaD, const void *alphaP,
    const void *betaP, const cudnnTensorDescriptor_t xd, const void *x, const cudnnTensorDescriptor_t dyd,
    const void *dy, const cudnnTensorDescriptor_t dxd, void *dx, const cudnnTensorDescriptor_t pd, const void *scale,
    void *dscale, void *dbias, double eps, const void *smean, const void *sinv)
{
    Shape sh;
    cudnnStatus_t st = check(h, mode, xd, dxd, pd, eps, &sh);
    if (st == CUDNN_STATUS_SUCCESS && (!dyd || !dyd->set || dyd->n != xd->n || dyd->c != xd->c ||
                                       dyd->h != xd->h || dyd->w != xd->w))
        st = CUDNN_STATUS_BAD_PARAM;
    if (st != CUDNN_STATUS_SUCCESS)
        return st;
    if (!alphaD || !betaD || !alphaP || !betaP || !x || !dy || !dx || !scale || !dscale || !dbias ||
        (!smean) != (!sinv))
        return CUDNN_STATUS_BAD_PARAM;
    float aD = *(const float *)alphaD, bD = *(const float *)betaD, aP = *(const float *)alphaP,
          bP = *(const float *)betaP;
    bool spatial = mode == CUDNN_BATCHNORM_SPATIAL;
    cudaError_t e = gpuml_emu_enqueue(h->stream, [=] {
        size_t T = sh.total(), G = (size_t)sh.groups;
        if (!dev(x, T * 4) || !dev(dy, T * 4) || !dev(dx, T * 4) || !dev(scale, G * 4) || !dev(dscale, G * 4) ||
            !dev(dbias, G * 4) || (smean && (!dev(smean, G * 4) || !dev(sinv, G * 4))))
            return gpuml_emu_device_fault("cudnnBatchNormalizationBackward: an argument is not device memory");
        const float *X = (const float *)x, *DY = (const float *)dy, *g = (const float *)scale;
        float *DX = (float *)dx, *dg = (float *)dscale, *db = (float *)dbias;
        double cnt = spatial ? (double)sh.N * sh.S : (double)sh.N;
        std::vector<double> mean(G, 0.0), inv(G, 0.0), sdy(G, 0.0), sdyx(G, 0.0);
        if (smean) {
            for (size_t q = 0; q < G; q++)
                mean[q] = ((const float *)smean)[q], inv[q] = ((const float *)sinv)[q];
        } else {
            for (int n = 0; n < sh.N; n++)
                for (int c = 0; c < sh.C; c++)
                    for (int s = 0; s < sh.S; s++)
                        mean[sh.param(c, s, spatial)] += X[sh.at(n, c, s)];
            for (size_t q = 0; q < G; q++)
                mean[q] /= cnt;
            for (int n = 0; n < sh.N; n++)
                for (int c = 0; c < sh.C; c++)
                    for (int s = 0; s < sh.S; s++) {
                        int q = sh.param(c, s, spatial);
                        double d = X[sh.at(n, c, s)] - mean[q];
                        inv[q] += d * d;
                    }
            for (size_t q = 0; q < G; q++)
                inv[q] = 1.0 / std::sqrt(inv[q] / cnt + eps);
        }
        for (int n = 0; n < sh.N; n++)
            for (int c = 0; c < sh.C; c++)
                for (int s = 0; s < sh.S; s++) {
                    int q = sh.param(c, s, spatial);
                    size_t i = sh.at(n, c, s);
                    sdy[q] += DY[i];
                    sdyx[q] += DY[i] * (X[i] - mean[q]) * inv[q];
                }
        for (int n = 0; n < sh.N; n++)
            for (int c = 0; c < sh.C; c++)
                for (int s = 0; s < sh.S; s++) {
                    int q = sh.param(c, s, spatial);
                    size_t i = sh.at(n, c, s);
                    double xh = (X[i] - mean[q]) * inv[q];
                    double v = g[q] * inv[q] * (DY[i] - sdy[q] / cnt - xh * sdyx[q] / cnt);
                    DX[i] = (float)(bD == 0.0f ? aD * v : aD * v + bD * DX[i]);
                }
        for (size_t q = 0; q < G; q++) {
            dg[q] = (float)(bP == 0.0f ? aP * sdyx[q] : aP * sdyx[q] + bP * dg[q]);
            db[q] = (float)(bP == 0.0f ? aP * sdy[q] : aP * sdy[q] + bP * db[q]);
        }
    });
    return e == cudaSuccess ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_EXECUTION_FAILED;
}
