#!/usr/bin/env bash
# The test suite (what CI runs), or its fast tier for the edit loop.
#
#   bash scripts/test.sh [PYTEST_ARGS...]         both Keras backends: JAX runs every test,
#                                                 TensorFlow reruns those marked `keras`
#   bash scripts/test.sh --fast [PYTEST_ARGS...]  JAX only, tests not marked `slow` (< 2 min)
#
# Keras fixes its backend at import, hence two pytest runs. They run at the same time: each
# keeps only about 1.3 of the 2 build-machine cores busy (XLA compiles on one thread), so
# together they take little more than the JAX run alone (benchmarks/RESULTS.md). Each run has
# a temporary folder of its own; the TensorFlow run's output is printed when it ends.
# Fails when any test fails, and when a run collects no test (pytest's exit status 5).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export BUSGAN_NO_PROGRESS=1 TF_CPP_MIN_LOG_LEVEL=2
pytest_run() { "$PY" -m pytest -q -p no:cacheprovider "$@"; }

if [ "${1:-}" = "--fast" ]; then
  shift
  echo "== pytest, KERAS_BACKEND=jax, fast tier (tests not marked slow)"
  KERAS_BACKEND=jax pytest_run -m "not slow" "$@"
  exit $?
fi

scratch=$(mktemp -d)
tf_pid=""
cleanup() { [ -n "$tf_pid" ] && kill "$tf_pid" 2>/dev/null; rm -rf "$scratch"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$scratch/jax" "$scratch/tf"
(TMPDIR="$scratch/tf" KERAS_BACKEND=tensorflow pytest_run -m keras "$@" >"$scratch/tf.log" 2>&1
 echo $? >"$scratch/tf.rc") &
tf_pid=$!
status=0
echo "== pytest, KERAS_BACKEND=jax (all tests; the TensorFlow run goes on beside it)"
TMPDIR="$scratch/jax" KERAS_BACKEND=jax pytest_run -n 2 --dist loadfile "$@" || status=1
wait "$tf_pid"
tf_pid=""
echo "== pytest, KERAS_BACKEND=tensorflow (tests marked keras)"
cat "$scratch/tf.log"
[ "$(cat "$scratch/tf.rc" 2>/dev/null)" = 0 ] || status=1
exit $status
