"""Typed configs: one dataclass per section, loaded from YAML with dotted command-line overrides.

Every default lives here, once. Unknown keys are rejected with the offending key path and a
did-you-mean suggestion; values are converted to the field's type and range-checked.

    cfg = load_config("recipes/tiny_cpu_mhpo.yaml", ["algo.c=2.0", "trainer.lr=1e-6"])
    save_config(cfg, run_dir / "config.yaml")

Loss hyperparameters (``algo.c``, ``algo.clip_eps``, ...) default to ``None``, meaning "the loss
function's own default" (the loss signature in ``mhpo_vl.algos.losses`` is their one place).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin

import yaml

from mhpo_vl.errors import ConfigError

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class LoraConfig:
    """LoRA adapters through peft; off by default."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )

    def validate(self, path: str) -> None:
        _check(self.r >= 1, f"{path}.r", "must be >= 1")
        _check(self.alpha >= 1, f"{path}.alpha", "must be >= 1")
        _check(0.0 <= self.dropout < 1.0, f"{path}.dropout", "must be in [0, 1)")
        _check(len(self.target_modules) > 0, f"{path}.target_modules", "must name at least one module")


@dataclass
class ModelConfig:
    """Which policy to load and how."""

    name_or_path: str = ""
    # A llama.cpp .gguf file (relative to name_or_path, or absolute), dequantized on load; needs `gguf`.
    gguf_file: str = ""
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    freeze_vision_tower: bool = True
    trust_remote_code: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)

    def validate(self, path: str) -> None:
        _check(self.dtype in DTYPES, f"{path}.dtype", f"must be one of {', '.join(DTYPES)}")
        _check(self.min_pixels >= 1, f"{path}.min_pixels", "must be >= 1")
        _check(self.max_pixels >= self.min_pixels, f"{path}.max_pixels", "must be >= model.min_pixels")
        self.lora.validate(f"{path}.lora")


@dataclass
class DataConfig:
    """Prepared datasets (see data_prep) and the prompt template."""

    train_dir: str = ""
    train_split: str = "train"
    eval_dir: str = ""
    eval_split: str = "test"
    prompt_template: str = "think_answer"
    system_prompt: Optional[str] = None
    max_prompt_tokens: int = 1024
    shuffle: bool = True

    def validate(self, path: str) -> None:
        _check(self.max_prompt_tokens >= 8, f"{path}.max_prompt_tokens", "must be >= 8")


@dataclass
class VLLMConfig:
    """The colocated vLLM engine (``rollout.backend: vllm``); see README "vLLM rollouts"."""

    gpu_memory_utilization: float = 0.5      # share of GPU memory for vLLM (weights + KV cache); GPU only
    tensor_parallel_size: int = 1            # must be 1: each rank runs its own engine on its own GPU
    max_model_len: int = 0                   # 0 = data.max_prompt_tokens + rollout.max_new_tokens
    max_num_seqs: int = 256                  # sequences decoded together
    max_images_per_prompt: int = 4           # vLLM's limit_mm_per_prompt for images (video is off)
    enable_sleep_mode: bool = True           # GPU: free the engine's memory while training (sleep level 1)
    enforce_eager: bool = False              # GPU: true skips CUDA graphs
    # CPU: the engine's model under torch.compile (inductor) instead of eager; faster decoding for models
    # of tens of millions of parameters and up, ~1 min more start-up (see README "vLLM rollouts")
    cpu_compile: bool = False
    cpu_kvcache_space_gb: float = 1.0        # CPU: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE)
    # The engine's weight dtype; auto = model.dtype (the trainer's). bfloat16 samples from a bf16 copy of
    # float32 master weights (synced weights are cast); rollout.* mismatch metrics and algo.rollout_is cover it.
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"

    def validate(self, path: str) -> None:
        _check(0 < self.gpu_memory_utilization <= 1, f"{path}.gpu_memory_utilization", "must be in (0, 1]")
        _check(self.tensor_parallel_size == 1, f"{path}.tensor_parallel_size",
               f"must be 1, got {self.tensor_parallel_size}: each rank runs its own colocated engine on its own GPU "
               "and samples its own prompts, while the ranks of a tensor-parallel group would need identical "
               "prompts and seeds; a 7B model fits one 80 GB GPU (TP=1)")
        _check(self.max_model_len >= 0, f"{path}.max_model_len", "must be >= 0 (0 = automatic)")
        _check(self.max_num_seqs >= 1, f"{path}.max_num_seqs", "must be >= 1")
        _check(self.max_images_per_prompt >= 0, f"{path}.max_images_per_prompt", "must be >= 0")
        _check(self.cpu_kvcache_space_gb >= 1 and float(self.cpu_kvcache_space_gb).is_integer(),
               f"{path}.cpu_kvcache_space_gb", "must be a whole number of GiB >= 1 (vLLM reads VLLM_CPU_KVCACHE_SPACE "
               "as an integer)")


