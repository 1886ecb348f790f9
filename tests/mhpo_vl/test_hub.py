"""mhpo_vl.hub: one probe decides that the hub is unreachable; offline mode reads only the cache."""

from __future__ import annotations

import pytest

from mhpo_vl.errors import UserError
from mhpo_vl.hub import hub_offline, load_hub_dataset, looks_like_hub_id, probe_hub

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


@pytest.mark.parametrize("name, hub", [("openai/gsm8k", True), ("gpt2", True), ("/nonexistent", False),
                                       ("./model", False), ("~/m", False), ("a/b/c", False), ("", False)])
def test_looks_like_hub_id(name, hub):
    assert looks_like_hub_id(name) is hub


def test_existing_local_folder_is_not_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "org" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert not looks_like_hub_id("org/model")


@pytest.mark.parametrize("value, offline", [("1", True), ("true", True), ("0", False), ("", False)])
def test_offline_env(monkeypatch, value, offline):
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() is offline


def test_unreachable_hub_fails_after_one_probe_with_the_hint(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    assert "unreachable" in probe_hub("openai/gsm8k")
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a))
    with pytest.raises(UserError, match=r"unreachable.*pass --data-dir.*HF_HUB_OFFLINE=1") as exc:
        load_hub_dataset("openai/gsm8k", "main", "test", hint="pass --data-dir")
    assert calls == [] and "\n" not in str(exc.value)  # datasets never asked: no retries


def test_offline_mode_skips_the_probe_and_names_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    import datasets

    def fail(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'x/y' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(UserError, match=r"HF_HUB_OFFLINE is set: only the HF cache.*OfflineModeIsEnabled.*hint"):
        load_hub_dataset("x/y", None, "test", hint="hint")
