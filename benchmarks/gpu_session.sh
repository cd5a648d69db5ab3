#!/usr/bin/env bash
# The GPU checks of one device session, most valuable first (issue 14, point 6). Each check
# prints one Markdown table row (also appended to $OUT/rows.md); when the time limit comes the
# running check is interrupted (SIGINT, then killed 20 s later), the ones not started print a
# "skipped" row, and the script exits 0.
#
#   bash benchmarks/gpu_session.sh [LIMIT_S] [CHECK ...]
#     LIMIT_S  seconds for the whole script (default 570: one device command may run 600)
#     CHECK    1 pipeline    configs/gpu-phantom.toml end to end, with its verdict
#              2 generate    generation to PNG on disk at config-e 256x256, and generate-and-select
#                            of 25,000 images of one class in one pass (InceptionResNetV2 256x256)
#              3 classifier  InceptionResNetV2 256x256: the step alone vs fed by busgan's loader
#              4 stylegan2   s/kimg at config-e 256x256, against NVlabs' 6.6 s/kimg on an H200
#              5 gan-fidelity  two class GANs vs one conditional GAN at equal images shown, 64x64
#                            gpu-phantom widths (benchmarks/gan_fidelity.py; two pipeline runs)
#            default: 1 2 3 4, in that order; 5 is asked for by name (a command of its own). Check 1 alone fills most of one command; a second
#            command runs the rest: bash benchmarks/gpu_session.sh 570 2 3 4
#
# Expects the wheels of keras, namex, optree, ImageHash and PyWavelets in .whl/ (the GPU machine
# has JAX but no Keras; no TensorFlow is needed): carry .whl. PYTHON=.venv/bin/python uses that
# interpreter and installs nothing. Logs go to $OUT (default /tmp/out).
set -uo pipefail
LIMIT=${1:-570}; shift || true
CHECKS=${*:-1 2 3 4}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
START=$SECONDS
PY=${PYTHON:-python3}  # another interpreter (a venv with Keras) needs no wheels
if [ -z "${PYTHON:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src KERAS_BACKEND=jax BUSGAN_NO_PROGRESS=1 PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=/tmp/jaxcache XLA_PYTHON_CLIENT_PREALLOCATE=false
GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
row() { echo "$1" | tee -a "$OUT/rows.md"; }
row "| check | machine: ${GPU:-no GPU found}, $(nproc) cores | figure | target |"
row "|---|---|---|---|"

# check NAME BUDGET_S LOG CMD...: run CMD within min(BUDGET_S, time left); 0 when it ran to its end
check() {
  local name=$1 budget=$2 log=$3; shift 3
  local left=$((LIMIT - (SECONDS - START) - 20))  # 20: the grace between SIGINT and the kill
  if [ "$left" -lt 30 ]; then row "| $name | skipped: the time limit ($LIMIT s) was reached | - | - |"; return 1; fi
  [ "$budget" -gt "$left" ] && budget=$left
  local t0=$SECONDS
  timeout -s INT -k 20 "$budget" "$@" >"$OUT/$log" 2>&1
  local rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    row "| $name | stopped at its time limit ($budget s); log: $log | - | - |"; return 1
  elif [ $rc -ne 0 ]; then
    row "| $name | failed (exit $rc) after $((SECONDS - t0)) s: $(grep -v '^\s*$' "$OUT/$log" | tail -1 | tr '|' '/') | - | - |"; return 1
  fi
  ELAPSED=$((SECONDS - t0))
}

for c in $CHECKS; do
  case $c in
    1|pipeline)
      if check "1 pipeline" 540 1-pipeline.log $PY -m busgan run configs/gpu-phantom.toml --work /tmp/gp; then
        cp /tmp/gp/report.md /tmp/gp/stats/stats.json "$OUT/" 2>/dev/null
        row "$($PY - "$ELAPSED" <<'EOF'
import json, sys
s = json.load(open("/tmp/gp/stats/stats.json"))
d = s["primary"]["decision"]
aucs = ", ".join(f"{arm} {sum(v) / len(v):.3f}" for arm, v in s["aucs"].items())
t = int(sys.argv[1])
print(f"| 1 pipeline | configs/gpu-phantom.toml end to end (busgan run) | {t // 60} min {t % 60:02d} s; "
      f"AUC {aucs}; primary {d['figure']:+.4f} [{d['lower']:+.4f}, {d['upper']:+.4f}]: {d['statement']} | under 9 min |")
EOF
)"
      fi ;;
    2|generate)
      check "2 generate" 240 2-generate.log $PY benchmarks/generate_speed.py --config configs/paper.toml \
          --batch 64 --n 8000 --fused --fused-n 25000 --row \
        && grep '^|' "$OUT/2-generate.log" | tee -a "$OUT/rows.md" ;;
    3|classifier)
      check "3 classifier" 200 3-classifier.log $PY benchmarks/classifier_speed.py --config configs/paper.toml \
          --image-size 256 --mixed --workers 8 --steps 40 --row \
        && grep '^|' "$OUT/3-classifier.log" | tee -a "$OUT/rows.md" ;;
    4|stylegan2)
      if check "4 stylegan2" 200 4-stylegan2.log $PY benchmarks/stylegan2_step.py --preset e --resolution 256 \
          --channels 1 --batch 32 --precision mixed_bfloat16 --iters 64 --warmup 16 --json; then
        row "$($PY - "$OUT/4-stylegan2.log" <<'EOF'
import json, sys
r = json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])
print(f"| 4 stylegan2 | config-e 256x256x1, batch 32, mixed bfloat16, {r['device']} | **{r['s_per_kimg']:.2f} s/kimg** "
      f"({6.6 / r['s_per_kimg']:.1f}x NVlabs' 6.6), compile {r['warmup_s']} s | below 6.6 s/kimg |")
EOF
)"
      fi ;;
    5|gan-fidelity)
      check "5 gan-fidelity" 560 5-gan-fidelity.log $PY benchmarks/gan_fidelity.py --config configs/gpu-phantom.toml \
          --work /tmp/gf && cp /tmp/gf/gan_fidelity.md "$OUT/" \
        && row "| 5 gan-fidelity | separate vs conditional GANs, gpu-phantom 64x64: see gan_fidelity.md | $(grep -c '^| separate\|^| conditional' /tmp/gf/gan_fidelity.md) rows | - |" ;;
    *) row "| $c | unknown check (1 pipeline, 2 generate, 3 classifier, 4 stylegan2, 5 gan-fidelity) | - | - |" ;;
  esac
done
echo "[gpu_session] $((SECONDS - START)) s of $LIMIT"
