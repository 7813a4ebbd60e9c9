#!/usr/bin/env bash
# The main job, end to end on a fresh machine (CPU by default): install the
# dependencies, build gpuml, and run the example pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
./tools/build.sh "$@"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
echo "== examples/readme_example: a linear layer and per-event means on a ragged batch"
./build/examples/readme_example
