#!/usr/bin/env bash
# The wheels `make gpu-smoke` needs on a GPU machine that has torch, transformers, accelerate, peft,
# safetensors, pillow, pyyaml, tqdm, numpy and sympy preinstalled but no network: pure-Python, ~3.6 MB
# (math-verify and its parser for the reward workers, easy-vqa for the tiny task's data). Run it where pip
# reaches PyPI; copy DIR along with the tree; scripts/gpu_smoke.py unpacks DIR/*.whl into a temporary
# folder on its path before it starts (no pip needed there).
# Usage: scripts/gpu_smoke_wheels.sh [DIR]     (default .whl/gpu-smoke, ignored by git)
set -euo pipefail
DIR=${1:-.whl/gpu-smoke}
PYTHON=${PYTHON:-python3}
mkdir -p "$DIR"
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --implementation py --platform any --python-version 3.12 -d "$DIR" \
  math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2 easy-vqa==1.0
echo "gpu-smoke wheels in $DIR:"
ls -1 "$DIR"
