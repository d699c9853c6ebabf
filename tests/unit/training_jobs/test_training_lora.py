"""The LoRA recipe: only the adapter trains, only the adapter is saved, and the recipe is pinned."""

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from training_jobs.errors import InvalidParametersError
from training_jobs.runner import (
    ADAPTER_FILE,
    TrainingParams,
    load_trained_model,
    parse_training_params,
    recipe_hash,
    train,
)

GSM8K_TRAIN = Path(__file__).parents[2] / "fixtures" / "data" / "gsm8k_train.jsonl"
QUICK = {"max_steps": 6, "batch_size": 4, "max_seq_len": 128, "learning_rate": 1e-2}


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return pa_json.read_json(GSM8K_TRAIN).slice(0, 32)


@pytest.fixture(scope="module")
def full_model_dir(table: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small saved model: the base that the LoRA runs below start from."""
    output_dir = tmp_path_factory.mktemp("full")
    train(table=table, params=TrainingParams(**QUICK), output_dir=output_dir)
    return output_dir


def test_lora_saves_the_adapter_only_and_leaves_the_base_unchanged(
    table: pa.Table, full_model_dir: Path, tmp_path: Path
) -> None:
    base_weights = (full_model_dir / "model.safetensors").read_bytes()
    params = TrainingParams(base_model=str(full_model_dir), method="lora", lora_rank=4, **QUICK)
    events: list[dict[str, Any]] = []

    result = train(table=table, params=params, output_dir=tmp_path, on_event=events.append)

    names = {path.name for path in result.files}
    assert {ADAPTER_FILE, "adapter_config.json", "tokenizer.json"} <= names
    assert not any(name.startswith("model") for name in names)  # no full weights
    assert "README.md" not in names  # peft's template card is not the job's model card
    assert result.method == "lora"
    assert result.recipe_hash == recipe_hash()
    started = events[0]
    assert started["method"] == "lora"
    assert 0 < started["trainable_parameters"] < started["parameters"] / 5
    assert (full_model_dir / "model.safetensors").read_bytes() == base_weights
    with safe_open(str(tmp_path / ADAPTER_FILE), "pt") as adapter:
        keys = list(adapter.keys())
        lora_b = [adapter.get_tensor(key) for key in keys if "lora_B" in key]
    assert keys
    assert all(re.search(r"lora_[AB]|trainable_tokens", key) for key in keys)
    assert lora_b
    assert any(tensor.abs().sum() > 0 for tensor in lora_b)  # B starts at zero: it trained

    model, tokenizer = load_trained_model(tmp_path, params)
    base = AutoModelForCausalLM.from_pretrained(full_model_dir, local_files_only=True).eval()
    prompt = "<|bos|><|user|>\nHi<|end|>\n"
    inputs = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        adapted = model(**inputs).logits
        with model.disable_adapter():  # type: ignore[operator]
            switched_off = model(**inputs).logits
        original = base(**inputs).logits
    assert torch.allclose(switched_off, original, atol=1e-5)  # the base weights as they were
    assert not torch.allclose(adapted, original, atol=1e-3)  # the adapter changes the output


def test_lora_on_a_tiny_model_learns(table: pa.Table, tmp_path: Path) -> None:
    params = TrainingParams(method="lora", lora_rank=8, lora_alpha=32, **QUICK)

    result = train(table=table, params=params, output_dir=tmp_path)

    assert result.final_loss < result.first_loss
    model, _ = load_trained_model(tmp_path, params)
    assert type(model).__name__ == "PeftModelForCausalLM"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "qlora"),
        ("lora_rank", 0),
        ("lora_rank", 257),
        ("lora_alpha", 0),
        ("lora_alpha", 1025),
        ("lora_dropout", -0.1),
        ("lora_dropout", 0.6),
    ],
)
def test_lora_parameters_are_bounded(field: str, value: Any) -> None:
    with pytest.raises(InvalidParametersError, match=f"invalid training parameters: {field}"):
        parse_training_params({field: value})


def test_lora_defaults_and_the_stored_params_round_trip() -> None:
    params = parse_training_params({"method": "lora"})

    assert (params.lora_rank, params.lora_alpha, params.lora_dropout) == (8, 16, 0.0)
    # The service stores model_dump(mode="json") and the worker validates it again.
    stored = json.loads(json.dumps(params.model_dump(mode="json")))
    assert TrainingParams.model_validate(stored) == params
    assert TrainingParams().method == "full"


def test_recipe_hash_pins_the_recipe_source() -> None:
    digest = recipe_hash()

    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert recipe_hash() == digest
