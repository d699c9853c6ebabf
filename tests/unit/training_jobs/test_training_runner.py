import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training_jobs.errors import InvalidParametersError, InvalidTrainingDataError, JobCancelled
from training_jobs.runner import TrainingParams, TrainingResult, checkpoint_dir, train

GSM8K_TRAIN = Path(__file__).parents[2] / "fixtures" / "data" / "gsm8k_train.jsonl"
QUICK = {"max_steps": 4, "batch_size": 4, "max_seq_len": 128}


@dataclass
class Run:
    table: pa.Table
    result: TrainingResult
    events: list[dict[str, Any]]
    output_dir: Path


@pytest.fixture(scope="module")
def gsm8k() -> pa.Table:
    return pa_json.read_json(GSM8K_TRAIN).slice(0, 200)


@pytest.fixture(scope="module")
def default_run(gsm8k: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> Run:
    output_dir = tmp_path_factory.mktemp("default-run")
    events: list[dict[str, Any]] = []
    result = train(
        table=gsm8k, params=TrainingParams(), output_dir=output_dir, on_event=events.append
    )
    return Run(gsm8k, result, events, output_dir)


def test_loss_decreases_on_gsm8k(default_run: Run) -> None:
    result = default_run.result

    assert result.steps == 30
    assert result.device == "cpu"
    assert result.first_loss > 5.0  # about ln(263): the untrained model guesses uniformly
    assert result.final_loss < result.first_loss - 0.5
    progress_losses = [e["loss"] for e in default_run.events if e["type"] == "progress"]
    assert progress_losses[-1] < progress_losses[0]


def test_events_arrive_in_order_with_their_keys(default_run: Run) -> None:
    events = default_run.events
    result = default_run.result

    assert [e["type"] for e in events] == ["started"] + ["progress"] * 10 + ["completed"]
    started, *progress, completed = events
    assert set(started) == {
        "type",
        "num_rows",
        "skipped_rows",
        "num_tokens",
        "device",
        "parameters",
        "trainable_parameters",
        "method",
    }
    assert started["num_rows"] == 200
    assert 0 <= started["skipped_rows"] < 200
    assert started["device"] == "cpu"
    assert started["num_tokens"] > 0
    assert started["parameters"] == started["trainable_parameters"] > 0
    assert started["method"] == "full"
    for event in progress:
        assert set(event) == {
            "type",
            "step",
            "max_steps",
            "loss",
            "tokens_per_second",
            "progress",
            "trained_tokens",
        }
        assert event["max_steps"] == 30
        assert event["progress"] == round(event["step"] / 30, 4)
        assert event["tokens_per_second"] > 0
    assert [e["step"] for e in progress] == list(range(3, 31, 3))
    assert completed == {
        "type": "completed",
        "final_loss": round(result.final_loss, 4),
        "trained_tokens": result.trained_tokens,
        "steps": 30,
        "seconds": round(result.seconds, 2),
    }
    json.dumps(events)  # JSON-able, so they can be stored and streamed as they are


def test_events_hold_no_row_text(default_run: Run) -> None:
    serialized = json.dumps(default_run.events)
    first = default_run.table.slice(0, 1).to_pylist()[0]

    assert "Natalia sold clips" in first["question"]
    assert "Natalia" not in serialized
    assert first["answer"][:20] not in serialized


def test_saved_model_loads_and_generates(default_run: Run) -> None:
    output_dir = default_run.output_dir

    assert {path.name for path in default_run.result.files} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert all(path.parent == output_dir for path in default_run.result.files)
    assert not list(output_dir.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(output_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(output_dir, local_files_only=True)
    chat = [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many?"}]
    prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")

    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)

    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    assert 1 <= len(new_tokens) <= 8
    assert isinstance(tokenizer.decode(new_tokens, skip_special_tokens=True), str)


def test_trained_tokens_count_every_unpadded_token_seen(gsm8k: pa.Table, tmp_path: Path) -> None:
    table = gsm8k.slice(0, 6)
    events: list[dict[str, Any]] = []
    params = TrainingParams(max_steps=2, batch_size=6, max_seq_len=512)

    result = train(table=table, params=params, output_dir=tmp_path, on_event=events.append)

    # Each step sees all six rows once, so metering charges the dataset's tokens twice.
    assert events[0]["skipped_rows"] == 0
    assert result.trained_tokens == 2 * events[0]["num_tokens"]


def test_same_seed_gives_the_same_loss(gsm8k: pa.Table, tmp_path: Path) -> None:
    table = gsm8k.slice(0, 32)

    def final_loss(seed: int, name: str) -> float:
        params = TrainingParams(seed=seed, **QUICK)
        return train(table=table, params=params, output_dir=tmp_path / name).final_loss

    first = final_loss(7, "a")
    assert final_loss(7, "b") == first
    assert final_loss(8, "c") != first


def test_should_stop_cancels_between_steps_and_keeps_a_checkpoint(
    gsm8k: pa.Table, tmp_path: Path
) -> None:
    events: list[dict[str, Any]] = []
    asked = 0

    def should_stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > 3  # asked before each step: stop once three steps are done

    params = TrainingParams(max_steps=10, batch_size=4, max_seq_len=128)
    with pytest.raises(JobCancelled) as caught:
        train(
            table=gsm8k.slice(0, 32),
            params=params,
            output_dir=tmp_path,
            on_event=events.append,
            should_stop=should_stop,
        )

    assert caught.value.step == 3
    assert caught.value.checkpoint_dir == checkpoint_dir(tmp_path, 3)
    assert (caught.value.checkpoint_dir / "model.safetensors").is_file()
    assert not (tmp_path / "model.safetensors").exists()
    assert "completed" not in [e["type"] for e in events]
    assert max(e["step"] for e in events if e["type"] == "progress") == 3


def test_cancel_before_the_first_step_trains_nothing(gsm8k: pa.Table, tmp_path: Path) -> None:
    with pytest.raises(JobCancelled) as caught:
        train(
            table=gsm8k.slice(0, 8),
            params=TrainingParams(**QUICK),
            output_dir=tmp_path,
            should_stop=lambda: True,
        )

    assert (caught.value.step, caught.value.checkpoint_dir) == (0, None)


def test_checkpoints_are_saved_every_n_steps(gsm8k: pa.Table, tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    params = TrainingParams(checkpoint_every=2, **QUICK)

    train(table=gsm8k.slice(0, 16), params=params, output_dir=tmp_path, on_event=events.append)

    checkpoints = [e for e in events if e["type"] == "checkpoint"]
    assert [(e["step"], e["metrics"]["step"]) for e in checkpoints] == [(2, 2)]
    assert (checkpoint_dir(tmp_path, 2) / "model.safetensors").is_file()
    assert (checkpoint_dir(tmp_path, 2) / "trainer_state.safetensors").is_file()
    assert not checkpoint_dir(tmp_path, 4).exists()


def test_fine_tunes_a_saved_model_from_its_directory(default_run: Run, tmp_path: Path) -> None:
    params = TrainingParams(base_model=str(default_run.output_dir), **QUICK)

    result = train(table=default_run.table.slice(0, 16), params=params, output_dir=tmp_path)

    assert result.first_loss < 5.0  # starts from the trained weights, not from scratch
    assert (tmp_path / "model.safetensors").is_file()


def test_missing_base_model_directory_is_named(gsm8k: pa.Table, tmp_path: Path) -> None:
    missing = str(tmp_path / "llama-that-is-not-here")

    with pytest.raises(InvalidParametersError, match="llama-that-is-not-here"):
        train(table=gsm8k, params=TrainingParams(base_model=missing), output_dir=tmp_path)


def test_a_table_with_nothing_to_train_on_is_refused(tmp_path: Path) -> None:
    user_only = pa.table({"messages": [[{"role": "user", "content": "hello"}]]})
    long_prompts = pa.table({"prompt": ["x" * 400], "completion": ["y"]})

    with pytest.raises(InvalidTrainingDataError, match="row 0: field 'messages' has no assistant"):
        train(table=user_only, params=TrainingParams(**QUICK), output_dir=tmp_path)
    with pytest.raises(InvalidTrainingDataError, match="no row has assistant text"):
        train(table=long_prompts, params=TrainingParams(**QUICK), output_dir=tmp_path)
    with pytest.raises(InvalidTrainingDataError, match="no rows"):
        train(table=user_only.slice(0, 0), params=TrainingParams(**QUICK), output_dir=tmp_path)


def test_bad_rows_fail_before_any_training(tmp_path: Path) -> None:
    table = pa.table({"question": ["a", None], "answer": ["b", "c"]})
    events: list[dict[str, Any]] = []

    with pytest.raises(InvalidTrainingDataError, match="row 1: field 'question' is null"):
        train(table=table, params=TrainingParams(), output_dir=tmp_path, on_event=events.append)
    assert events == []
