"""Answer extraction: the last ``<answer>`` block, else the last ``\\boxed{}``, with a bare-answer rule.

Every function here is linear in the input length (``str.rfind`` plus one bounded brace scan), so a
1 MB completion is handled in milliseconds.
"""

from __future__ import annotations

import re

__all__ = ["extract_answer", "answer_text", "last_boxed", "unwrap", "TAG_LIKE", "BARE_MAX_CHARS"]

#: A bare completion (no tags, no ``\boxed``) at most this long is taken whole as the answer.
BARE_MAX_CHARS = 100
#: Braced content scanned for a ``\boxed{...}`` match is capped at this many characters.
BOXED_MAX_CHARS = 10_000
#: Anything that looks like an XML/HTML tag: ``<answer>``, ``</think>``, ``<br/>``.
TAG_LIKE = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>")
_BRACE = re.compile(r"[{}]")
_BRACE_WRAPPERS = (
    re.compile(r"^\\boxed\s*\{(.*)\}$", re.S),
    re.compile(r"^\\(?:text|textbf|mathrm|mathbf)\s*\{(.*)\}$", re.S),
)
_DELIM_WRAPPERS = (
    re.compile(r"^\$\$(.*)\$\$$", re.S),
    re.compile(r"^\$(.*)\$$", re.S),
    re.compile(r"^\\\((.*)\\\)$", re.S),
    re.compile(r"^\\\[(.*)\\\]$", re.S),
    re.compile(r"^\*\*(.*)\*\*$", re.S),
)


def _tag_content(text: str, tag: str) -> str | None:
    """Content of the last complete ``<tag>...</tag>`` block, untrimmed; None if there is none."""
    close = text.rfind(f"</{tag}>")
    if close < 0:
        return None
    opener = f"<{tag}>"
    start = text.rfind(opener, 0, close)
    if start < 0:
        return None
    return text[start + len(opener) : close]


def _braced(text: str, open_pos: int) -> str | None:
    """Content of the brace group opening at ``text[open_pos] == '{'``; None if unbalanced or too long."""
    depth = 0
    window = text[open_pos : open_pos + BOXED_MAX_CHARS]
    for m in _BRACE.finditer(window):
        if m.start() > 0 and window[m.start() - 1] == "\\":  # \{ and \} are literal braces
            continue
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return window[1 : m.start()]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (nested braces handled), trimmed; None if absent or empty.

    >>> last_boxed(r"so \\boxed{1} or rather \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> last_boxed(r"\\boxed{}") is None
    True
    """
    pos = text.rfind("\\boxed")
    if pos < 0:
        return None
    brace = pos + len("\\boxed")
    while brace < len(text) and text[brace] == " ":
        brace += 1
    if brace >= len(text) or text[brace] != "{":
        return None
    content = _braced(text, brace)
    return content.strip() or None if content is not None else None


def extract_answer(text: str, *, answer_tag: str = "answer") -> str | None:
    """The final answer of a completion: the last ``<answer>...</answer>``, else the last ``\\boxed{}``.

    Whitespace is trimmed and an empty answer is None. When ``<answer>`` tags are present they are
    authoritative: an empty last answer block gives None even if a ``\\boxed{}`` exists elsewhere.

    >>> extract_answer("<think>2+2</think><answer> 4 </answer>")
    '4'
    >>> extract_answer(r"... so the result is \\boxed{\\frac{\\sqrt{3}}{2}}.")
    '\\\\frac{\\\\sqrt{3}}{2}'
    >>> extract_answer("<answer>1</answer> then <answer>2</answer>")
    '2'
    >>> extract_answer("<answer>  </answer>") is None
    True
    >>> extract_answer("no final answer here") is None
    True
    """
    if not isinstance(text, str):
        return None
    tagged = _tag_content(text, answer_tag)
    if tagged is not None:
        return tagged.strip() or None
    return last_boxed(text)


def answer_text(
    completion: str, *, answer_tag: str = "answer", bare_max_chars: int = BARE_MAX_CHARS
) -> str | None:
    """The answer the verifiers score: :func:`extract_answer`, else the whole completion when bare.

    Bare rule: with no ``<answer>`` block and no ``\\boxed{}``, a completion whose stripped text is
    non-empty, at most ``bare_max_chars`` long and free of tag-like markup (``<...>``) is itself the
    answer (so ``math_accuracy("1/2", "0.5")`` works). Anything longer, or with stray tags such as an
    unclosed ``<answer>``, has no answer.

    >>> answer_text("1/2")
    '1/2'
    >>> answer_text("<think>hmm</think> 5") is None
    True
    """
    if not isinstance(completion, str):
        return None
    found = extract_answer(completion, answer_tag=answer_tag)
    if found is not None:
        return found
    if "\\boxed" in completion or f"<{answer_tag}>" in completion:
        return None
    bare = completion.strip()
    if not bare or len(bare) > bare_max_chars or TAG_LIKE.search(bare):
        return None
    return bare


def unwrap(answer: str) -> str:
    """Strip whole-answer wrappers: ``\\boxed{}``, ``\\text{}``, ``$...$``, ``\\(...\\)``, ``**...**``.

    >>> unwrap(r"$\\boxed{B}$")
    'B'
    """
    previous = None
    while previous != answer:
        previous = answer
        answer = answer.strip()
        for pattern in _BRACE_WRAPPERS:
            m = pattern.match(answer)
            if m and _braced(answer, answer.index("{")) == m.group(1):
                answer = m.group(1)
                break
        else:
            for pattern in _DELIM_WRAPPERS:
                m = pattern.match(answer)
                if m and "$" not in m.group(1) and "\\(" not in m.group(1) and "\\[" not in m.group(1):
                    answer = m.group(1)
                    break
    return answer.strip()