@dataclass
class RolloutConfig:
    """Grouped sampling: G responses for each of ``prompts_per_step`` prompts."""

    backend: Literal["hf", "vllm"] = "hf"    # hf: the trainer's own model; vllm: a colocated vLLM engine
    # hf backend's decoder: fast = one prefill per prompt shared by its G samples, in-place KV buffer
    # (mhpo_vl/rollout/decode.py); generate = transformers generate (also used for stop strings)
    hf_decoder: Literal["fast", "generate"] = "fast"
    prompts_per_step: int = 16
    group_size: int = 8
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop_strings: list[str] = field(default_factory=list)
    eval_temperature: float = 0.0
    eval_batch_size: int = 64
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    # Generate under trainer.mixed_precision too; false keeps generation in the model's dtype (on CPU a
    # small float32 model generates faster without bf16 autocast).
    mixed_precision: bool = True

    def validate(self, path: str) -> None:
        self.vllm.validate(f"{path}.vllm")
        _check(self.prompts_per_step >= 1, f"{path}.prompts_per_step", "must be >= 1")
        _check(self.group_size >= 2, f"{path}.group_size", "must be >= 2 (group-relative advantages)")
        _check(self.max_new_tokens >= 1, f"{path}.max_new_tokens", "must be >= 1")
        _check(self.temperature > 0, f"{path}.temperature", "must be > 0")
        _check(0 < self.top_p <= 1, f"{path}.top_p", "must be in (0, 1]")
        _check(self.top_k >= 0, f"{path}.top_k", "must be >= 0 (0 = off)")
        _check(self.eval_temperature >= 0, f"{path}.eval_temperature", "must be >= 0 (0 = greedy)")
        _check(self.eval_batch_size >= 1, f"{path}.eval_batch_size", "must be >= 1")


