#!/usr/bin/env bash
# The course checkpoints at their target budgets, in one prepared GPU run (CI never runs it).
#
#   bash benchmarks/course_checkpoints_gpu.sh [OUT_DIR]      # default build/bench/course_checkpoints_gpu
#
# 1. trains every method of instructor.course_checkpoints.COURSE_METHODS at its default epochs
#    (the table's budgets: `python -m instructor.course_checkpoints --help` lists them), seed 0,
#    float32 on the GPU (no --amp: the weights then depend on the GPU model alone), into
#    OUT_DIR/bundle, resumable from OUT_DIR/work: a call stopped by a time limit continues where
#    it stopped when run again with the same OUT_DIR;
# 2. with COURSE_GPU_SEEDS="1 2" also seeds 1 and 2 (OUT_DIR/bundle-seed1, ...), for the promise
#    check over training seeds;
# 3. checks the notebooks' promises on both subsets (benchmarks/checkpoint_promises.py) over
#    every bundle it trained.
# Then, on the course machine: python -m instructor.course_checkpoints --merge OUT_DIR/bundle
#   --out build/course_checkpoints --install   (copies it into the package and pins it), and the
# numbers go to benchmarks/README.md, "Course checkpoints".
# Knobs: COURSE_GPU_METHODS (default: every method), COURSE_GPU_EPOCHS (e.g. "simclr=300"),
# COURSE_GPU_SEEDS (extra seeds), COURSE_GPU_DEVICE (cuda).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-build/bench/course_checkpoints_gpu}"
PY="${PYTHON:-python}"
export PYTHONUNBUFFERED=1
if [ -z "${REPLEARN_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export REPLEARN_DATA_DIR="$(cd ../shared/data && pwd)"
fi
DEVICE="${COURSE_GPU_DEVICE:-cuda}"
read -r -a METHODS <<< "${COURSE_GPU_METHODS:-}"
read -r -a EPOCHS <<< "${COURSE_GPU_EPOCHS:-}"
mkdir -p "$OUT"
bundles=()
for seed in 0 ${COURSE_GPU_SEEDS:-}; do
  name=bundle; [ "$seed" != 0 ] && name="bundle-seed$seed"
  args=(--device "$DEVICE" --seed "$seed" --out "$OUT/$name" --work "$OUT/work" --no-zip)
  [ ${#METHODS[@]} -gt 0 ] && args+=(--methods "${METHODS[@]}")
  [ ${#EPOCHS[@]} -gt 0 ] && args+=(--epochs "${EPOCHS[@]}")
  echo "== course checkpoints, seed $seed: python -m instructor.course_checkpoints ${args[*]}"
  "$PY" -m instructor.course_checkpoints "${args[@]}" 2>&1 | tee "$OUT/$name.log"
  [ "${PIPESTATUS[0]}" = 0 ] && bundles+=("$OUT/$name")
done
[ ${#bundles[@]} -gt 0 ] || { echo "no bundle trained" >&2; exit 1; }
"$PY" -m benchmarks.checkpoint_promises --bundles "${bundles[@]}" --device "$DEVICE" \
  --out "$OUT/promises" 2>&1 | tee "$OUT/promises.log"
