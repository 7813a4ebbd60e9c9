#!/usr/bin/env bash
# The main job, end to end on a fresh machine (CPU by default):
#   1. install the dependencies and build gpuml;
#   2. generate HGCAL-like events (showers + noise), a training and a
#      validation file;
#   3. train the GravNet model with object condensation for about a minute
#      on the CPU, with checkpoints, and save the model file;
#   4. show physics on the validation events: the model's outputs through
#      gpuml_oc_cluster, matched to the truth showers - a table of shower
#      efficiency, fake / merge / split rates, energy response and
#      resolution, noise rejection for the trained model, the same model
#      untrained and the CLUE baseline on the raw hits; the final metrics
#      (JSON) and, with matplotlib, the loss curves beside efficiency and
#      response plots;
#   5. serve the trained model through the asynchronous inference engine
#      with clusters as its output (examples/serve_clusters), and print the
#      engine's throughput and latency against event-by-event inference.
# Everything goes to ./run/. Options after the script name go to the build
# (e.g. -Dgpu_archs=80). GPUML_DEVICE=cuda trains and serves on GPU 0.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
./tools/build.sh "$@"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
# gpuml's own pool never spins (README, "Threads"); this only matters where
# OpenMP still runs (the OpenMP executor, where a program picks it).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
dev=${GPUML_DEVICE:-cpu}
mkdir -p run
b=./build/examples

echo "== 1. data: HGCAL-like events (examples/gen_dataset)"
$b/gen_dataset hgcal --events 1000 --seed 1 --min-hits 100 --max-hits 600 --out run/hgcal_train.h5
$b/gen_dataset hgcal --events 100 --seed 2 --min-hits 100 --max-hits 600 --out run/hgcal_val.h5

echo "== 2. training: GravNet + object condensation (examples/train_gravnet)"
$b/train_gravnet --device "$dev" --data run/hgcal_train.h5 --val run/hgcal_val.h5 \
  --config examples/configs/gravnet_oc.json --epochs 3 --lr 3e-3 --max-rows 4000 --max-events 16 \
  --ckpt run/gravnet_ckpt.h5 --ckpt-every 50 --out run/gravnet_model.h5 \
  --metrics run/gravnet_metrics.jsonl | tee run/final_metrics.json
if python3 -c "import matplotlib" 2>/dev/null; then
  python3 examples/plot_metrics.py run/gravnet_metrics.jsonl --physics run/final_metrics.json \
    -o run/gravnet_curves.png
else
  echo "no curves: python3 cannot import matplotlib (tools/setup.sh installs it)"
fi

echo "== 3. inference: the trained model through the engine, clusters as output (examples/serve_clusters)"
$b/serve_clusters --device "$dev" --model run/gravnet_model.h5 --data run/hgcal_val.h5 --threads 2 \
  > run/served_clusters.json
echo "served clusters: run/served_clusters.json"
echo "== 4. the engine against event-by-event inference (bench/bench_engine)"
./build/bench/bench_engine --device "$dev" --model run/gravnet_model.h5 --sizes small --events 300 \
  --threads 2 --repeats 1 | tail -4
echo "done: model run/gravnet_model.h5, metrics run/gravnet_metrics.jsonl, final metrics run/final_metrics.json"
