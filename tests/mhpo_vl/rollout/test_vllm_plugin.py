"""The vLLM plugin without torchvision: a fresh process (the patch is process-wide), no vLLM needed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from mhpo_vl.rollout.vllm_plugin import torchvision_works

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent("""
    import sys
    from PIL import Image
    from mhpo_vl.rollout import vllm_plugin
    from mhpo_vl.config import ModelConfig
    from mhpo_vl.models import load_processor
    from mhpo_vl.models.processor import IMAGE_ONLY_PROCESSORS
    vllm_plugin.register()
    vllm_plugin.register()  # idempotent
    # vLLM's Qwen2-VL model file does this import at module level:
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
    from transformers import Qwen2_5_VLProcessor
    path = sys.argv[1]
    proc = Qwen2_5_VLProcessor.from_pretrained(path, size={"shortest_edge": 784, "longest_edge": 112 * 112})
    assert isinstance(proc, Qwen2_5_VLProcessor) and isinstance(proc, IMAGE_ONLY_PROCESSORS["qwen2_5_vl"])
    assert "fps" in proc.video_processor.valid_kwargs.__annotations__
    ours = load_processor(ModelConfig(name_or_path=path, min_pixels=784, max_pixels=112 * 112))
    image = Image.new("RGB", (200, 150), "red")
    text = "<|vision_start|><|image_pad|><|vision_end|>hi"
    a = proc(text=[text], images=[image], return_tensors="pt")
    b = ours(text=[text], images=[image], return_tensors="pt")
    assert a["input_ids"].tolist() == b["input_ids"].tolist() and a["image_grid_thw"].tolist() == b["image_grid_thw"].tolist()
    assert smart_resize(150, 200, factor=28, min_pixels=784, max_pixels=112 * 112) == (84, 112)
    print("plugin ok")
""")


def test_plugin_builds_image_only_processors_and_smart_resize(tiny_model_dir):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_model_dir("qwen2_5_vl"))], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if torchvision_works():  # the plugin is then a no-op and transformers' own processors are used
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "plugin ok" in proc.stdout


def test_entry_point_is_registered():
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert "mhpo_vl.rollout.vllm_plugin:register" in names
