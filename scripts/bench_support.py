"""Parts of `scripts/bench_step.py`: shared setup, TRL's GRPOTrainer driven one step at a time, RSS meter."""

from __future__ import annotations

import ctypes
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PHASES = ("rollout", "logprob", "forward_backward", "optimizer")
ROOT = Path(__file__).resolve().parents[1]  # the repository
# Bench images: 448 x 448 pixels = 256 image tokens per prompt on Qwen2-VL (one per 28 x 28 pixels), a
# moderate VLM prompt (the shipped 7B recipes allow up to 1,280 image tokens, the 3B LoRA recipe 512).
IMAGE_SIDE = 448


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ----------------------------------------------------------------------------- shared setup


def prepare(workdir: Path, size: str, side: int, n_data: int = 512) -> tuple[Path, Path, int]:
    """The Qwen2-VL model of ``size`` and the easy-vqa prepared data (both offline) with ``side`` x ``side``
    images; its parameter count."""
    from safetensors import safe_open

    from mhpo_vl.models import build_model_of_size

    model_dir = build_model_of_size("qwen2_vl", workdir / "model", size, seed=0)
    params = 0
    for path in model_dir.glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            params += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    data_dir = workdir / "data"
    cmd = [sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", str(n_data),
           "--image-size", str(side), "--split", "train", "--output", str(data_dir)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return model_dir, data_dir, params


def pixel_overrides(side: int) -> tuple[str, ...]:
    """Config overrides that keep ``side`` x ``side`` images at their size (the processor's pixel limits) and
    admit their prompts (one image token per 28 x 28 pixels, plus the text)."""
    return (f"model.min_pixels={side * side}", f"model.max_pixels={side * side}",
            f"data.max_prompt_tokens={max(128, (side // 28) ** 2 + 128)}")


def step_config(recipe: str, model_dir: Path, data_dir: Path, workdir: Path, *, side: int, prompts: int,
                group: int, max_new_tokens: int, micro_batch: int = 0, backend: str = "hf", precision: str = "fp32",
                engine_dtype: str = "auto", engine_compile: bool = False, extra: tuple[str, ...] = ()) -> Any:
    """The recipe with the bench's model, data, batch, micro-batch and budget; seq-mean-token-mean, no KL,
    no eval; ``side`` x ``side`` images kept at their size (:func:`pixel_overrides`). ``precision`` bf16: the
    training forward/backward under bf16 autocast (float32 weights, as TRL's ``bf16=True``); generation stays
    in the weights' float32 either way (as TRL's ``generate``), except a vLLM engine given ``engine_dtype``;
    ``engine_compile``: rollout.vllm.cpu_compile; ``extra``: more overrides."""
    from mhpo_vl.config import load_config

    return load_config(recipe, [
        f"model.name_or_path={model_dir}", f"data.train_dir={data_dir}", "data.train_split=train",
        "data.eval_dir=", f"trainer.output_dir={workdir / ('mhpo_' + backend)}", "trainer.max_steps=100000",
        "trainer.eval_every=0", "trainer.save_every=0", "algo.kl_coef=0", "algo.agg=seq-mean-token-mean",
        "logging.progress_bar=false", "logging.plots=false", f"rollout.prompts_per_step={prompts}",
        f"rollout.group_size={group}", f"rollout.max_new_tokens={max_new_tokens}", f"rollout.backend={backend}",
        "rollout.mixed_precision=false", f"trainer.micro_batch_size={micro_batch}",
        f"trainer.mixed_precision={'bf16' if precision == 'bf16' else 'no'}", f"rollout.vllm.dtype={engine_dtype}",
        f"rollout.vllm.cpu_compile={str(engine_compile).lower()}", *pixel_overrides(side), *extra,
    ])


def bench_trainer(size: str, plan: dict[str, int], max_new_tokens: int, prefix: str,
                  extra: tuple[str, ...] = (), side: int = IMAGE_SIDE) -> tuple[Any, int]:
    """An mhpo-vl RLTrainer on the bench's model, data and batch for ``size`` (``plan``: prompts, group,
    micro; ``extra``: config overrides; ``side``: image side in pixels) in a fresh temp dir, and the model's
    parameter count."""
    import tempfile

    from mhpo_vl.trainer.rl import RLTrainer

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    recipe = str(ROOT / "recipes" / "tiny_cpu_mhpo.yaml")
    model_dir, data_dir, params = prepare(workdir, size, side=side)
    cfg = step_config(recipe, model_dir, data_dir, workdir, side=side, prompts=plan["prompts"], group=plan["group"],
                      max_new_tokens=max_new_tokens, micro_batch=plan["micro"], extra=extra)
    return RLTrainer(cfg), params


# ----------------------------------------------------------------------------- TRL


def trl_dataset(cfg: Any) -> Any:
    """The prepared records as TRL's conversational multimodal rows (same template, images, answers)."""
    from datasets import Dataset

    from mhpo_vl.data import PromptDataset
    from mhpo_vl.data.collator import load_template
    from mhpo_vl.data.images import load_image

    template = load_template(cfg.data.prompt_template)
    rows = []
    for r in PromptDataset(cfg.data.train_dir, cfg.data.train_split).records:
        messages = [{"role": "system", "content": cfg.data.system_prompt}] if cfg.data.system_prompt else []
        messages.append({"role": "user", "content": template.replace("{prompt}", str(r["prompt"]))})
        rows.append({"prompt": messages, "images": [load_image(p, r["image_root"], r["id"]) for p in r["images"]],
                     "answer": str(r["answer"]), "answer_type": r["answer_type"], "choices": r.get("choices") or []})
    return Dataset.from_list(rows)


def trl_reward(cfg: Any):
    """The recipe's reward through mhpo_vl's verifiers, in TRL's reward-function signature."""
    from mhpo_vl.rewards import combine

    scorer = combine(cfg.reward.components, cfg.reward.options)

    def reward(completions: list, answer: list, answer_type: list, choices: list, completion_ids: list,
               **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        fields = [{"answer_type": t, "choices": c or None, "response_length": len(ids)}
                  for t, c, ids in zip(answer_type, choices, completion_ids)]
        return scorer(texts, answer, fields).total

    reward.__name__ = "mhpo_vl_reward"
    return reward


def trl_args(cfg: Any, out: Path, steps: int, *, gradient_checkpointing: bool, use_vllm: bool = False,
             bf16: bool = False) -> Any:
    """GRPOConfig matching the mhpo-vl config: batch, G, budget, sampling, lr, clip, no KL, one step per batch,
    seq-mean-token-mean (loss_type="grpo"), group std scaling; TRL's defaults otherwise. ``use_vllm``: TRL's
    colocated vLLM engine for generation (``vllm_mode="colocate"``); ``bf16``: TRL's own default (autocast of
    the training forward), off unless the bench compares in bf16."""
    from trl import GRPOConfig

    r, t = cfg.rollout, cfg.trainer
    extra = {"use_vllm": True, "vllm_mode": "colocate"} if use_vllm else {}
    return GRPOConfig(**extra,
        output_dir=str(out), per_device_train_batch_size=r.prompts_per_step * r.group_size,
        gradient_accumulation_steps=1, num_generations=r.group_size, max_completion_length=r.max_new_tokens,
        temperature=r.temperature, top_p=r.top_p, top_k=r.top_k, learning_rate=t.lr, lr_scheduler_type="constant",
        max_grad_norm=t.grad_clip, beta=0.0, num_iterations=1, loss_type="grpo", scale_rewards="group",
        max_steps=steps, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=bf16,
        fp16=False, seed=t.seed, dataloader_num_workers=0, disable_tqdm=True, log_completions=False,
        gradient_checkpointing=gradient_checkpointing,
    )


def let_trl_vllm_skip_video() -> None:
    """TRL's colocated engine leaves vLLM's video input on, whose start-up profiling needs torchvision, which
    is not installed here; give it the image-only limit mhpo-vl's own engine uses (the only change)."""
    import trl.generation.vllm_generation as generation
    import vllm

    def llm(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("limit_mm_per_prompt", {"image": 1, "video": 0})
        return vllm.LLM(*args, **kwargs)

    generation.LLM = llm


DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextmanager
def restored_distributed_env() -> Iterator[None]:
    """Undo the torch.distributed variables TRL's colocated mode exports (RANK=0, WORLD_SIZE=1, ...): left set,
    every trainer built after it (the next size's TRL and mhpo-vl trainers alike) believes it is one of
    several processes and is wrapped in a one-process DistributedDataParallel, which is not the setting
    being compared."""
    before = {k: os.environ.get(k) for k in DISTRIBUTED_ENV}
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class TrlRunner:
    """A GRPOTrainer whose ``train()`` runs in a thread and pauses after every optimizer step.

    ``step()`` lets it run one step and returns that step's wall seconds split into PHASES (wrapped
    methods: ``_prepare_inputs`` = rollout incl. reward and advantages, no-grad
    ``_get_per_token_logps_and_entropies`` = log-prob, ``training_step`` minus ``_prepare_inputs`` =
    forward-backward, the rest = grad clip, optimizer step and logging).
    """

    def __init__(self, args: Any, cfg: Any) -> None:
        import torch
        from transformers import TrainerCallback
        from transformers.trainer_callback import PrinterCallback
        from trl import GRPOTrainer

        from mhpo_vl.models import load_policy, load_processor

        self.n = cfg.rollout.prompts_per_step * cfg.rollout.group_size
        self._go = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self._error: BaseException | None = None
        self._closing = False
        self._phase: dict[str, float] = {}
        self._start = 0.0
        self._end = 0.0
        runner = self

        class Pause(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                runner._done.release()  # ready: the next trainer may be built (it resets accelerate's state)
                runner._wait()

            def on_step_end(self, args, state, control, **kwargs):
                runner._end = time.perf_counter()
                runner._done.release()
                runner._wait()

        self.trainer = GRPOTrainer(model=load_policy(cfg.model), reward_funcs=trl_reward(cfg), args=args,
                                   train_dataset=trl_dataset(cfg), processing_class=load_processor(cfg.model),
                                   callbacks=[Pause()])
        self.trainer.remove_callback(PrinterCallback)  # TRL's per-step log dicts would flood the output
        self._wrap("_prepare_inputs", "prepare")
        self._wrap("training_step", "training_step")
        original = self.trainer._get_per_token_logps_and_entropies

        def logps(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                if not torch.is_grad_enabled():
                    self._phase["logprob"] = self._phase.get("logprob", 0.0) + time.perf_counter() - t0

        self.trainer._get_per_token_logps_and_entropies = logps
        self._threads = torch.get_num_threads()
        self._thread = threading.Thread(target=self._train, daemon=True)
        self._thread.start()
        self._done.acquire()
        if self._error is not None:
            raise RuntimeError(f"TRL GRPOTrainer failed to start: {self._error}") from self._error

    def _wrap(self, name: str, key: str) -> None:
        original = getattr(self.trainer, name)

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                self._phase[key] = self._phase.get(key, 0.0) + time.perf_counter() - t0

        setattr(self.trainer, name, timed)

    def _wait(self) -> None:
        self._go.acquire()
        if self._closing:
            raise SystemExit  # unwinds train() in this thread only
        self._phase = {}
        self._start = time.perf_counter()

    def _train(self) -> None:
        import torch

        torch.set_num_threads(self._threads)
        try:
            self.trainer.train()
        except SystemExit:
            pass
        except BaseException as exc:  # handed to the caller of step()
            self._error = exc
        finally:
            self._done.release()

    def step(self) -> dict[str, float]:
        self._go.release()
        self._done.acquire()
        if self._error is not None:
            raise RuntimeError(f"TRL GRPOTrainer failed: {type(self._error).__name__}: {self._error}") from self._error
        if not self._thread.is_alive():
            raise RuntimeError("TRL GRPOTrainer stopped before the requested steps")
        total = self._end - self._start
        p = self._phase
        logprob = p.get("logprob", 0.0)
        rollout = p.get("prepare", 0.0) - logprob
        forward_backward = p.get("training_step", 0.0) - p.get("prepare", 0.0)
        history = [h for h in self.trainer.state.log_history if "completions/mean_length" in h]
        length = history[-1]["completions/mean_length"] if history else float("nan")
        return {"total": total, "rollout": rollout, "logprob": logprob, "forward_backward": forward_backward,
                "optimizer": total - rollout - logprob - forward_backward, "tokens": length * self.n,
                "length": length}

    def close(self) -> None:
        if self._thread.is_alive():
            self._closing = True
            self._go.release()
            self._thread.join(timeout=60)


# ----------------------------------------------------------------------------- memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


class RssMeter:
    """Samples this process's RSS every ``interval`` s; ``window()`` yields the peak and the growth over
    the RSS at its start (freed heap is handed back to the OS first, so the start is not inflated)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        try:
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except OSError:
            self._trim = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_mb())

    @contextmanager
    def window(self) -> Iterator[Any]:
        if self._trim is not None:
            self._trim(0)
        start = _rss_mb()
        self.peak = start
        result = type("Window", (), {})()
        yield result
        result.peak_mb = max(self.peak, _rss_mb())
        result.growth_mb = result.peak_mb - start

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
