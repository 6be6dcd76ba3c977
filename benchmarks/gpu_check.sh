#!/usr/bin/env bash
# The GPU checks in one prepared run, about 9 minutes on one GPU (CI never runs it).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # default build/bench/gpu
#
# 1. augment: the batched augmentation on the GPU vs per-image torchvision in a DataLoader
#    (benchmarks/augment_throughput.py);
# 2. notebooks: every assignment notebook end to end in `smoke` on the GPU with the reference
#    solutions (benchmarks/gpu_notebooks.py: REPLEARN_DEVICE=cuda, 4 at a time, a timeout each);
# 3. throughput: the `colab` preset's steps/s and images/s of each notebook's main training runs
#    at its batch sizes (benchmarks/colab_throughput.py), for the colab budgets;
# 4. pretrain-*: the entry point `python -m replearn.pretrain` with AMP (SimCLR, MAE, the
#    CLIP-style model; GPU_CHECK_METHODS chooses), and SimCLR once more without AMP;
# 5. checkpoints (only when named in GPU_CHECK_STEPS; its time on a GPU is not yet measured):
#    the course checkpoints at their target budgets and the promise check over them
#    (benchmarks/course_checkpoints_gpu.sh, into OUT_DIR/course_checkpoints; resumable);
# 6. a summary: OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md (paste the tables into
#    benchmarks/RESULTS.md with the GPU's name).
#
# Every step runs under `timeout`; a step that fails or times out is recorded in
# OUT_DIR/status.txt with its exit status, and the script goes on. Everything lands in OUT_DIR.
# Where one command may run 10 minutes at most, run it as two calls into the same OUT_DIR:
# GPU_CHECK_STEPS="augment notebooks", then GPU_CHECK_STEPS="throughput pretrain".
#
# Knobs (environment): GPU_CHECK_STEPS (default "augment notebooks throughput pretrain"),
# GPU_CHECK_DEVICE (cuda; `cpu` or `fakecuda` for a dry run of the plumbing without a GPU),
# GPU_CHECK_PRESET (colab: the preset of steps 3 and 4), GPU_CHECK_BUDGET_S (15: seconds per
# pretrain run), GPU_CHECK_THROUGHPUT_S (6: seconds per throughput run), GPU_CHECK_JOBS (4),
# GPU_CHECK_NOTEBOOKS (default: every assignments/*.ipynb).
# Dry run on a CPU, CUDA's device rules enforced by the fake GPU of tests/fakecuda.py:
#   GPU_CHECK_DEVICE=fakecuda GPU_CHECK_PRESET=smoke GPU_CHECK_BUDGET_S=2 GPU_CHECK_THROUGHPUT_S=1 \
#     bash benchmarks/gpu_check.sh /tmp/gpu
# Data: $REPLEARN_DATA_DIR, else ../shared/data beside the repository, else torchvision's
# download, else the embedded working set.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-build/bench/gpu}"
mkdir -p "$OUT/runs" "$OUT/notebooks"
PY="${PYTHON:-python}"
export PYTHONUNBUFFERED=1
if [ -z "${REPLEARN_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export REPLEARN_DATA_DIR="$(cd ../shared/data && pwd)"
fi
STEPS="${GPU_CHECK_STEPS:-augment notebooks throughput pretrain}"
BUDGET="${GPU_CHECK_BUDGET_S:-15}"
THROUGHPUT_S="${GPU_CHECK_THROUGHPUT_S:-6}"
JOBS="${GPU_CHECK_JOBS:-4}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
PRESET="${GPU_CHECK_PRESET:-colab}"
METHODS="${GPU_CHECK_METHODS:-simclr mae clip}"
read -r -a NOTEBOOKS <<< "${GPU_CHECK_NOTEBOOKS:-$(echo assignments/*.ipynb)}"

# RUN: python, or python under the fake GPU; TORCH_DEVICE: the device the programs are given.
RUN=("$PY")
TORCH_DEVICE="$DEVICE"
if [ "$DEVICE" = fakecuda ]; then
  RUN=("$PY" -m tests.fakecuda module)
  TORCH_DEVICE=cuda
elif [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to torch; nothing to check" >&2
  exit 2
fi
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
fi
# appended, so that the steps can run in two calls into one OUT_DIR (GPU_CHECK_STEPS)
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) device $DEVICE, preset $PRESET, steps: $STEPS" \
  | tee -a "$OUT/status.txt" "$OUT/settings.txt"

step() {  # step NAME TIMEOUT_S COMMAND...: run, log, record the exit status (124: timed out)
  local name="$1" limit="$2"
  shift 2
  echo "== $name: $*"
  local t0=$SECONDS
  timeout --kill-after=20 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - t0))" | tee -a "$OUT/status.txt"
  tail -n 3 "$OUT/$name.log"
}
wants() { [[ " $STEPS " == *" $1 "* ]]; }

