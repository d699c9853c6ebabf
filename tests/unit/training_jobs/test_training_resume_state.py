"""A paused run resumed from its checkpoint ends exactly where an uninterrupted run ends."""

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json
import pytest
import torch
from safetensors.torch import load_file

from training_jobs.errors import InvalidParametersError, JobPaused
from training_jobs.runner import (
    TRAINER_STATE_FILE,
    TrainingParams,
    checkpoint_dir,
    train,
)

GSM8K_TRAIN = Path(__file__).parents[2] / "fixtures" / "data" / "gsm8k_train.jsonl"


@pytest.fixture(scope="module")
def rows() -> pa.Table:
    return pa_json.read_json(GSM8K_TRAIN).slice(0, 48)


def pause_after(step: int) -> tuple[list[dict[str, Any]], Any]:
    """An event list and a `should_pause` that turns true once `step` progress was reported."""
    events: list[dict[str, Any]] = []

    def should_pause() -> bool:
        return any(e["type"] == "progress" and e["step"] >= step for e in events)

    return events, should_pause


def weights(directory: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(directory / name))


@pytest.mark.parametrize(
    ("method", "weights_file"),
    [("full", "model.safetensors"), ("lora", "adapter_model.safetensors")],
)
def test_pause_then_resume_matches_an_uninterrupted_run(
    rows: pa.Table, tmp_path: Path, method: str, weights_file: str
) -> None:
    params = TrainingParams(
        max_steps=10, batch_size=4, max_seq_len=128, warmup_steps=2, method=method,
        lora_dropout=0.1 if method == "lora" else 0.0, seed=3,
    )  # fmt: skip
    straight = train(table=rows, params=params, output_dir=tmp_path / "straight")

    events, should_pause = pause_after(4)
    with pytest.raises(JobPaused) as paused:
        train(
            table=rows,
            params=params,
            output_dir=tmp_path / "first",
            on_event=events.append,
            should_pause=should_pause,
        )
    saved = paused.value.checkpoint_dir
    assert saved == checkpoint_dir(tmp_path / "first", paused.value.step)
    assert 4 <= paused.value.step < 10
    assert (saved / TRAINER_STATE_FILE).is_file()

    resumed_events: list[dict[str, Any]] = []
    resumed = train(
        table=rows,
        params=params,
        output_dir=tmp_path / "second",
        on_event=resumed_events.append,
        resume_from=saved,
    )

    assert resumed_events[0]["type"] == "resumed"
    assert resumed_events[0]["step"] == paused.value.step
    progress_steps = [e["step"] for e in resumed_events if e["type"] == "progress"]
    assert progress_steps and min(progress_steps) > paused.value.step
    assert resumed.trained_tokens == straight.trained_tokens  # each step counted once
    assert resumed.first_loss == straight.first_loss
    assert resumed.final_loss == pytest.approx(straight.final_loss, abs=1e-6)
    expected = weights(tmp_path / "straight", weights_file)
    actual = weights(tmp_path / "second", weights_file)
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=1e-6, msg=name)


def test_checkpoints_are_handed_over_before_their_event(rows: pa.Table, tmp_path: Path) -> None:
    order: list[str] = []

    def on_checkpoint(
        directory: Path, step: int, metrics: dict[str, Any], digests: dict[str, str]
    ) -> None:
        assert (directory / "trainer_state.safetensors").is_file()
        assert metrics["step"] == step and metrics["trained_tokens"] > 0
        order.append(f"saved {step}")

    train(
        table=rows,
        params=TrainingParams(max_steps=6, batch_size=4, max_seq_len=128, checkpoint_every=2),
        output_dir=tmp_path,
        on_event=lambda event: (
            order.append(event["type"]) if event["type"] == "checkpoint" else None
        ),
        on_checkpoint=on_checkpoint,
    )

    assert order == ["saved 2", "checkpoint", "saved 4", "checkpoint"]


def test_a_checkpoint_of_other_parameters_is_refused(rows: pa.Table, tmp_path: Path) -> None:
    params = TrainingParams(max_steps=4, batch_size=4, max_seq_len=128, checkpoint_every=2)
    train(table=rows, params=params, output_dir=tmp_path / "run")

    with pytest.raises(InvalidParametersError, match="other training parameters"):
        train(
            table=rows,
            params=params.model_copy(update={"learning_rate": 0.5}),
            output_dir=tmp_path / "other",
            resume_from=checkpoint_dir(tmp_path / "run", 2),
        )