@dataclass
class AlgoConfig:
    """Policy loss (a name in POLICY_LOSSES), its hyperparameters, advantages and KL.

    Hyperparameters left at None take the loss function's own default.
    """

    name: str = "mhpo"
    agg: Optional[str] = None
    # MHPO
    c: Optional[float] = None
    k_pos: Optional[float] = None
    lam_pos: Optional[float] = None
    k_neg: Optional[float] = None
    lam_neg: Optional[float] = None
    dhp_normalize: Optional[bool] = None
    lfm: Optional[bool] = None
    dhp: Optional[bool] = None
    hazard: Optional[str] = None
    # clipped baselines
    clip_eps: Optional[float] = None
    clip_eps_low: Optional[float] = None
    clip_eps_high: Optional[float] = None
    # SAPO
    tau_pos: Optional[float] = None
    tau_neg: Optional[float] = None
    # advantages
    advantage: Literal["grpo", "rloo", "reinforce_pp"] = "grpo"
    std_normalize: bool = True
    # KL to a reference policy (off by default)
    kl_coef: float = 0.0
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    # updates per rollout batch: ppo_epochs x (global batch / mini_batch_size) optimizer steps.
    # mini_batch_size counts rows (responses) over all processes, like prompts_per_step: each rank takes
    # its share; 0 = the whole batch. Under dynamic sampling the step count stays the configured one.
    ppo_epochs: int = 1
    mini_batch_size: int = 0
    dynamic_sampling: bool = False
    dynamic_sampling_max_tries: int = 3
    # Rollout/training mismatch (rollout.backend: vllm): importance weights pi_trainer / pi_sampler,
    # truncated per token (token_tis) or masking whole responses outside [1/cap, cap] (seq_mis).
    rollout_is: Literal["none", "token_tis", "seq_mis"] = "token_tis"
    rollout_is_cap: float = 2.0
    # Stop the run when the sampler and the trainer disagree by more than this many nats per response token
    # on average (rollout/logprob_abs_diff_mean): the engine is not sampling from the trained policy (a broken
    # weight sync). Healthy runs stay far below 1e-1; 0 = never stop.
    max_rollout_mismatch: float = 1.0

    def validate(self, path: str) -> None:
        _check(self.rollout_is_cap > 1, f"{path}.rollout_is_cap", "must be > 1")
        _check(self.max_rollout_mismatch >= 0, f"{path}.max_rollout_mismatch", "must be >= 0 (0 = never stop)")
        _check(self.kl_coef >= 0, f"{path}.kl_coef", "must be >= 0")
        _check(self.ppo_epochs >= 1, f"{path}.ppo_epochs", "must be >= 1")
        _check(self.mini_batch_size >= 0, f"{path}.mini_batch_size", "must be >= 0 (0 = whole batch)")
        _check(self.dynamic_sampling_max_tries >= 1, f"{path}.dynamic_sampling_max_tries", "must be >= 1")
        if self.c is not None:
            _check(self.c > 0, f"{path}.c", "must be > 0")
        for name in ("lam_pos", "lam_neg", "k_pos", "k_neg"):
            value = getattr(self, name)
            if value is not None:
                _check(value > 0, f"{path}.{name}", "must be > 0")

    def loss_hparams(self) -> dict[str, Any]:
        """The hyperparameters that were set (not None), to pass to the loss function."""
        keys = ("agg", "c", "k_pos", "lam_pos", "k_neg", "lam_neg", "dhp_normalize", "lfm", "dhp",
                "hazard", "clip_eps", "clip_eps_low", "clip_eps_high", "tau_pos", "tau_neg")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


@dataclass
class RewardConfig:
    """Weighted verifier components, by registry name or ``path/file.py:function``, and their limits.

    Per-component settings are keyed by the component's name exactly as in ``components``.
    """

    components: dict[str, float] = field(default_factory=lambda: {"accuracy": 0.9, "format_reward": 0.1})
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_workers: int = 0  # parallel reward calls (and worker processes per per-sample user reward); 0 = auto
    # seconds one call may take, per component (a batched call counts as one); default 10 s for
    # user functions, a 60 s hang guard for built-ins
    timeouts: dict[str, float] = field(default_factory=dict)
    # where calls run: thread | process, for all components or {name: ...}; default process for
    # user functions, thread for built-ins
    isolation: Optional[Union[Literal["thread", "process"], dict[str, Literal["thread", "process"]]]] = None
    # the score of a call that timed out, raised or returned a non-finite/non-number: one value or {name: value}
    on_error: Union[float, dict[str, float]] = 0.0
    batched: list[str] = field(default_factory=list)  # components called once per batch with lists
    # How verifiers find the final answer: tags (<answer>, else \boxed, else a short bare reply) | boxed |
    # last_number (for models that answer in prose) | full_text. Also used by periodic eval.
    extract: Literal["tags", "boxed", "last_number", "full_text"] = "tags"

    def validate(self, path: str) -> None:
        _check(len(self.components) > 0, f"{path}.components", "must name at least one reward")
        _check(self.num_workers >= 0, f"{path}.num_workers", "must be >= 0 (0 = one per core)")
        names = list(self.components)
        keyed = {"options": self.options, "timeouts": self.timeouts, "batched": dict.fromkeys(self.batched),
                 "isolation": self.isolation if isinstance(self.isolation, dict) else {},
                 "on_error": self.on_error if isinstance(self.on_error, dict) else {}}
        for kind, mapping in keyed.items():
            for name in mapping:
                _check(name in self.components, f"{path}.{kind}.{name}",
                       "is not a component" + _suggest(name, names, "").replace("valid keys", "components"))
        for name, seconds in self.timeouts.items():
            _check(seconds > 0, f"{path}.timeouts.{name}", "must be > 0 seconds")
        values = self.on_error.values() if isinstance(self.on_error, dict) else [self.on_error]
        _check(all(math.isfinite(v) for v in values), f"{path}.on_error", "must be a finite number")


