"""Reject reasons and the two error kinds of data_prep.

``Reject`` drops one input record (it is counted and written to ``rejects.jsonl``);
``DataPrepError`` is a user mistake that stops the whole run (one line on stderr, exit code 2).
"""

from __future__ import annotations

from mhpo_vl.errors import UserError

#: Every reason a record can be rejected for, with a one-line description (used in docs and --help).
REASONS: dict[str, str] = {
    "blank_line": "an empty line in a JSONL/CSV input",
    "malformed_json": "a line that is not valid JSON (or not UTF-8); the detail names the line number",
    "bad_record": "a record that is not an object, or a field of the wrong type",
    "missing_prompt": "no prompt/question/problem field",
    "empty_prompt": "the prompt is empty or only whitespace",
    "missing_answer": "no answer field",
    "empty_answer": "the answer is empty or only whitespace",
    "answer_not_in_choices": "a multiple-choice answer that is not one of the choices",
    "duplicate_id": "an id already used by an accepted record of this run",
    "missing_image": "an image path that does not exist",
    "empty_image_file": "a 0-byte image file",
    "unreadable_image": "bytes that are not a decodable image (or not a regular file)",
    "truncated_image": "an image file that ends early",
    "decompression_bomb": "an image with more pixels than --max-image-pixels",
    "image_too_small": "an image side shorter than --min-image-side",
    "bad_aspect_ratio": "an image whose long/short side ratio exceeds --max-aspect-ratio",
    "path_outside_root": "an image path with '..', an absolute path or a symlink leaving the image root",
    "prompt_too_long": "prompt tokens including image tokens exceed --max-prompt-tokens",
    "question_in_other_split": "a generated question whose text is in a split named by --exclude-split",
    "duplicate_question": "a generated question already written to this split (with --unique)",
    "unexpected_error": "an input data_prep could not handle; the detail names the exception (please report it)",
}


class Reject(Exception):
    """One record is dropped: ``reason`` is a key of ``REASONS``, ``detail`` says what exactly."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reject reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.raw_id: str | None = None  # the record's id, when a source could still tell it


class DataPrepError(UserError):
    """A mistake in the command line or input location; the CLI prints it and exits with code 2."""
