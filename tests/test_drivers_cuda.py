#!/usr/bin/env python3
"""Both training drivers on CUDA against the CPU (issue 11): a few steps of
examples/train_gravnet and examples/train_particlenet with --device cuda
and --device cpu on the same small generated datasets. Run where CUDA is
built: with a GPU, or in the emulated CUDA build (tools/test.sh --cuda-emu).

  - every step's loss agrees within relative 1e-4 (the tolerance of the
    training-parity test; CPU and CUDA round differently, e.g. cuBLAS);
  - checkpoints: a CUDA run stopped after 2 steps and resumed on CUDA
    continues bit-exactly as the uninterrupted CUDA run (DESIGN.md 7);
    resumed on the CPU, and a CPU checkpoint resumed on CUDA, continue within
    the tolerance.

  test_drivers_cuda.py GEN_DATASET TRAIN_GRAVNET TRAIN_PARTICLENET GRAVNET_CFG PARTICLENET_CFG
"""
import json
import os
import subprocess
import sys
import tempfile

RTOL = 1e-4


def run(cmd, cwd):
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0 and "GPUML_ERR_NO_DEVICE" in r.stdout + r.stderr:
        print("no usable CUDA device: skipped")
        raise SystemExit(77)
    if r.returncode != 0:
        print(r.stdout, r.stderr, sep="\n")
        raise SystemExit(f"failed with exit code {r.returncode}: {' '.join(cmd)}")
    return r.stdout


def losses(path):
    with open(path) as f:
        return [json.loads(l)["loss"] for l in f if l.strip() and '"step"' in l]


def close(a, b):
    return len(a) == len(b) and all(abs(x - y) <= RTOL * max(abs(x), abs(y)) for x, y in zip(a, b))


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    return cond


def main():
    gen, tg, tp, gcfg, pcfg = (os.path.abspath(a) for a in sys.argv[1:6])
    ok = True
    with tempfile.TemporaryDirectory() as d:
        run([gen, "hgcal", "--events", "32", "--seed", "1", "--min-hits", "50", "--max-hits", "150",
             "--out", "h.h5"], d)
        run([gen, "jets", "--events", "96", "--seed", "11", "--out", "j.h5"], d)
        common = ["--epochs", "1", "--threads", "2", "--max-events", "8"]

        def train(driver, cfg, data, dev, tag, steps, extra=()):
            run([driver, "--data", data, "--config", cfg, *common, "--device", dev, "--max-steps", str(steps),
                 "--metrics", tag + ".jsonl", "--out", tag + ".h5", "--ckpt", tag + "_ck.h5", "--ckpt-every", "2",
                 *extra], d)
            return losses(os.path.join(d, tag + ".jsonl"))

        for name, driver, cfg, data in (("gravnet", tg, gcfg, "h.h5"), ("particlenet", tp, pcfg, "j.h5")):
            cuda = train(driver, cfg, data, "cuda", name + "_cuda", 4)  # first: skips without a GPU
            cpu = train(driver, cfg, data, "cpu", name + "_cpu", 4)
            ok &= check(len(cpu) == 4, f"{name}: 4 CPU steps")
            ok &= check(close(cpu, cuda), f"{name}: CPU {cpu} vs CUDA {cuda} within {RTOL}")

        # checkpoints, GravNet: stop after 2 steps on CUDA / on the CPU, resume
        full_cuda = losses(os.path.join(d, "gravnet_cuda.jsonl"))
        full_cpu = losses(os.path.join(d, "gravnet_cpu.jsonl"))
        train(tg, gcfg, "h.h5", "cuda", "half_cuda", 4, ("--stop-after", "2"))
        train(tg, gcfg, "h.h5", "cpu", "half_cpu", 4, ("--stop-after", "2"))
        r = train(tg, gcfg, "h.h5", "cuda", "res_cuda_cuda", 4, ("--resume", "half_cuda_ck.h5"))
        ok &= check(r == full_cuda[2:], f"gravnet: CUDA checkpoint resumed on CUDA {r} == {full_cuda[2:]} bitwise")
        r = train(tg, gcfg, "h.h5", "cpu", "res_cuda_cpu", 4, ("--resume", "half_cuda_ck.h5"))
        ok &= check(close(r, full_cuda[2:]), f"gravnet: CUDA checkpoint resumed on the CPU {r} ~ {full_cuda[2:]}")
        r = train(tg, gcfg, "h.h5", "cuda", "res_cpu_cuda", 4, ("--resume", "half_cpu_ck.h5"))
        ok &= check(close(r, full_cpu[2:]), f"gravnet: CPU checkpoint resumed on CUDA {r} ~ {full_cpu[2:]}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
