#!/usr/bin/env bash
# Runs the test suite under both Keras backends (Keras fixes its backend at import, hence two
# pytest runs). JAX runs every test; TensorFlow reruns those marked `keras`.
# Fails when any test fails, and when a run collects no test (pytest's exit status 5).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export BUSGAN_NO_PROGRESS=1 TF_CPP_MIN_LOG_LEVEL=2
status=0
echo "== pytest, KERAS_BACKEND=jax (all tests)"
KERAS_BACKEND=jax "$PY" -m pytest -q -p no:cacheprovider "$@" || status=1
echo "== pytest, KERAS_BACKEND=tensorflow (tests marked keras)"
KERAS_BACKEND=tensorflow "$PY" -m pytest -q -p no:cacheprovider -m keras "$@" || status=1
exit $status
