"""``mhpo-vl view RUN_DIR``: the viewer of one training run (config, curves, logged rollouts).

Reads only ``RUN_DIR/config.yaml``, ``metrics.jsonl``, ``rollouts/meta.json``, ``rollouts/step_*.jsonl``
and the thumbnails in ``rollouts/images/`` (copied next to the page); writes ``OUT/index.html`` and
``OUT/images/`` (default ``OUT = RUN_DIR/viewer``).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import yaml

from mhpo_vl.errors import UserError
from mhpo_vl.jsonl import iter_jsonl
from mhpo_vl.trainer.metrics import read_metrics
from mhpo_vl.trainer.rollout_log import IMAGES_DIR, ROLLOUTS_DIR
from mhpo_vl.viewer.curves import curves_html
from mhpo_vl.viewer.page import copy_image, summary_table, write_page

STEP_FILE = re.compile(r"^step_(\d+)\.jsonl$")

# Per-token quantities: key in the log, label, help text, colour scale kind.
QUANTITIES: list[dict[str, Any]] = [
    {"key": "log_ratio", "label": "log r", "diverging": True,
     "help": "log pi/pi_old per token; red: more likely than when sampled, blue: less"},
    {"key": "weight", "label": "weight", "reverse": True,
     "help": "the loss's applied weight ({kind}); darker = smaller"},
    {"key": "entropy", "label": "entropy", "help": "policy entropy at the token (nats); darker = more uncertain"},
    {"key": "logp", "label": "log-prob", "reverse": True, "help": "token log-probability; darker = less likely"},
]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def token_scales(steps: list[dict[str, Any]], weight_kind: str) -> list[dict[str, Any]]:
    """Colour ranges of the per-token quantities present in the log (1st/99th percentiles, fixed ends)."""
    scales = []
    for spec in QUANTITIES:
        key = spec["key"]
        values = [v for s in steps for p in s["prompts"] for r in p["responses"]
                  for v in (r.get(key) or []) if isinstance(v, (int, float))]
        if not values:
            continue
        q = {**spec, "help": spec["help"].format(kind=weight_kind)}
        if key == "log_ratio":
            m = max(abs(_percentile(values, 0.01)), abs(_percentile(values, 0.99)), 1e-3)
            q.update(min=-m, max=m)
        elif key == "weight":
            lo, hi = _percentile(values, 0.01), _percentile(values, 0.99)
            q.update(min=lo if hi - lo > 1e-6 else hi - 1.0, max=hi)
        elif key == "entropy":
            q.update(min=0.0, max=max(_percentile(values, 0.99), 1e-3))
        else:
            q.update(min=min(_percentile(values, 0.01), -1e-3), max=0.0)
        scales.append(q)
    return scales


def read_steps(run_dir: Path) -> list[dict[str, Any]]:
    """The logged steps in order: ``[{"step": N, "prompts": [line, ...]}]``."""
    folder = run_dir / ROLLOUTS_DIR
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = STEP_FILE.match(path.name)
            if match and path.is_file() and not path.is_symlink():
                found.append((int(match.group(1)), path))
    steps = []
    for step, path in sorted(found):
        prompts = []
        for line_no, row in iter_jsonl(path):
            if not isinstance(row.get("responses"), list):
                raise UserError(f"{path}:{line_no}: no 'responses' list (not a rollout log line)")
            prompts.append(row)
        steps.append({"step": step, "prompts": prompts})
    return steps


def _config_rows(cfg: dict[str, Any], history: list[dict[str, Any]], meta: dict[str, Any]) -> list[tuple[str, Any]]:
    def get(path: str) -> Any:
        node: Any = cfg
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    rows = [("algorithm", get("algo.name")), ("model", get("model.name_or_path")), ("train data", get("data.train_dir")),
            ("steps logged in metrics", history[-1]["step"] if history else 0),
            ("prompts x group size", f"{get('rollout.prompts_per_step')} x {get('rollout.group_size')}"),
            ("max new tokens / temperature", f"{get('rollout.max_new_tokens')} / {get('rollout.temperature')}"),
            ("learning rate", get("trainer.lr")), ("reward", json.dumps(get("reward.components"))),
            ("rollouts logged", f"every {meta.get('every', get('logging.rollouts_every'))} steps, "
                                f"{meta.get('per_step', get('logging.rollouts_per_step'))} prompts each")]
    return [(k, v) for k, v in rows if v not in (None, "None x None")]


def _own_file(path: Path) -> bool:
    """A regular file of the run itself (a symlink could point anywhere: not read)."""
    return path.is_file() and not path.is_symlink()


def build_run_viewer(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the run's viewer; returns the path of ``index.html``."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"run directory not found: {run}")
    config_path, metrics_path = run / "config.yaml", run / "metrics.jsonl"
    steps = read_steps(run)
    if not (_own_file(config_path) or _own_file(metrics_path) or steps):
        raise UserError(f"{run} is not a training run directory (no config.yaml, metrics.jsonl or rollouts/)")
    out_dir = Path(out) if out else run / "viewer"
    config_text = config_path.read_text(encoding="utf-8") if _own_file(config_path) else ""
    try:
        cfg = yaml.safe_load(config_text) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{config_path}: not valid YAML ({exc})") from None
    history = read_metrics(metrics_path) if _own_file(metrics_path) else []
    meta_path = run / ROLLOUTS_DIR / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if _own_file(meta_path) else {}
    except json.JSONDecodeError as exc:
        raise UserError(f"{meta_path}: invalid JSON ({exc.msg})") from None
    images_src = run / ROLLOUTS_DIR / IMAGES_DIR
    for step in steps:
        for prompt in step["prompts"]:
            for image in prompt.get("images") or []:
                if image.get("file") and not copy_image(images_src, image["file"], out_dir):
                    image["error"], image["file"] = "thumbnail missing from the run directory", None
    weight_kind = str(meta.get("weight_kind", "weight"))
    header = (summary_table(_config_rows(cfg if isinstance(cfg, dict) else {}, history, meta))
              + (f"<details><summary>config.yaml</summary><pre>{html.escape(config_text)}</pre></details>"
                 if config_text else "")
              + "<h2>Curves</h2>" + curves_html(history))
    data = {
        "kind": "run", "quantities": token_scales(steps, weight_kind), "steps": steps,
        "empty_note": (f"No logged rollouts in {run / ROLLOUTS_DIR}: train with logging.rollouts_every > 0 "
                       "(default 10)."),
    }
    return write_page(out_dir, title=f"mhpo-vl run: {run.resolve().name}", data=data, header_html=header)