@dataclass
class TrainerConfig:
    """The RL loop: optimisation, checkpoints, evaluation, fault handling."""

    output_dir: str = "runs/default"
    max_steps: int = 100
    lr: float = 1e-6
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    warmup_steps: int = 0
    lr_schedule: Literal["cosine", "constant", "linear"] = "cosine"
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    micro_batch_size: int = 0
    # Training forward runs each prompt once for its G responses (a shared KV prefix), in micro-batches
    # that hold whole groups (micro_batch_size a multiple of group_size, or 0); one process only, and
    # not under gradient checkpointing (mhpo_vl/rollout/shared_prefix.py).
    shared_prefix: bool = True
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = "auto"
    seed: int = 0
    save_every: int = 0
    keep_last: int = 2
    eval_every: int = 0
    eval_limit: int = 0
    resume: str = ""
    max_consecutive_bad_steps: int = 5
    # stop when more than this fraction of a step's samples had a reward call time out or fail
    # (summed over processes); 1.0 = never stop
    max_reward_error_frac: float = 0.5
    # Parallel strategy under several processes: "ddp" replicates the model on every rank; "fsdp2" shards
    # parameters, gradients and optimizer state (torch FSDP2) over decoder layers, vision blocks and tower.
    strategy: Literal["ddp", "fsdp2"] = "ddp"
    fsdp_cpu_offload: bool = False  # fsdp2 only: keep the shards (and optimizer state) in CPU memory

    def validate(self, path: str) -> None:
        _check(self.max_steps >= 1, f"{path}.max_steps", "must be >= 1")
        _check(self.lr > 0, f"{path}.lr", "must be > 0")
        _check(self.weight_decay >= 0, f"{path}.weight_decay", "must be >= 0")
        _check(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, f"{path}.adam_beta1", "betas must be in [0, 1)")
        _check(self.warmup_steps >= 0, f"{path}.warmup_steps", "must be >= 0")
        _check(0 <= self.min_lr_ratio <= 1, f"{path}.min_lr_ratio", "must be in [0, 1]")
        _check(self.grad_clip >= 0, f"{path}.grad_clip", "must be >= 0 (0 = off)")
        _check(self.micro_batch_size >= 0, f"{path}.micro_batch_size", "must be >= 0 (0 = whole mini-batch)")
        _check(self.save_every >= 0, f"{path}.save_every", "must be >= 0 (0 = only at the end)")
        _check(self.keep_last >= 1, f"{path}.keep_last", "must be >= 1")
        _check(self.eval_every >= 0, f"{path}.eval_every", "must be >= 0 (0 = off)")
        _check(self.eval_limit >= 0, f"{path}.eval_limit", "must be >= 0 (0 = all)")
        _check(self.max_consecutive_bad_steps >= 1, f"{path}.max_consecutive_bad_steps", "must be >= 1")
        _check(0 <= self.max_reward_error_frac <= 1, f"{path}.max_reward_error_frac", "must be in [0, 1]")
        _check(not self.fsdp_cpu_offload or self.strategy == "fsdp2", f"{path}.fsdp_cpu_offload",
               "needs trainer.strategy=fsdp2")


