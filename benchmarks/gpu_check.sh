#!/usr/bin/env bash
# The GPU checks in one prepared run, about 8 minutes on one GPU (CI never runs it).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # default build/bench/gpu
#
# 1. the batched augmentation on the GPU vs per-image torchvision in a DataLoader
#    (benchmarks/augment_throughput.py --device cuda);
# 2. the colab preset's training throughput of every method of `python -m replearn.pretrain`
#    (SimCLR, MoCo, BYOL, SimSiam, MAE, and the CLIP-style model when registered) on full
#    CIFAR-10 with AMP, 30 s each; SimCLR once more without AMP (the AMP speed-up);
# 3. a summary: OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md (paste the table into
#    benchmarks/RESULTS.md with the GPU's name).
#
# GPU_CHECK_BUDGET_S (30), GPU_CHECK_PRESET (colab) and GPU_CHECK_DEVICE (cuda) change the runs;
# `GPU_CHECK_DEVICE=cpu GPU_CHECK_PRESET=smoke GPU_CHECK_BUDGET_S=2` checks the script itself.
# Data: $REPLEARN_DATA_DIR, else ../shared/data beside the repository, else torchvision's
# download. A step that fails is recorded with its exit status and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-build/bench/gpu}"
mkdir -p "$OUT/runs"
PY="${PYTHON:-python}"
if [ -z "${REPLEARN_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export REPLEARN_DATA_DIR="$(cd ../shared/data && pwd)"
fi
BUDGET="${GPU_CHECK_BUDGET_S:-30}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"  # cpu: a dry run of the plumbing, with GPU_CHECK_PRESET=smoke
PRESET="${GPU_CHECK_PRESET:-colab}"

if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to torch; nothing to check" >&2
  exit 2
fi
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
fi
: > "$OUT/status.txt"

step() {  # step NAME TIMEOUT_S COMMAND...: run, log, record the exit status
  local name="$1" limit="$2"
  shift 2
  echo "== $name: $*"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - t0))" | tee -a "$OUT/status.txt"
}

step augment 120 "$PY" -m benchmarks.augment_throughput --device "$DEVICE" --seconds 5 \
  --out "$OUT/augment.json"
METHODS=$("$PY" -c "from replearn.pretrain import METHODS; print(' '.join(m for m in ('simclr', 'moco', 'byol', 'simsiam', 'mae', 'clip') if m in METHODS))")
for method in $METHODS; do
  step "pretrain-$method" $((BUDGET + 120)) "$PY" -m replearn.pretrain --method "$method" \
    --preset "$PRESET" --device "$DEVICE" --budget-s "$BUDGET" --amp --no-eval --checkpoint none \
    --out-dir "$OUT/runs/$method-amp" --quiet
done
step pretrain-simclr-fp32 $((BUDGET + 120)) "$PY" -m replearn.pretrain --method simclr \
  --preset "$PRESET" --device "$DEVICE" --budget-s "$BUDGET" --no-amp --no-eval --checkpoint none \
  --out-dir "$OUT/runs/simclr-fp32" --quiet

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
rows = {}
for summary in sorted(out.glob("runs/*/*.json")):
    s = json.loads(summary.read_text())
    h = s["history"]
    rows[summary.parent.name] = {
        "method": s["method"], "steps": h.get("steps_done"), "seconds": h.get("wall_time_s"),
        "images_per_s": h.get("images_per_s"), "amp": h.get("amp"),
        "batch": s["settings"].get("batch_size"),
    }
augment = json.loads((out / "augment.json").read_text()) if (out / "augment.json").exists() else None
gpu = (out / "gpu.csv").read_text().strip().splitlines()[-1] if (out / "gpu.csv").exists() else "?"
result = {"gpu": gpu, "pretrain": rows, "augment": augment,
          "status": (out / "status.txt").read_text().splitlines()}
(out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str))
lines = [f"GPU: {gpu}", "", "| run | steps | seconds | images/s | AMP |", "|---|---|---|---|---|"]
for name, r in rows.items():
    ips = r["images_per_s"]
    lines.append(f"| {name} | {r['steps']} | {r['seconds'] or 0:.0f} | "
                 f"{ips or 0:,.0f} | {r['amp']} |")
lines += ["", "exit status of each step:", *[f"- {s}" for s in result["status"]]]
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