if wants augment; then
  augment_device="$TORCH_DEVICE"
  [ "$DEVICE" = fakecuda ] && augment_device=cpu  # timing the fake GPU means nothing
  step augment 150 "$PY" -m benchmarks.augment_throughput --device "$augment_device" --seconds 3 \
    --out "$OUT/augment.json"
fi
if wants notebooks; then
  step notebooks 420 "$PY" -m benchmarks.gpu_notebooks "${NOTEBOOKS[@]}" --device "$DEVICE" \
    --preset smoke --jobs "$JOBS" --timeout 240 --out "$OUT/notebooks"
fi
if wants throughput; then
  step throughput 420 "${RUN[@]}" benchmarks.colab_throughput --preset "$PRESET" \
    --device "$TORCH_DEVICE" --budget-s "$THROUGHPUT_S" --out "$OUT/colab_throughput.json"
fi
if wants checkpoints; then
  step checkpoints 3000 bash benchmarks/course_checkpoints_gpu.sh "$OUT/course_checkpoints"
fi
if wants pretrain; then
  available=$("$PY" -c "from replearn.pretrain import METHODS; print(' '.join(METHODS))")
  for method in $METHODS; do
    if [[ " $available " != *" $method "* ]]; then
      echo "pretrain-$method rc=skipped (not a replearn.pretrain method)" | tee -a "$OUT/status.txt"
      continue
    fi
    step "pretrain-$method" $((BUDGET + 120)) "${RUN[@]}" replearn.pretrain --method "$method" \
      --preset "$PRESET" --device "$TORCH_DEVICE" --budget-s "$BUDGET" --amp --no-eval \
      --checkpoint none --out-dir "$OUT/runs/$method-amp" --quiet
  done
  step pretrain-simclr-fp32 $((BUDGET + 120)) "${RUN[@]}" replearn.pretrain --method simclr \
    --preset "$PRESET" --device "$TORCH_DEVICE" --budget-s "$BUDGET" --no-amp --no-eval \
    --checkpoint none --out-dir "$OUT/runs/simclr-fp32" --quiet
fi

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
read = lambda name: json.loads((out / name).read_text()) if (out / name).exists() else None
rows = {}
for summary in sorted(out.glob("runs/*/*.json")):
    s = json.loads(summary.read_text())
    h = s["history"]
    rows[summary.parent.name] = {
        "method": s["method"], "steps": h.get("steps_done"), "seconds": h.get("wall_time_s"),
        "images_per_s": h.get("images_per_s"), "amp": h.get("amp"),
        "batch": s["settings"].get("batch_size"),
    }
gpu = (out / "gpu.csv").read_text().strip().splitlines()[-1] if (out / "gpu.csv").exists() else "?"
notebooks = read("notebooks/notebooks.json")
throughput = read("colab_throughput.json")
result = {"gpu": gpu, "settings": (out / "settings.txt").read_text().strip(),
          "notebooks": notebooks, "throughput": throughput, "pretrain": rows,
          "augment": read("augment.json"), "status": (out / "status.txt").read_text().splitlines()}
(out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str))
lines = [f"GPU: {gpu}", result["settings"], ""]
if notebooks:
    lines += ["| notebook (smoke) | ok | seconds | device |", "|---|---|---|---|"]
    lines += [f"| {n['notebook']} | {'yes' if n['ok'] else 'NO'} | {n['seconds']:.0f} | {n['device']} |"
              for n in notebooks["notebooks"]]
    lines.append("")
if throughput:
    lines += ["| notebook | run | batch | steps/s | images/s | s per epoch |", "|---|---|---|---|---|---|"]
    for assignment, runs in throughput["rows"].items():
        for name, r in runs.items():
            if "error" in r:
                lines.append(f"| {assignment} | {name} | | FAILED: {r['error'][:60]} | | |")
            else:
                lines.append(f"| {assignment} | {name} | {r.get('batch_size') or ''} | "
                             f"{r.get('steps_per_s') or ''} | {r.get('images_per_s') or ''} | "
                             f"{r.get('epoch_s') or ''} |")
    lines.append("")
if rows:
    lines += ["| entry point run | steps | seconds | images/s | AMP |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['steps']} | {r['seconds'] or 0:.0f} | {r['images_per_s'] or 0:,.0f} | {r['amp']} |")
    lines.append("")
lines += ["exit status of each step:", *[f"- {s}" for s in result["status"]]]
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
