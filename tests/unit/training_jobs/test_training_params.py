from typing import Any

import pytest
from pydantic import ValidationError

from training_jobs.errors import InvalidParametersError
from training_jobs.runner import TinyModelSpec, TrainingParams, parse_training_params


def test_defaults_describe_a_small_quick_job() -> None:
    params = TrainingParams()

    assert params.base_model == TinyModelSpec()
    assert (params.max_steps, params.batch_size, params.max_seq_len) == (30, 8, 256)
    assert (params.learning_rate, params.seed) == (1e-3, 0)
    assert (params.checkpoint_every, params.warmup_steps) == (0, 0)
    spec = TinyModelSpec()
    assert (spec.architecture, spec.hidden_size, spec.intermediate_size) == ("llama", 64, 128)
    assert (spec.num_hidden_layers, spec.num_attention_heads) == (2, 4)
    assert spec.max_position_embeddings == 512


def test_base_model_is_a_spec_from_a_mapping_or_a_path_from_a_string() -> None:
    assert parse_training_params({"base_model": {"hidden_size": 32}}).base_model == TinyModelSpec(
        hidden_size=32
    )
    assert parse_training_params({"base_model": "/models/llama"}).base_model == "/models/llama"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_steps", 0),
        ("max_steps", 100_001),
        ("batch_size", 0),
        ("batch_size", 513),
        ("learning_rate", 0),
        ("learning_rate", 1.5),
        ("max_seq_len", 15),
        ("max_seq_len", 8193),
        ("seed", -1),
        ("checkpoint_every", -1),
        ("warmup_steps", -1),
        ("base_model", ""),
    ],
)
def test_out_of_bounds_values_are_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidParametersError) as caught:
        parse_training_params({field: value})

    assert str(caught.value).startswith(f"invalid training parameters: {field}")


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(InvalidParametersError, match="epochs: Extra inputs are not permitted"):
        parse_training_params({"epochs": 3})
    with pytest.raises(ValidationError):
        TinyModelSpec(hidden_size=64, vocab_size=10)  # type: ignore[call-arg]


def test_every_fault_is_listed() -> None:
    with pytest.raises(InvalidParametersError) as caught:
        parse_training_params({"max_steps": 0, "batch_size": 0})

    assert "max_steps:" in str(caught.value)
    assert "batch_size:" in str(caught.value)


def test_warmup_longer_than_the_job_is_refused() -> None:
    with pytest.raises(InvalidParametersError, match="warmup_steps 40 exceeds max_steps 30"):
        parse_training_params({"warmup_steps": 40})


def test_sequence_longer_than_the_model_positions_is_refused() -> None:
    with pytest.raises(InvalidParametersError, match="max_seq_len 1024 exceeds"):
        parse_training_params({"max_seq_len": 1024})
    params = parse_training_params(
        {"max_seq_len": 1024, "base_model": {"max_position_embeddings": 1024}}
    )
    assert params.max_seq_len == 1024


def test_heads_must_split_the_hidden_size_evenly() -> None:
    with pytest.raises(ValidationError, match="must split into 5 attention heads"):
        TinyModelSpec(hidden_size=64, num_attention_heads=5)
    with pytest.raises(ValidationError, match="of an even size"):
        TinyModelSpec(hidden_size=24, num_attention_heads=8)
