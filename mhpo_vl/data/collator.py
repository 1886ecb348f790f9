"""Multimodal collator: records -> left-padded prompt tensors (+ vision tensors) for generation.

    collator = PromptCollator(processor, template="think_answer", max_prompt_tokens=1024)
    batch = collator(records)      # batch.inputs: input_ids (B, L), attention_mask (B, L),
                                   # pixel_values (sum of patches, C*T*P*P), image_grid_thw (n_images, 3)

Prompts are never truncated (cutting inside image tokens breaks the model): a prompt longer than
``max_prompt_tokens`` is an error naming the record id. Several images per prompt and text-only rows
may share a batch. ``sft_batch`` appends answer targets and labels only the answer tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from mhpo_vl.data.images import load_image
from mhpo_vl.errors import UserError
from mhpo_vl.models.processor import get_tokenizer, is_multimodal, set_pixel_range

IGNORE_INDEX = -100


def load_template(name_or_path: str) -> str:
    """A prompt template: a shipped name (``think_answer``, ``answer_only``, ``boxed``, ``plain``) or a file.

    The template holds ``{prompt}`` where the record's prompt goes.
    """
    path = Path(name_or_path)
    if path.suffix == ".txt" and path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        shipped = resources.files("mhpo_vl") / "templates" / f"{name_or_path}.txt"
        if not shipped.is_file():
            names = sorted(p.name[:-4] for p in (resources.files("mhpo_vl") / "templates").iterdir()
                           if p.name.endswith(".txt"))
            raise UserError(f"data.prompt_template: no template {name_or_path!r} (shipped: {', '.join(names)}; "
                            "or give a path to a .txt file)")
        text = shipped.read_text(encoding="utf-8")
    if "{prompt}" not in text:
        raise UserError(f"prompt template {name_or_path!r} must contain {{prompt}}")
    return text.rstrip("\n")


@dataclass
class PromptBatch:
    """Model inputs for a batch of prompts plus the records they came from."""

    inputs: dict[str, torch.Tensor]
    records: list[dict[str, Any]]
    prompt_texts: list[str] = field(default_factory=list)

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]

    def __len__(self) -> int:
        return len(self.records)


class PromptCollator:
    """Turn records into chat-formatted, left-padded prompt tensors (see module docstring)."""

    def __init__(self, processor: Any, template: str = "think_answer", system_prompt: str | None = None,
                 min_pixels: int | None = None, max_pixels: int | None = None,
                 max_prompt_tokens: int = 1024) -> None:
        self.processor = processor
        self.tokenizer = get_tokenizer(processor)
        self.tokenizer.padding_side = "left"
        self.multimodal = is_multimodal(processor)
        self.template = load_template(template)
        self.system_prompt = system_prompt
        self.max_prompt_tokens = max_prompt_tokens
        if self.multimodal:
            set_pixel_range(processor.image_processor, min_pixels, max_pixels)

    # ------------------------------------------------------------------ prompts
    def messages(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Chat messages for one record: optional system prompt, then images and the templated text."""
        text = self.template.replace("{prompt}", str(record["prompt"]))
        n_images = len(record.get("images") or [])
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        if self.multimodal:
            content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]
            messages.append({"role": "user", "content": content})
        else:
            if n_images:
                raise UserError(f"record {record.get('id')}: has images but the model is text-only")
            messages.append({"role": "user", "content": text})
        return messages

    def prompt_text(self, record: dict[str, Any]) -> str:
        return self.tokenizer.apply_chat_template(self.messages(record), tokenize=False, add_generation_prompt=True)

    def _images(self, records: list[dict[str, Any]]) -> list[Any]:
        images = []
        for record in records:
            for entry in record.get("images") or []:
                images.append(load_image(entry, record.get("image_root"), str(record.get("id"))))
        return images

    def _encode(self, texts: list[str], records: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        images = self._images(records) if self.multimodal else []
        if self.multimodal:
            kwargs: dict[str, Any] = {"images": images} if images else {}
            encoded = self.processor(text=texts, return_tensors="pt", padding=True, **kwargs)
        else:
            encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return dict(encoded)

    def _check_lengths(self, inputs: dict[str, torch.Tensor], records: list[dict[str, Any]], limit: int) -> None:
        lengths = inputs["attention_mask"].sum(dim=1)
        for record, length in zip(records, lengths.tolist()):
            if length > limit:
                raise UserError(f"record {record.get('id')}: prompt is {length} tokens with image tokens, over "
                                f"data.max_prompt_tokens={limit}; prompts are never truncated (re-run data_prep "
                                "with --max-prompt-tokens or lower model.max_pixels)")

    def __call__(self, records: list[dict[str, Any]]) -> PromptBatch:
        texts = [self.prompt_text(r) for r in records]
        inputs = self._encode(texts, records)
        self._check_lengths(inputs, records, self.max_prompt_tokens)
        return PromptBatch(inputs=inputs, records=list(records), prompt_texts=texts)

    # ------------------------------------------------------------------ SFT
    def sft_batch(self, records: list[dict[str, Any]], target_template: str = "<answer>{answer}</answer>") -> dict:
        """Prompt + target answer per record; ``labels`` are -100 everywhere except the target tokens.

        Returns input_ids (B, L), attention_mask (B, L), labels (B, L) and the vision tensors.
        """
        eos = self.tokenizer.eos_token or ""
        prompts = [self.prompt_text(r) for r in records]
        targets = [target_template.replace("{answer}", str(r["answer"])) + eos for r in records]
        inputs = self._encode([p + t for p, t in zip(prompts, targets)], records)
        self._check_lengths(inputs, records, self.max_prompt_tokens + 512)
        target_lengths = [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in targets]
        labels = torch.full_like(inputs["input_ids"], IGNORE_INDEX)
        width = labels.shape[1]
        for row, n in enumerate(target_lengths):  # left padding: the target is the last n tokens
            labels[row, width - n:] = inputs["input_ids"][row, width - n:]
        inputs["labels"] = labels
        return inputs
