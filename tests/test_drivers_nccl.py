#!/usr/bin/env python3
"""Both training drivers data-parallel on CUDA devices over NCCL (issue 12),
under mpirun, in the emulated CUDA build (GPUML_EMU_DEVICES=4, one emulated
device per rank):

  - train_gravnet at -np 2 and train_particlenet at -np 4 run
    --distributed --device cuda, each rank on device (local rank % 4)
    (the drivers print it), and stop after 2 steps with a checkpoint;
  - each resumes from that checkpoint at the other rank count (4 and 2):
    steps 3 and 4 follow, with finite losses, the driver warning that the
    data plan changed with the rank count (weights, optimizer, step and RNG
    carry over exactly; the loader continues at the saved batch index of
    the new plan, examples/common/driver.h).

  test_drivers_nccl.py MPIRUN GEN_DATASET TRAIN_GRAVNET TRAIN_PARTICLENET GRAVNET_CFG PARTICLENET_CFG
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile

# Open MPI and hwloc leak at exit; under ASan only gpuml's own errors count
# (tests/dist/mpirun_test.sh does the same for the other MPI tests).
if "ASAN_OPTIONS" in os.environ:
    os.environ["ASAN_OPTIONS"] += ":detect_leaks=0"


def run(cmd, cwd):
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=240)
    if r.returncode != 0:
        print(r.stdout, r.stderr, sep="\n")
        raise SystemExit(f"failed with exit code {r.returncode}: {' '.join(cmd)}")
    return r.stderr


def steps(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip() and '"step"' in l]


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    return cond


def main():
    mpirun = sys.argv[1]
    gen, tg, tp, gcfg, pcfg = (os.path.abspath(a) for a in sys.argv[2:7])
    env = dict(os.environ, GPUML_EMU_DEVICES="4", OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    os.environ.update(env)
    ok = True
    with tempfile.TemporaryDirectory() as d:
        run([gen, "hgcal", "--events", "32", "--seed", "1", "--min-hits", "50", "--max-hits", "150",
             "--out", "h.h5"], d)
        run([gen, "jets", "--events", "96", "--seed", "11", "--out", "j.h5"], d)

        def train(np, driver, cfg, data, tag, extra, max_steps=4):
            err = run([mpirun, "--oversubscribe", "--bind-to", "none", "-np", str(np), driver, "--distributed",
                       "--device", "cuda", "--data", data, "--config", cfg, "--epochs", "3", "--threads", "1",
                       "--max-events", "8", "--max-steps", str(max_steps), "--comm-timeout", "60", "--metrics", tag + ".jsonl",
                       "--out", tag + ".h5", "--ckpt", tag + "_ck.h5", "--ckpt-every", "2", *extra], d)
            devs = dict((int(r), int(i)) for r, i in re.findall(r"rank (\d+) of \d+ \(local rank \d+\): device cuda:(\d+)", err))
            return err, devs, steps(os.path.join(d, tag + ".jsonl"))

        for name, driver, cfg, data, np0, np1 in (("gravnet", tg, gcfg, "h.h5", 2, 4),
                                                  ("particlenet", tp, pcfg, "j.h5", 4, 2)):
            # train_particlenet has no --stop-after: a 2-step run (its schedule is shorter)
            first = ("--stop-after", "2") if name == "gravnet" else ()
            err, devs, s = train(np0, driver, cfg, data, f"{name}_{np0}", first, 4 if first else 2)
            ok &= check(devs == {r: r % 4 for r in range(np0)}, f"{name} np {np0}: rank -> device {devs}")
            ok &= check([x["step"] for x in s] == [1, 2] and all(math.isfinite(x["loss"]) for x in s),
                        f"{name} np {np0}: steps {[x['step'] for x in s]}, losses {[x['loss'] for x in s]}")
            err, devs, s = train(np1, driver, cfg, data, f"{name}_{np1}", ("--resume", f"{name}_{np0}_ck.h5"))
            ok &= check(devs == {r: r % 4 for r in range(np1)}, f"{name} np {np1}: rank -> device {devs}")
            ok &= check("resumed from" in err and "another data plan" in err,
                        f"{name}: np {np0} checkpoint resumed at np {np1} (plan-change warning)")
            ok &= check([x["step"] for x in s] == [3, 4] and all(math.isfinite(x["loss"]) for x in s),
                        f"{name} np {np1} resumed: steps {[x['step'] for x in s]}, losses {[x['loss'] for x in s]}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
