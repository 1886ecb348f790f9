"""Check the torch that `make setup` / `make setup-vllm` installed: on a GPU machine it must be a CUDA build
that sees the GPU (else training would silently run on the CPU).

    python scripts/check_torch.py            # print the torch version and its CUDA build
    python scripts/check_torch.py --cuda     # exit 1 with one line saying what to do unless CUDA works

Imports nothing of mhpo-vl, so it runs right after torch is installed.
"""

from __future__ import annotations

import argparse
import sys

FIX = ("rerun with a CUDA build, e.g. `rm -rf .venv && make setup TORCH_PIP_ARGS=\"--index-url "
       "https://download.pytorch.org/whl/cu130\"` (pick the CUDA version your driver supports: nvidia-smi)")


def problem(version: str, cuda_build: str | None, cuda_available: bool) -> str | None:
    """Why this torch cannot train on the GPU of a GPU machine, or None when it can."""
    if cuda_build is None:
        return f"torch {version} is a CPU build on a machine with an NVIDIA GPU: {FIX}"
    if not cuda_available:
        return (f"torch {version} (CUDA {cuda_build}) does not see the GPU (driver older than CUDA "
                f"{cuda_build}?): {FIX}")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", action="store_true", help="fail unless torch is a CUDA build that sees a GPU")
    args = parser.parse_args(argv)
    import torch

    cuda_build = torch.version.cuda
    available = bool(cuda_build) and torch.cuda.is_available()
    print(f"check_torch: torch {torch.__version__}, CUDA build {cuda_build or 'none'}, "
          f"GPU {'visible' if available else 'not visible'}")
    if args.cuda and (reason := problem(torch.__version__, cuda_build, available)) is not None:
        print(f"check_torch: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
