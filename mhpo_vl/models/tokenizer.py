"""A small byte-level BPE tokenizer with Qwen's special tokens and chat template, trained locally.

Used by the tiny offline models (tests, demo): no hub download. Byte-level BPE can encode any text;
the reasoning tags (<think>, <answer>, ...) are single added tokens so a tiny model learns the format fast.
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# Qwen2/2.5/3-VL special tokens, in their published order.
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
REASONING_TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen-VL chat format: images become <|vision_start|><|image_pad|><|vision_end|>, which the processor
# expands to one <|image_pad|> per merged patch. No default system message (a recipe can set one).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' or 'image' in item -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif item['type'] == 'video' -%}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}<|im_end|>{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant{{ '\\n' }}{%- endif -%}"
)

_WORDS = """the a an of to in is are what which how many much color colour shape shapes image picture
shown left right above below top bottom largest smallest biggest number count there answer question
circle circles square squares rectangle rectangles triangle triangles star stars cross digit digits sum
difference product plus minus times divided equals red green blue yellow orange purple pink brown gray grey
black white teal cyan magenta does contain not yes no and or if then think reason step first second third
find compute solve value angle degrees length area perimeter radius triangle side x y z solution final
please put your in tags you are helpful assistant user system""".split()


def _training_corpus(extra_texts: list[str] | None = None) -> list[str]:
    """A deterministic corpus covering English question words, digits and math notation."""
    lines = [" ".join(_WORDS), string.ascii_letters, string.digits, string.punctuation]
    lines += [f"{a} + {b} = {a + b}" for a in range(30) for b in range(0, 30, 7)]
    lines += [f"What is the {w}?" for w in _WORDS]
    lines += list(_WORDS)  # each word also without a leading space (e.g. right after <answer>)
    lines += [r"\frac{1}{2} \sqrt{3} \boxed{42} x^2 \pi \circ \cdot \le \ge \ne"]
    lines += list(extra_texts or [])
    return lines


def build_tokenizer(vocab_size: int = 1024, extra_texts: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (deterministic) and wrap it as a transformers tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_corpus(extra_texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=QWEN_SPECIAL_TOKENS[1:],
        model_max_length=32768,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    fast.add_tokens(REASONING_TAGS)
    fast.chat_template = CHAT_TEMPLATE
    return fast
