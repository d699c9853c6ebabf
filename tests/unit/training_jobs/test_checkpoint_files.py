"""SafetensorsImage: a checkpoint file laid out in host memory, written past the page cache, read
back by safetensors and transformers as any other file."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from training_jobs import checkpoint_files
from training_jobs.checkpoint_files import DIRECT_IO_ALIGNMENT, SafetensorsImage
from training_jobs.runner import TrainingParams, train


def tensors(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(37, 11, generator=generator)
    return {
        "rng.state": torch.randint(0, 255, (5003,), dtype=torch.uint8, generator=generator),
        "weights": weights,
        "weights.transposed": weights.t(),  # not contiguous
        "half": torch.randn(3, 7, generator=generator).to(torch.bfloat16),
        "step": torch.tensor(float(seed)),  # a scalar, as AdamW keeps its step
        "counts": torch.arange(13, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
    }


def assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype, name
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=0, msg=name)


def test_the_file_is_a_safetensors_file_with_its_tensors_metadata_and_digest(
    tmp_path: Path,
) -> None:
    image = SafetensorsImage()
    image.fill(tensors(1), metadata={"format": "pt"})

    digest = image.write(tmp_path / "state.safetensors")

    data = (tmp_path / "state.safetensors").read_bytes()
    assert len(data) == image.size
    assert digest == hashlib.sha256(data).hexdigest()
    assert_same(load_file(str(tmp_path / "state.safetensors")), tensors(1))
    with safe_open(str(tmp_path / "state.safetensors"), framework="pt") as opened:
        assert opened.metadata() == {"format": "pt"}
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    spans = sorted(
        entry["data_offsets"] for name, entry in header.items() if name != "__metadata__"
    )
    assert spans[0][0] == 0 and spans[-1][1] == len(data) - 8 - header_size  # no gaps at the ends
    assert all(before[1] == after[0] for before, after in itertools.pairwise(spans))
    assert (8 + header_size) % 64 == 0  # the data starts aligned


def test_a_refill_of_the_same_layout_reuses_the_memory_and_writes_the_new_values(
    tmp_path: Path,
) -> None:
    image = SafetensorsImage()
    image.fill(tensors(1))
    image.write(tmp_path / "first.safetensors")
    memory = image._block.data_ptr()  # type: ignore[union-attr]

    image.fill(tensors(2))
    image.write(tmp_path / "first.safetensors")  # written over

    assert image._block.data_ptr() == memory  # type: ignore[union-attr]
    assert_same(load_file(str(tmp_path / "first.safetensors")), tensors(2))

    other = {"only": torch.ones(3, 3)}
    image.fill(other)  # another layout
    image.write(tmp_path / "other.safetensors")
    assert_same(load_file(str(tmp_path / "other.safetensors")), other)


def test_a_tensor_type_safetensors_lacks_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'phases' is of a type safetensors lacks"):
        SafetensorsImage().fill({"phases": torch.zeros(2, dtype=torch.complex64)})


def opened_flags(monkeypatch: pytest.MonkeyPatch, *, refuse: str | None = None) -> list[int]:
    """Record the flags of each `os.open` of the writer; `refuse` O_DIRECT at "open" or at
    "write", as filesystems without it do."""
    flags_seen: list[int] = []
    direct_fds: set[int] = set()
    real_open, real_write = os.open, os.write

    def fake_open(path: Any, flags: int, mode: int = 0o777) -> int:
        flags_seen.append(flags)
        if flags & os.O_DIRECT and refuse == "open":
            raise OSError(errno.EINVAL, "Invalid argument")
        fd = real_open(path, flags, mode)
        if flags & os.O_DIRECT:
            direct_fds.add(fd)
        else:
            direct_fds.discard(fd)  # a number closed and given again
        return fd

    def fake_write(fd: int, data: Any) -> int:
        if fd in direct_fds and refuse == "write":
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(checkpoint_files.os, "open", fake_open)
    monkeypatch.setattr(checkpoint_files.os, "write", fake_write)
    return flags_seen


def direct_io_works(directory: Path) -> bool:
    try:
        fd = os.open(directory / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    os.close(fd)
    return True


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="O_DIRECT is Linux's")
def test_the_file_is_written_with_direct_io_where_the_filesystem_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not direct_io_works(tmp_path):
        pytest.skip(f"the filesystem of {tmp_path} refuses O_DIRECT")
    flags = opened_flags(monkeypatch)
    image = SafetensorsImage()
    image.fill(tensors(1))
    assert image.size % DIRECT_IO_ALIGNMENT  # the last block is partly written, then truncated

    image.write(tmp_path / "direct.safetensors")

    assert [bool(flag & os.O_DIRECT) for flag in flags] == [True]
    assert_same(load_file(str(tmp_path / "direct.safetensors")), tensors(1))


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="O_DIRECT is Linux's")
@pytest.mark.parametrize("refuse", ["open", "write"])
def test_where_direct_io_is_refused_the_same_bytes_are_written_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refuse: str
) -> None:
    image = SafetensorsImage()
    image.fill(tensors(1))
    image.write(tmp_path / "reference.safetensors")
    flags = opened_flags(monkeypatch, refuse=refuse)

    digest = image.write(tmp_path / "buffered.safetensors")

    assert [bool(flag & os.O_DIRECT) for flag in flags] == [True, False]
    written = (tmp_path / "buffered.safetensors").read_bytes()
    assert written == (tmp_path / "reference.safetensors").read_bytes()
    assert hashlib.sha256(written).hexdigest() == digest


@pytest.fixture(scope="module")
def rows(gsm8k_train: Path) -> pa.Table:
    return pa_json.read_json(gsm8k_train).slice(0, 16)


def test_a_full_model_checkpoint_loads_as_a_model_directory_with_its_weights(
    rows: pa.Table, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    params = TrainingParams(max_steps=2, batch_size=4, max_seq_len=256, checkpoint_every=1)
    taken: list[Path] = []

    def keep(directory: Path, step: int, metrics: dict[str, Any], digests: dict[str, str]) -> None:
        kept = tmp_path / f"step-{step}"
        directory.rename(kept)
        taken.append(kept)

    train(table=rows, params=params, output_dir=tmp_path / "run", on_checkpoint=keep)
    train(table=rows, params=params.model_copy(update={"max_steps": 1, "checkpoint_every": 0}),
          output_dir=tmp_path / "one-step")  # fmt: skip

    assert [path.name for path in taken] == ["step-1"]
    checkpoint = AutoModelForCausalLM.from_pretrained(str(taken[0]), local_files_only=True)
    saved = AutoModelForCausalLM.from_pretrained(str(tmp_path / "one-step"), local_files_only=True)
    assert checkpoint.config.tie_word_embeddings == saved.config.tie_word_embeddings
    assert_same(checkpoint.state_dict(), saved.state_dict())


def test_tied_weights_are_stored_once_and_loaded_back_tied(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, LlamaConfig

    from training_jobs.runner import _distinct, _load_weights

    config = LlamaConfig(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    trained = AutoModelForCausalLM.from_config(config)
    state = trained.state_dict()
    distinct = _distinct(state)
    assert set(state) - set(distinct) == {"lm_head.weight"}
    image = SafetensorsImage()
    image.fill(distinct, metadata={"format": "pt"})
    image.write(tmp_path / "model.safetensors")
    trained.config.save_pretrained(tmp_path)

    torch.manual_seed(1)
    fresh = AutoModelForCausalLM.from_config(config)
    _load_weights(tmp_path, fresh)
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path), local_files_only=True)

    for model in (fresh, loaded):
        assert_same(model.state_dict(), state)
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
