#!/usr/bin/env bash
# The GPU checks of one device session (figures in benchmarks/RESULTS.md), in two parts:
#   bash benchmarks/gpu_session.sh probe      # train-gan 256 config-e; generate; gpu-phantom GAN speed; IRV2 images/s
#   bash benchmarks/gpu_session.sh pipeline   # configs/gpu-phantom.toml end to end (extra args: --set ...)
# Expects the wheels of keras, namex, optree, ImageHash, PyWavelets in .whl/ (the GPU machine
# has JAX but no Keras; no TensorFlow is needed).
set -uo pipefail
part=${1:?probe or pipeline}; shift
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src KERAS_BACKEND=jax BUSGAN_NO_PROGRESS=1 PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=/tmp/jaxcache XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
t() { local s=$SECONDS; "$@"; echo "[time] $((SECONDS - s)) s: $*"; }
if [ "$part" = probe ]; then
  python3 -m busgan phantom --out /tmp/ph256 --n-per-class 300 --size 256 | tail -1
  t timeout 170 python3 -m busgan train-gan --data /tmp/ph256/benign --out /tmp/g256 --preset e \
      --resolution 256 --channels 1 --batch-size 32 --kimg 2 --tick-kimg 0.5 --snapshot-kimg 2 \
      --precision mixed_bfloat16 --gamma 100 --fid-images 500 2>&1 | tee "$OUT/train_gan_256.log"
  t timeout 60 python3 -m busgan generate --network /tmp/g256 --seeds 1-2000 --trunc 1.6 \
      --out /tmp/gen256 --batch-size 64 2>&1 | tail -3 | tee "$OUT/generate_256.log"
  python3 -m busgan phantom --out /tmp/ph64 --n-per-class 300 --size 64 | tail -1
  t timeout 80 python3 -m busgan train-gan --config configs/gpu-phantom.toml --data /tmp/ph64/benign \
      --out /tmp/g64 --kimg 3 --tick-kimg 1 --snapshot-kimg 3 2>&1 | tee "$OUT/train_gan_64.log"
  t timeout 90 python3 benchmarks/classifier_speed.py --steps 20 --policies mixed_bfloat16 2>&1 | grep -v -i warn | tee "$OUT/irv2.txt"
else
  t timeout 400 python3 -m busgan run configs/gpu-phantom.toml --work /tmp/gp "$@" 2>&1 | tee "$OUT/pipeline.log"
  cp /tmp/gp/report.md /tmp/gp/stats/stats.json "$OUT/" 2>/dev/null
fi
