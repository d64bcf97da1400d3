"""`make prefetch`: the pretrained weights land where training and evaluation look for them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipeline import prefetch
from pipeline.evaluation.metrics import alexnet_weights
from pipeline.gan.models.losses import find_vgg_weights


def fake_download(calls: list[str], payloads: dict[str, bytes]):
    def download(url: str, dest: Path, prefix: str) -> None:
        calls.append(url)
        dest.write_bytes(payloads[url])
    return download


def test_weights_go_where_training_and_evaluation_find_them(tmp_path, monkeypatch):
    # The real file names and one cache folder: what prefetch writes is what the finders read.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "shared" / "torch"))
    folder = prefetch.cache_dir()
    assert folder == tmp_path / "shared" / "torch" / "hub" / "checkpoints"
    for name in prefetch.WEIGHTS:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"weights")
    assert find_vgg_weights() == folder / "vgg19-dcbbb0d1.pth"
    assert alexnet_weights() == folder / "alexnet-owt-7be5be79.pth"
    assert {prefetch.hash_prefix(n) for n in prefetch.WEIGHTS} == {"dcbbb0d1", "7be5be79"}


def test_prefetch_downloads_once_and_checks_what_is_there(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    payload = b"pretend weights"
    name = f"net-{hashlib.sha256(payload).hexdigest()[:8]}.pth"  # a name with its sha256 prefix, as torch's
    monkeypatch.setattr(prefetch, "WEIGHTS", {name: "https://example.org/" + name})
    calls: list[str] = []
    download = fake_download(calls, {"https://example.org/" + name: payload})
    assert prefetch.prefetch_weights(download) == [tmp_path / "torch" / "hub" / "checkpoints" / name]
    assert calls == ["https://example.org/" + name]
    prefetch.prefetch_weights(download)
    assert len(calls) == 1  # already there: checked, not fetched again
    (tmp_path / "torch" / "hub" / "checkpoints" / name).write_bytes(b"half a file")
    with pytest.raises(ValueError, match=rf"{name}: sha256 does not start with"):
        prefetch.prefetch_weights(download)


def test_prefetch_cli_says_what_failed_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url: str, dest: Path, prefix: str) -> None:
        raise OSError(f"<urlopen error [Errno -3] Temporary failure in name resolution> ({url})")

    monkeypatch.setattr(prefetch, "_download", offline)
    assert prefetch.main([]) == 1
    assert "prefetch: <urlopen error" in capsys.readouterr().err
