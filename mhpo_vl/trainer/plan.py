"""`mhpo-vl plan`: per-GPU memory of a recipe's RL run, whether it fits, and the change that makes it fit.

The estimate is arithmetic over the model's sizes (:mod:`mhpo_vl.models.sizes`) and the recipe:

    persistent  weights + gradients + AdamW moments (+ DDP gradient buckets, + KL reference model),
                divided by the number of GPUs under FSDP2 (every parameter, gradient and state sharded)
    rollout     HF generate: KV cache of all local sequences at full length + the prefill's largest
                transient + (FSDP2) the unsharded parameters held for the whole generate call;
                vLLM: rollout.vllm.gpu_memory_utilization x GPU memory, held for the whole run
    training    one micro-batch's saved activations (all decoder layers, or one layer + the layer
                inputs with gradient checkpointing) + response logits + (FSDP2) gathered units
    peak        persistent + max(rollout, training) + a fixed runtime overhead

Activation bytes per token per decoder layer (derived from Qwen2/3 decoder code: what autograd saves):
two fp32 RMSNorm intermediates and two residual-stream tensors (4h), the two normed inputs (2h), q,
k, v after RoPE, the GQA-repeated k and v, the attention output before and after the head merge
(5 q_dim + 2 kv_dim) and the gated MLP's gate, up, act(gate) and product (4 I). A test measures a
real training step of a tiny model on CPU and checks the estimate against the measured peak.
All numbers are estimates: allocator fragmentation and kernel workspaces vary, so "fits" leaves
``HEADROOM`` of the GPU free.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mhpo_vl.config import Config
from mhpo_vl.models.sizes import ModelSpec
from mhpo_vl.rollout.factory import engine_dtype

GIB = 1024**3
HEADROOM = 0.05  # fraction of GPU memory left free for fragmentation and workspaces
DEFAULT_OVERHEAD_GIB = 1.5  # CUDA context, cuBLAS/NCCL workspaces (measured ~1-2 GiB on A100/H100)
VLLM_DEFAULT_UTILIZATION = 0.3  # used when the recipe has no rollout.vllm.gpu_memory_utilization
STRATEGIES = ("ddp", "fsdp2")
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}


@dataclass
class Setup:
    """What the estimate depends on beyond the recipe: GPU count, memory, strategy, prompt length."""

    cfg: Config
    gpus: int = 1
    gpu_mem_gib: float = 80.0
    strategy: str = "ddp"
    prompt_tokens: int | None = None  # tokens per prompt incl. image tokens (None: data.max_prompt_tokens)
    overhead_gib: float = DEFAULT_OVERHEAD_GIB
    offload: bool = False  # FSDP2 CPU offload: shards, gradients and AdamW moments live in CPU memory

    @property
    def sharded(self) -> bool:
        return self.strategy == "fsdp2" and self.gpus > 1

    @property
    def offloaded(self) -> bool:
        return self.offload and self.strategy == "fsdp2"

    def describe(self) -> str:
        offload = " with trainer.fsdp_cpu_offload" if self.offloaded else ""
        if self.gpus == 1:
            return "1 process" + (f" (fsdp2{offload} on 1 GPU: nothing to shard)" if self.strategy == "fsdp2" else "")
        return f"trainer.strategy={self.strategy}{offload} on {self.gpus} GPUs"


@dataclass
class Item:
    key: str
    label: str
    phase: str  # persistent | rollout | training
    bytes: float
    note: str = ""


@dataclass
class Estimate:
    """Per-GPU bytes by item and phase, and the resulting peak."""

    setup: Setup
    spec: ModelSpec
    items: list[Item] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def phase(self, name: str) -> float:
        return sum(i.bytes for i in self.items if i.phase == name)

    @property
    def overhead(self) -> float:
        return self.setup.overhead_gib * GIB

    @property
    def peak(self) -> float:
        return self.phase("persistent") + max(self.phase("rollout"), self.phase("training")) + self.overhead

    @property
    def budget(self) -> float:
        return self.setup.gpu_mem_gib * GIB * (1 - HEADROOM)

    @property
    def fits(self) -> bool:
        return self.peak <= self.budget

    def get(self, key: str) -> float:
        return sum(i.bytes for i in self.items if i.key == key)


# ----------------------------------------------------------------------------- pieces


def compute_bytes(cfg: Config) -> int:
    """Bytes per element of activations: bf16/fp16 under mixed precision ("auto" = bf16 on a GPU)."""
    mp = cfg.trainer.mixed_precision
    return _BYTES[cfg.model.dtype] if mp == "no" else 2


def image_tokens(spec: ModelSpec, pixels: int) -> int:
    """Tokens of one image of ``pixels`` pixels after the 2x2 merge (0 for text models)."""
    if not spec.is_vlm:
        return 0
    return max(1, pixels // (spec.patch_size * spec.merge_size) ** 2)


def trainable_params(spec: ModelSpec, cfg: Config) -> tuple[int, int]:
    """(trainable params stored in the model dtype, LoRA adapter params stored in fp32)."""
    vision_trains = spec.is_vlm and not cfg.model.freeze_vision_tower
    lora = cfg.model.lora
    if lora.enabled:
        adapters = spec.lora_params(lora.r, lora.target_modules, include_vision=vision_trains)
        return (spec.vision_params if vision_trains else 0), adapters
    frozen = spec.vision_params if (spec.is_vlm and cfg.model.freeze_vision_tower) else 0
    return spec.total_params - frozen, 0


def layer_activation_bytes(spec: ModelSpec, cb: int, pb: int, attn: str, seq: int) -> float:
    """Saved activations of one decoder layer per token (see module docstring), in bytes."""
    h, q, kv = spec.hidden, spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    out = 2 * h * 4 + 2 * h * pb + (2 * h + 5 * q + 2 * kv + 4 * spec.intermediate) * cb
    if attn == "eager":  # scores and probabilities materialised: heads x seq per token, fp32 softmax
        out += 2 * spec.heads * seq * 4
    return out


def vision_block_activation_bytes(spec: ModelSpec, cb: int, pb: int) -> float:
    """Saved activations of one vision block per patch (same accounting with MHA)."""
    hv = spec.vision_hidden
    return 2 * hv * 4 + 2 * hv * pb + (9 * hv + 4 * spec.vision_intermediate) * cb


def lora_activation_bytes(spec: ModelSpec, cfg: Config, cb: int) -> float:
    """Per token per decoder layer: the rank-r output of each targeted linear. RL forwards run without
    dropout (mhpo_vl.models.dropout), so LoRA keeps no dropped-out copy of its input whatever lora.dropout says."""
    lora = cfg.model.lora
    if not lora.enabled or spec.layers == 0:
        return 0.0
    targets = set(lora.target_modules)
    per_model = sum(lora.r for lin in spec.linears if lin.name in targets and not lin.vision)
    return per_model / spec.layers * cb


def _vllm_utilization(cfg: Config) -> float | None:
    if cfg.rollout.backend != "vllm":
        return None
    vllm = getattr(cfg.rollout, "vllm", None)
    return float(getattr(vllm, "gpu_memory_utilization", VLLM_DEFAULT_UTILIZATION))


# ----------------------------------------------------------------------------- estimate


def estimate(setup: Setup, spec: ModelSpec) -> Estimate:
    """Per-GPU memory of one RL step of ``setup.cfg`` on ``spec`` (see module docstring)."""
    cfg = setup.cfg
    est = Estimate(setup, spec)
    add = est.items.append
    n = setup.gpus
    shard = n if setup.sharded else 1
    pb, cb = _BYTES[cfg.model.dtype], compute_bytes(cfg)
    gc = cfg.model.gradient_checkpointing
    sharded_note = f"/ {n} GPUs (FSDP2)" if shard > 1 else ("replicated on every GPU" if n > 1 else "")

    full, adapters = trainable_params(spec, cfg)
    # Under FSDP2 CPU offload the shards, their gradients and AdamW moments stay in host memory.
    on_gpu = 0.0 if setup.offloaded else 1.0
    if setup.offloaded:
        host = (spec.total_params * pb + 3 * (full * pb + adapters * 4) + adapters * 4) / shard
        est.facts["cpu_offload_bytes_per_process"] = host
        sharded_note = f"{sharded_note}; in CPU memory (fsdp_cpu_offload)".lstrip("; ")
    add(Item("weights", "weights", "persistent", on_gpu * (spec.total_params * pb + adapters * 4) / shard,
             f"{spec.total_params / 1e9:.2f}B params x {pb} B" + (f" + {adapters / 1e6:.1f}M LoRA fp32" if adapters else "")
             + (f", {sharded_note}" if sharded_note else "")))
    grad_bytes = full * pb + adapters * 4
    add(Item("gradients", "gradients", "persistent", on_gpu * grad_bytes / shard,
             f"{(full + adapters) / 1e9:.3f}B trainable params"))
    add(Item("optimizer", "AdamW moments", "persistent", on_gpu * 2 * grad_bytes / shard,
             "exp_avg + exp_avg_sq in the trainable params' dtype"))
    if setup.strategy == "ddp" and n > 1:
        add(Item("ddp_buckets", "DDP gradient buckets", "persistent", grad_bytes,
                 "torch DDP keeps a flat copy of the gradients for all-reduce"))
    if cfg.algo.kl_coef > 0 and not cfg.model.lora.enabled:
        add(Item("reference", "KL reference model", "persistent", on_gpu * spec.total_params * pb / shard,
                 "a second frozen copy (algo.kl_coef > 0 without LoRA)"))

    # sequence geometry
    img_max = image_tokens(spec, cfg.model.max_pixels)
    prompt = setup.prompt_tokens or cfg.data.max_prompt_tokens
    new = cfg.rollout.max_new_tokens
    seq = prompt + new
    prompts_local = math.ceil(cfg.rollout.prompts_per_step / n)
    rows_local = prompts_local * cfg.rollout.group_size
    # algo.mini_batch_size counts rows over all processes: each GPU takes its share
    mini = min(max(1, cfg.algo.mini_batch_size // n) if cfg.algo.mini_batch_size else rows_local, rows_local)
    micro = min(cfg.trainer.micro_batch_size or mini, mini)
    est.facts.update(prompt_tokens=prompt, new_tokens=new, image_tokens_min=image_tokens(spec, cfg.model.min_pixels),
                     image_tokens_max=img_max, prompts_per_gpu=prompts_local, sequences_per_gpu=rows_local,
                     micro_batch_rows=micro, compute_bytes=cb, param_bytes=pb)

    # rollout phase
    utilization = _vllm_utilization(cfg)
    if utilization is not None:
        reserve = utilization * setup.gpu_mem_gib * GIB
        add(Item("vllm", "vLLM engine (weights + KV cache)", "persistent", reserve,
                 f"rollout.vllm.gpu_memory_utilization={utilization:g} x {setup.gpu_mem_gib:g} GiB"))
        engine = engine_dtype(cfg)  # the engine's weights and KV cache dtype (rollout.vllm.dtype)
        eb = _BYTES[engine]
        need = spec.total_params * eb + seq * spec.layers * 2 * spec.kv_heads * spec.head_dim * eb
        est.facts["vllm_min_bytes"] = need
        if reserve < need:
            est.items[-1].note += (f"; TOO SMALL: its {engine} weights and one {seq}-token sequence need "
                                   f"{need / GIB:.1f} GiB")
    else:
        kv = rows_local * seq * spec.layers * 2 * spec.kv_heads * spec.head_dim * cb
        add(Item("kv_cache", "KV cache (generate)", "rollout", kv,
                 f"{rows_local} sequences x {seq} tokens x {spec.layers} layers"))
        prefill = rows_local * prompt * (3 * spec.intermediate + spec.hidden) * cb + rows_local * spec.vocab * 4 * 2
        add(Item("prefill", "prefill transient", "rollout", prefill,
                 f"largest MLP intermediate over {rows_local} x {prompt} prompt tokens"))
        if shard > 1:
            add(Item("unsharded_rollout", "unsharded params for generate", "rollout", spec.total_params * cb,
                     "FSDP2 keeps the parameters gathered for the whole generate call"))

    # training phase
    per_layer = layer_activation_bytes(spec, cb, pb, cfg.model.attn_implementation, seq)
    per_layer += lora_activation_bytes(spec, cfg, cb)
    tokens = micro * seq
    if gc:
        act = tokens * (spec.layers * spec.hidden * pb + per_layer)
        act_note = f"{micro} rows x {seq} tokens: layer inputs + one recomputed layer (checkpointing on)"
    else:
        act = tokens * spec.layers * per_layer
        act_note = f"{micro} rows x {seq} tokens x {spec.layers} layers (checkpointing off)"
    act += tokens * spec.hidden * (pb + 4 + cb)  # embeddings and the final norm
    add(Item("activations", "activations", "training", act, act_note))
    if spec.is_vlm and not cfg.model.freeze_vision_tower:
        patches = micro * img_max * spec.merge_size**2
        depth = 1 if gc else spec.vision_depth
        add(Item("vision_activations", "vision tower activations", "training",
                 patches * depth * vision_block_activation_bytes(spec, cb, pb)
                 + (patches * spec.vision_depth * spec.vision_hidden * pb if gc else 0),
                 f"trainable tower: {micro} rows x {img_max} image tokens"))
    logits_per = cb + 4 + (4 if cfg.rollout.temperature != 1.0 else 0) + 8
    add(Item("logits", "response logits", "training", micro * new * spec.vocab * logits_per,
             f"{micro} x {new} x {spec.vocab} vocab: output, fp32 copy, softmax/backward buffers"))
    if shard > 1:
        largest = max(spec.layer_params, spec.vision_block_params)
        add(Item("fsdp_buffers", "FSDP2 gathered units", "training", (spec.root_params + 3 * largest) * cb,
                 "root unit (embeddings, lm_head) + current and prefetched layer + its unsharded grads"))
    return est


# ----------------------------------------------------------------------------- suggestions


Change = tuple[str, Callable[[Setup], Setup]]
Fix = tuple[list[str], Estimate]  # the overrides applied (labels) and the estimate after them


def _with(setup: Setup, overrides: dict[str, Any] | None = None, **fields: Any) -> Setup:
    new = dataclasses.replace(setup, **fields)
    if overrides:
        new.cfg = copy.deepcopy(setup.cfg)
        for dotted, value in overrides.items():
            section, *rest = dotted.split(".")
            obj = getattr(new.cfg, section)
            for part in rest[:-1]:
                obj = getattr(obj, part)
            setattr(obj, rest[-1], value)
    return new


def _checkpointing(setup: Setup) -> list[Change]:
    if setup.cfg.model.gradient_checkpointing:
        return []
    return [("model.gradient_checkpointing=true", lambda s: _with(s, {"model.gradient_checkpointing": True}))]


def _micro_batches(setup: Setup) -> list[Change]:
    micro = setup.cfg.trainer.micro_batch_size
    return [(f"trainer.micro_batch_size={size}", lambda s, v=size: _with(s, {"trainer.micro_batch_size": v}))
            for size in (8, 4, 2, 1) if micro == 0 or size < micro]


def _same_hardware(setup: Setup, spec: ModelSpec) -> list[Change]:
    """Changes that keep the GPUs and the method, least invasive first."""
    out = _checkpointing(setup)
    if setup.gpus > 1 and setup.strategy != "fsdp2":
        out.append((f"trainer.strategy=fsdp2 (on the {setup.gpus} GPUs)", lambda s: _with(s, strategy="fsdp2")))
    out += _micro_batches(setup)
    util = _vllm_utilization(setup.cfg)
    if util is not None and hasattr(setup.cfg.rollout, "vllm"):
        need = estimate(setup, spec).facts["vllm_min_bytes"] / (setup.gpu_mem_gib * GIB)
        for lower in (0.4, 0.3, 0.2, 0.15):
            if need < lower < util:
                out.append((f"rollout.vllm.gpu_memory_utilization={lower:g} (less KV cache: fewer sequences at once)",
                            lambda s, v=lower: _with(s, {"rollout.vllm.gpu_memory_utilization": v})))
    if not setup.offloaded:
        out.append(("trainer.strategy=fsdp2 trainer.fsdp_cpu_offload=true (slower: states in CPU memory)",
                    lambda s: _with(s, strategy="fsdp2", offload=True)))
    prompts = setup.cfg.rollout.prompts_per_step
    while prompts // 2 >= setup.gpus and prompts % 2 == 0:  # fewer sequences generated at once
        prompts //= 2
        out.append((f"rollout.prompts_per_step={prompts} (a smaller RL batch)",
                    lambda s, v=prompts: _with(s, {"rollout.prompts_per_step": v, "algo.mini_batch_size": 0})))
    return out


def _key(label: str) -> str:
    """Changes with the same key replace each other (e.g. two micro-batch sizes)."""
    return label.split("=", 1)[0] if label.startswith(("trainer.micro_batch_size", "rollout.")) else label


def _apply(setup: Setup, changes: list[Change]) -> Setup:
    for _, change in changes:
        setup = change(setup)
    return setup


def _first_fit(setup: Setup, spec: ModelSpec, changes: list[Change], base: list[str] | None = None) -> Fix | None:
    """The first single change that fits; else the shortest cumulative prefix of ``changes`` that fits,
    pruned of the changes it does not need."""
    base = base or []
    for label, change in changes:
        if (est := estimate(change(setup), spec)).fits:
            return [*base, label], est
    chosen: list[Change] = []
    for change in changes:
        chosen = [c for c in chosen if _key(c[0]) != _key(change[0])] + [change]
        if estimate(_apply(setup, chosen), spec).fits:
            for extra in list(chosen[:-1]):
                trial = [c for c in chosen if c is not extra]
                if estimate(_apply(setup, trial), spec).fits:
                    chosen = trial
            return [*base, *(label for label, _ in chosen)], estimate(_apply(setup, chosen), spec)
    return None


def suggest(setup: Setup, spec: ModelSpec) -> list[Fix]:
    """Ways to make the run fit, one per kind: on the same GPUs (checkpointing, sharding, smaller
    micro-batches, CPU offload), on more GPUs with FSDP2 (the fewest that fit), and with LoRA."""
    fixes: list[Fix] = []
    if (same := _first_fit(setup, spec, _same_hardware(setup, spec))) is not None:
        fixes.append(same)
    for gpus in (2, 4, 8, 16, 32, 64):
        if gpus <= setup.gpus:
            continue
        more = _with(setup, strategy="fsdp2", gpus=gpus)
        label = f"trainer.strategy=fsdp2 on {gpus} GPUs"
        if (fix := _first_fit(more, spec, [("", lambda s: s), *_checkpointing(more)], [label])) is not None:
            fixes.append(([c for c in fix[0] if c], fix[1]))
            break
    if not setup.cfg.model.lora.enabled:
        lora = _with(setup, {"model.lora.enabled": True, "model.dtype": "bfloat16"})
        label = "model.lora.enabled=true model.dtype=bfloat16 (LoRA on a bf16 base; raise trainer.lr to ~1e-5)"
        changes = [("", lambda s: s), *_checkpointing(lora), *_micro_batches(lora)]
        if (fix := _first_fit(lora, spec, changes, [label])) is not None:
            fixes.append(([c for c in fix[0] if c], fix[1]))
    return fixes


# ----------------------------------------------------------------------------- report


def _gib(value: float) -> str:
    return f"{value / GIB:8.2f}"


def render_table(est: Estimate) -> str:
    """A plain-text table of the estimate (GiB per GPU)."""
    spec, setup, f = est.spec, est.setup, est.facts
    lines = [f"model     {spec.name}: {spec.total_params / 1e9:.2f}B params"
             + (f" ({spec.vision_params / 1e9:.2f}B vision tower)" if spec.is_vlm else "")
             + (f", published {spec.published_params}B" if spec.published_params else ""),
             f"source    {spec.source}",
             f"setup     {setup.describe()}, {setup.gpu_mem_gib:g} GiB per GPU, "
             f"{'LoRA r=' + str(setup.cfg.model.lora.r) if setup.cfg.model.lora.enabled else 'full-parameter'}, "
             f"gradient checkpointing {'on' if setup.cfg.model.gradient_checkpointing else 'off'}",
             f"batch     {f['prompts_per_gpu']} prompts x {setup.cfg.rollout.group_size} samples per GPU, micro-batch "
             f"{f['micro_batch_rows']} rows of {f['prompt_tokens']} prompt + {f['new_tokens']} new tokens"
             + (f"; {f['image_tokens_min']}-{f['image_tokens_max']} tokens per image (model.min/max_pixels)"
                if spec.is_vlm else ""),
             "",
             f"{'item':34s} {'phase':10s} {'GiB/GPU':>8s}  note"]
    for item in est.items:
        lines.append(f"{item.label:34s} {item.phase:10s} {_gib(item.bytes)}  {item.note}")
    lines.append(f"{'runtime overhead':34s} {'always':10s} {_gib(est.overhead)}  CUDA context, library workspaces")
    lines.append(f"{'peak while generating':34s} {'':10s} {_gib(est.phase('persistent') + est.phase('rollout') + est.overhead)}")
    lines.append(f"{'peak while training':34s} {'':10s} {_gib(est.phase('persistent') + est.phase('training') + est.overhead)}")
    return "\n".join(lines)


def verdict(est: Estimate, fixes: list[Fix]) -> str:
    """One line: fits or not, and the changes that make it fit."""
    mem = est.setup.gpu_mem_gib
    head = f"peak {est.peak / GIB:.1f} GiB of {mem:g} GiB per GPU ({est.setup.describe()})"
    if est.fits:
        return f"FITS: {head}"
    if not fixes:
        return f"DOES NOT FIT: {head}; none of the settings tried makes it fit: use a smaller model or larger GPUs"
    options = "; or ".join(f"{' + '.join(changes)} (peak {fixed.peak / GIB:.1f} GiB)" for changes, fixed in fixes)
    return f"DOES NOT FIT: {head}. Fits with {options}"


def to_json(est: Estimate, fixes: list[Fix]) -> dict[str, Any]:
    """Machine-readable form of the estimate (bytes and GiB per GPU)."""
    spec, setup = est.spec, est.setup
    return {
        "model": spec.name, "source": spec.source, "params": spec.total_params, "vision_params": spec.vision_params,
        "published_params_billion": spec.published_params, "gpus": setup.gpus, "gpu_mem_gib": setup.gpu_mem_gib,
        "strategy": setup.strategy, "fsdp_cpu_offload": setup.offloaded, "lora": setup.cfg.model.lora.enabled,
        "gradient_checkpointing": setup.cfg.model.gradient_checkpointing, **est.facts,
        "items": {i.key: {"phase": i.phase, "bytes": int(i.bytes), "gib": round(i.bytes / GIB, 3), "note": i.note}
                  for i in est.items},
        "overhead_gib": setup.overhead_gib,
        "peak_rollout_gib": round((est.phase("persistent") + est.phase("rollout") + est.overhead) / GIB, 3),
        "peak_training_gib": round((est.phase("persistent") + est.phase("training") + est.overhead) / GIB, 3),
        "peak_gib": round(est.peak / GIB, 3), "budget_gib": round(est.budget / GIB, 3), "fits": est.fits,
        "suggestions": [{"changes": changes, "gpus": fixed.setup.gpus, "peak_gib": round(fixed.peak / GIB, 3)}
                        for changes, fixed in fixes],
        "verdict": verdict(est, fixes),
    }


def plan(cfg: Config, gpus: int = 1, gpu_mem_gib: float = 80.0, prompt_tokens: int | None = None,
         overhead_gib: float = DEFAULT_OVERHEAD_GIB) -> tuple[Estimate, list[Fix]]:
    """Estimate ``cfg`` under its ``trainer.strategy`` (ddp when the key is absent) and find a fix."""
    from mhpo_vl.models.sizes import model_spec

    spec = model_spec(cfg.model.name_or_path, cfg.model.trust_remote_code)
    setup = Setup(cfg, gpus=gpus, gpu_mem_gib=gpu_mem_gib, strategy=str(getattr(cfg.trainer, "strategy", "ddp")),
                  prompt_tokens=prompt_tokens, overhead_gib=overhead_gib,
                  offload=bool(getattr(cfg.trainer, "fsdp_cpu_offload", False)))
    est = estimate(setup, spec)
    return est, ([] if est.fits else suggest(setup, spec))