@dataclass
class SFTConfig:
    """Supervised warm start (`mhpo-vl sft`): loss on the answer tokens only."""

    output_dir: str = "runs/sft"
    max_steps: int = 100
    batch_size: int = 32
    lr: float = 1e-4
    warmup_steps: int = 0
    grad_clip: float = 1.0
    target_template: str = "<answer>{answer}</answer>"

    def validate(self, path: str) -> None:
        _check(self.max_steps >= 1, f"{path}.max_steps", "must be >= 1")
        _check(self.batch_size >= 1, f"{path}.batch_size", "must be >= 1")
        _check(self.lr > 0, f"{path}.lr", "must be > 0")
        _check("{answer}" in self.target_template, f"{path}.target_template", "must contain {answer}")


@dataclass
class LoggingConfig:
    """Where metrics go besides metrics.jsonl."""

    progress_bar: bool = True
    plots: bool = True
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "mhpo-vl"
    # Logged rollouts for `mhpo-vl view`: every N steps (0 = off) the first `rollouts_per_step` prompts
    # of the batch with all their responses go to RUN_DIR/rollouts/step_N.jsonl.
    rollouts_every: int = 10
    rollouts_per_step: int = 4

    def validate(self, path: str) -> None:
        _check(self.rollouts_every >= 0, f"{path}.rollouts_every", "must be >= 0 (0 = off)")
        _check(self.rollouts_per_step >= 1, f"{path}.rollouts_per_step", "must be >= 1")


@dataclass
class Config:
    """A whole recipe."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)
        # a global row count: batch / mini optimizer steps per epoch whatever the number of processes (each
        # takes mini / processes rows of every mini-batch; the trainer checks that split when it starts)
        mini = self.algo.mini_batch_size
        batch = self.rollout.prompts_per_step * self.rollout.group_size
        _check(mini == 0 or batch % mini == 0, "algo.mini_batch_size",
               f"must divide rollout.prompts_per_step * rollout.group_size = {batch} (rows over all processes)")


# ----------------------------------------------------------------------------- loading


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _suggest(key: str, options: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{prefix}{close[0]}'?)"
    return f" (valid keys: {', '.join(sorted(options))})"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_YAML_BOOL_WORDS = {False: ("no", "off", "false"), True: ("yes", "on", "true")}


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Convert ``value`` (from YAML or a CLI string parsed as YAML) to the annotated type ``tp``."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for arg in args:
            try:
                return _coerce(value, arg, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is Literal:
        allowed = get_args(tp)
        if isinstance(value, bool) and value not in allowed:  # YAML 1.1 reads a bare no/off/yes/on as a bool
            value = next((a for a in allowed if isinstance(a, str) and a in _YAML_BOOL_WORDS[value]), value)
        if value not in allowed:
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(str, allowed))}"
                              + _suggest(str(value), [str(a) for a in allowed]))
        return value
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path)
    if origin is list:
        (item_tp,) = get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp in (dict, list):  # bare containers: any contents
        return _coerce(value, dict[str, Any] if tp is dict else list[Any], path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except ValueError:
            raise ConfigError(f"{path}: expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return int(as_float)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{path}: unsupported type {_type_name(tp)}")


def build_dataclass(cls: type, data: Any, path: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(f"unknown key '{key_path}'" + _suggest(str(key), names, f"{path}." if path else ""))
        kwargs[key] = _coerce(value, hints[key], key_path)
    return cls(**kwargs)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value (e.g. trainer.lr=1e-6)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _set_path(data: dict, parts: list[str], value: Any) -> None:
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def config_from_dict(data: dict, overrides: list[str] | None = None) -> Config:
    """Build and validate a Config from a nested mapping plus dotted ``key=value`` overrides."""
    data = _deep_copy(data or {})
    for text in overrides or []:
        parts, value = _parse_override(text)
        _set_path(data, parts, value)
    cfg = build_dataclass(Config, data, "")
    cfg.validate()
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML recipe (or only defaults when ``path`` is None) and apply overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"recipe not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a recipe must be a mapping of sections")
        data = loaded or {}
    try:
        return config_from_dict(data, overrides)
    except ConfigError as exc:
        if path is not None and "recipe not found" not in str(exc):
            raise ConfigError(f"{path}: {exc}") from None
        raise


def config_to_dict(cfg: Any) -> dict:
    """A plain nested dict (YAML-safe) of a config dataclass."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (what the run actually used)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data

