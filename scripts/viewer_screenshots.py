"""Make the README's viewer screenshots with the project's own commands (CPU, offline, ~5 minutes).

    python scripts/viewer_screenshots.py --work runs/viewer_shots --out docs/viewer

tiny Qwen2.5-VL model -> easy-vqa data -> short SFT warm start (answer format) -> 8 MHPO steps with
PPO epochs 2 (so log r and the hazard weight move) logging every step -> `mhpo-vl view`; eval of the
random and the warm-started model on held-out prompts -> `mhpo-eval view` (one, and both side by side);
each page screenshotted in headless Chromium (`mhpo_vl.viewer.browser`) and saved as a small PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

RECIPE = """\
model: {{name_or_path: {model}, min_pixels: 7056, max_pixels: 7056}}
data: {{train_dir: {data}, train_split: rl, prompt_template: plain, max_prompt_tokens: 128}}
rollout: {{prompts_per_step: 3, group_size: 6, max_new_tokens: 6, temperature: 1.0}}
algo: {{name: mhpo, ppo_epochs: 2, mini_batch_size: 9}}
reward: {{components: {{accuracy: 0.9, format_reward: 0.1}}}}
trainer: {{output_dir: {run}, max_steps: 8, lr: 3.0e-4, lr_schedule: constant, mixed_precision: "no", seed: 0}}
sft: {{output_dir: {sft}, max_steps: 80, batch_size: 32, lr: 1.0e-3, target_template: "<answer>{{answer}}</answer>"}}
logging: {{progress_bar: false, plots: false, rollouts_every: 1, rollouts_per_step: 2}}
"""


def sh(*args: str) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True)


def shrink(png: Path) -> None:
    """Re-save with a 256-colour palette: a fraction of the size, no visible loss for a UI screenshot."""
    Image.open(png).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)


def moving_prompt(run: Path) -> tuple[int, str, int]:
    """(step, prompt id, another step of that prompt) where log r moved most: the interesting picture."""
    lines = [json.loads(x) for p in (run / "rollouts").glob("step_*.jsonl") for x in p.read_text().splitlines()]

    def moved(line: dict) -> float:
        return max((abs(v) for r in line["responses"] for v in r.get("log_ratio") or [] if v is not None), default=0.0)

    repeated = [x for x in lines if sum(y["id"] == x["id"] for y in lines) > 1] or lines
    best = max(repeated, key=moved)
    others = sorted(y["step"] for y in lines if y["id"] == best["id"] and y["step"] != best["step"])
    return best["step"], best["id"], (others[0] if others else best["step"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/viewer_shots"), help="scratch directory")
    parser.add_argument("--out", type=Path, default=Path("docs/viewer"), help="where the PNGs go")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mhpo_vl.viewer.browser import screenshot

    work = args.work  # as given (relative to the repository root by default): the pages show these paths
    py, bin_dir = sys.executable, Path(sys.executable).parent
    model, data, bench = work / "model", work / "bench" / "easy_vqa", work / "bench"
    if not (model / "config.json").is_file():
        sh(str(bin_dir / "mhpo-vl"), "tiny-model", "--arch", "qwen2_5_vl", "--out", str(model))
    # SFT on `train` (a short warm start: some answers right, some wrong); RL on 6 other prompts, so
    # prompts come back every other step and the side-by-side view has pairs; eval on `test`.
    for split, n in (("train", 48), ("rl", 6), ("test", 10)):
        if not (data / f"{split}.jsonl").is_file():
            sh(py, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", str(n), "--image-size", "84",
               "--split", split, "--output", str(data))
    sft, run = work / "sft", work / "rl"
    recipe = work / "recipe.yaml"
    recipe.write_text(RECIPE.format(model=sft, data=data, run=run, sft=sft))
    if not (sft / "config.json").is_file():
        sh(str(bin_dir / "mhpo-vl"), "sft", str(recipe), f"model.name_or_path={model}", "model.freeze_vision_tower=false",
           "data.train_split=train")
    if not (run / "summary.json").is_file():
        sh(str(bin_dir / "mhpo-vl"), "train", str(recipe), f"trainer.output_dir={run}")
    sh(str(bin_dir / "mhpo-vl"), "view", str(run))
    evals = {}
    for name, path in (("random_init", model), ("sft_warm_start", sft)):
        evals[name] = work / "eval" / name
        sh(str(bin_dir / "mhpo-eval"), "run", "--model", str(path), "--benchmarks", "easy_vqa", "--data-dir",
           str(bench), "--output", str(evals[name]), "--n-samples", "2", "--temperature", "1.0",
           "--max-new-tokens", "6", "--template", "plain", "--min-pixels", "7056", "--max-pixels", "7056",
           "--no-progress")
    sh(str(bin_dir / "mhpo-eval"), "view", str(evals["sft_warm_start"]))
    sh(str(bin_dir / "mhpo-eval"), "view", str(evals["random_init"]), "--compare", str(evals["sft_warm_start"]),
       "--out", str(work / "eval" / "compare_view"))
    step, pid, other = moving_prompt(run)
    shots = {
        "run.png": (run / "viewer" / "index.html", f"#color=log_ratio&step={step}", 1400),
        "run_weight.png": (run / "viewer" / "index.html", f"#color=weight&step={step}", 1100),
        "run_compare.png": (run / "viewer" / "index.html", f"#view=compare&color=log_ratio&id={pid}&a={other}&b={step}", 900),
        "eval.png": (evals["sft_warm_start"] / "viewer" / "index.html", "", 1000),
        "eval_compare.png": (work / "eval" / "compare_view" / "index.html", "", 1000),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (page, fragment, height) in shots.items():
        target = args.out / name
        screenshot(page, target, width=1200, height=height, fragment=fragment)
        shrink(target)
        print(f"{target}: {target.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
