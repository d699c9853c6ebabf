"""Checkpoints written in the background: the same files as a checkpoint written at once, one in
flight at a time, handed over before their event, and a failed write never lost."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json
import pytest
import torch
from safetensors.torch import load_file

from tests.unit.training_jobs.test_training_resume_state import pause_after
from training_jobs import runner
from training_jobs.checkpoint_files import SafetensorsImage
from training_jobs.errors import JobPaused
from training_jobs.runner import TrainingParams, train

Event = dict[str, Any]


@pytest.fixture(scope="module")
def rows(gsm8k_train: Path) -> pa.Table:
    return pa_json.read_json(gsm8k_train).slice(0, 48)


def params_for(method: str, **changes: Any) -> TrainingParams:
    return TrainingParams(
        max_steps=8, batch_size=4, max_seq_len=128, warmup_steps=2, checkpoint_every=2, seed=3,
        method=method, lora_dropout=0.1 if method == "lora" else 0.0,
    ).model_copy(update=changes)  # fmt: skip


def weights_file(method: str) -> str:
    return "adapter_model.safetensors" if method == "lora" else "model.safetensors"


def file_bytes(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


class Store:
    """An `on_checkpoint` that takes each checkpoint's files away, as the job's store does."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.taken: list[tuple[int, str, Path]] = []  # step, thread, where the files went

    def __call__(
        self, directory: Path, step: int, metrics: dict[str, Any], digests: dict[str, str]
    ) -> None:
        kept = self.root / f"{len(self.taken)}-step-{step}"
        kept.mkdir(parents=True)
        for path in directory.iterdir():
            path.rename(kept / path.name)
        # The digests the writer computed are those of the files it left.
        assert "trainer_state.safetensors" in digests
        for name, digest in digests.items():
            assert hashlib.sha256((kept / name).read_bytes()).hexdigest() == digest, name
        self.taken.append((step, threading.current_thread().name, kept))

    def handed_over(self) -> list[tuple[int, bool]]:
        """(step, written in the background) of each checkpoint taken."""
        return [(step, thread != "MainThread") for step, thread, _ in self.taken]

    def checkpoint(self, step: int) -> Path:
        """The files of the last checkpoint taken at `step`."""
        return [kept for taken, _, kept in self.taken if taken == step][-1]


def assert_same_tensors(actual: Path, expected: Path) -> None:
    actual_tensors, expected_tensors = load_file(str(actual)), load_file(str(expected))
    assert actual_tensors.keys() == expected_tensors.keys()
    for name, tensor in expected_tensors.items():
        torch.testing.assert_close(actual_tensors[name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_background_checkpoint_is_the_checkpoint_written_at_once_and_resumes_exactly(
    rows: pa.Table, tmp_path: Path, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = params_for(method)
    # The writer saves each snapshot only once training is two steps further: the snapshot must
    # not follow the weights and moments that training changes in place meanwhile.
    progress = threading.Condition()
    trained_to = 0
    write = runner._write_snapshot

    def on_event(event: Event) -> None:
        nonlocal trained_to
        if event["type"] == "progress":
            with progress:
                trained_to = event["step"]
                progress.notify_all()

    def write_late(*args: Any) -> dict[str, str]:
        if threading.current_thread().name != "MainThread":
            step = int(args[2].name.removeprefix("step-"))
            with progress:
                assert progress.wait_for(lambda: trained_to >= step + 2, timeout=60)
        return write(*args)

    monkeypatch.setattr(runner, "_write_snapshot", write_late)
    background = Store(tmp_path / "background-store")
    trained = train(
        table=rows,
        params=params,
        output_dir=tmp_path / "background",
        on_event=on_event,
        on_checkpoint=background,
    )
    monkeypatch.undo()
    assert background.handed_over() == [(2, True), (4, True), (6, True)]

    # The same job paused after step 4 saves step 4 again, on the training thread, and stops.
    at_once = Store(tmp_path / "at-once-store")
    events, should_pause = pause_after(4)
    with pytest.raises(JobPaused) as paused:
        train(
            table=rows,
            params=params,
            output_dir=tmp_path / "at-once",
            on_event=events.append,
            should_pause=should_pause,
            on_checkpoint=at_once,
        )
    assert paused.value.step == 4
    assert at_once.handed_over() == [(2, True), (4, True), (4, False)]

    written_in_background = background.checkpoint(4)
    assert file_bytes(written_in_background) == file_bytes(at_once.checkpoint(4))
    assert {weights_file(method), "trainer_state.json", "trainer_state.safetensors"} <= set(
        file_bytes(written_in_background)
    )

    resumed = train(
        table=rows,
        params=params,
        output_dir=tmp_path / "resumed",
        resume_from=written_in_background,
    )
    straight = train(table=rows, params=params_for(method, checkpoint_every=0),
                     output_dir=tmp_path / "straight")  # fmt: skip

    assert resumed.trained_tokens == trained.trained_tokens == straight.trained_tokens
    assert resumed.final_loss == trained.final_loss == straight.final_loss
    for run in ("resumed", "background"):
        assert_same_tensors(tmp_path / run / weights_file(method),
                            tmp_path / "straight" / weights_file(method))  # fmt: skip


def test_a_failed_checkpoint_write_fails_training_at_the_next_step(
    rows: pa.Table, tmp_path: Path
) -> None:
    events: list[Event] = []
    failed = threading.Event()

    def on_checkpoint(
        directory: Path, step: int, metrics: dict[str, Any], digests: dict[str, str]
    ) -> None:
        failed.set()
        raise RuntimeError(f"the store refused step {step}")

    def on_event(event: Event) -> None:
        events.append(event)
        if event["type"] == "progress" and event["step"] == 3:
            assert failed.wait(timeout=60)
            time.sleep(0.2)  # the writer thread ends its task

    with pytest.raises(RuntimeError, match="the store refused step 2"):
        train(
            table=rows,
            params=params_for("full", max_steps=30),
            output_dir=tmp_path,
            on_event=on_event,
            on_checkpoint=on_checkpoint,
        )

    assert [e["step"] for e in events if e["type"] == "progress"][-1] == 3
    assert not any(e["type"] in ("checkpoint", "completed") for e in events)
    assert not (tmp_path / "model.safetensors").exists()  # no final save after the failure


def test_one_checkpoint_is_in_flight_at_a_time_and_all_are_handed_over_in_order(
    rows: pa.Table, tmp_path: Path
) -> None:
    log: list[tuple[str, int]] = []
    trained = 0  # the last step the training thread reported
    most_steps_ahead = 0

    def on_event(event: Event) -> None:
        nonlocal trained
        if event["type"] == "progress":
            trained = event["step"]
        if event["type"] == "checkpoint":
            log.append(("event", event["step"]))

    def slow_on_checkpoint(
        directory: Path, step: int, metrics: dict[str, Any], digests: dict[str, str]
    ) -> None:
        nonlocal most_steps_ahead
        time.sleep(0.3)
        # Training went on while this checkpoint was handed over, up to the next checkpoint.
        most_steps_ahead = max(most_steps_ahead, trained - step)
        log.append(("returned", step))

    started = time.perf_counter()
    train(
        table=rows,
        params=params_for("full", max_steps=6, checkpoint_every=1),
        output_dir=tmp_path,
        on_event=on_event,
        on_checkpoint=slow_on_checkpoint,
    )

    steps = [1, 2, 3, 4, 5]
    assert log == [entry for step in steps for entry in (("returned", step), ("event", step))]
    assert most_steps_ahead == 1  # then waited for this one before it took that one
    assert time.perf_counter() - started >= 0.3 * len(steps)


def test_the_checkpoint_event_comes_from_the_writer_after_the_checkpoint_is_recorded(
    rows: pa.Table, tmp_path: Path
) -> None:
    recorded: list[int] = []
    events: list[tuple[Event, list[int], str]] = []

    def record(
        directory: Path, step: int, metrics: dict[str, Any], digests: dict[str, str]
    ) -> None:
        time.sleep(0.05)
        recorded.append(step)

    train(
        table=rows,
        params=params_for("full", max_steps=5),
        output_dir=tmp_path,
        on_event=lambda event: events.append(
            (event, list(recorded), threading.current_thread().name)
        ),
        on_checkpoint=record,
    )

    checkpoints = [(event, seen, thread) for event, seen, thread in events
                   if event["type"] == "checkpoint"]  # fmt: skip
    assert [event["step"] for event, _, _ in checkpoints] == [2, 4]
    for event, recorded_before, thread in checkpoints:
        assert recorded_before[-1] == event["step"]
        assert thread.startswith("checkpoint-writer")
        assert event["metrics"]["step"] == event["step"]
        assert event["training_thread_seconds"] >= 0
        assert event["background_seconds"] >= 0.05
    assert events[-1][0]["type"] == "completed"  # after every checkpoint event


def test_an_error_of_the_training_thread_lets_the_checkpoint_in_flight_finish(
    rows: pa.Table, tmp_path: Path
) -> None:
    recorded: list[int] = []
    steps_done: list[int] = []

    def slow_record(
        directory: Path, step: int, metrics: dict[str, Any], digests: dict[str, str]
    ) -> None:
        time.sleep(0.5)
        recorded.append(step)

    def should_stop() -> bool:
        if steps_done and steps_done[-1] == 3:
            raise ConnectionError("the database went away")
        return False

    with pytest.raises(ConnectionError):
        train(
            table=rows,
            params=params_for("full"),
            output_dir=tmp_path,
            on_event=lambda e: steps_done.append(e["step"]) if e["type"] == "progress" else None,
            should_stop=should_stop,
            on_checkpoint=slow_record,
        )

    assert recorded == [2]  # written and handed over before train raised


def test_a_worker_process_keeps_the_snapshot_memory_for_its_next_job(
    rows: pa.Table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    laid_out: list[int] = []
    lay_out = SafetensorsImage._lay_out

    def counting(self: SafetensorsImage, *args: Any, **kwargs: Any) -> None:
        laid_out.append(1)
        lay_out(self, *args, **kwargs)

    monkeypatch.setattr(SafetensorsImage, "_lay_out", counting)
    monkeypatch.setattr(runner, "_spare_images", {})

    def job(name: str) -> int:
        before = len(laid_out)
        train(table=rows, params=params_for("full", max_steps=5), output_dir=tmp_path / name)
        return len(laid_out) - before

    assert job("first") == 2  # the model's weights and the trainer's tensors
    assert job("second") == 0  # the same layouts: copied into the first job's memory
    monkeypatch.setattr(runner, "_SPARE_SNAPSHOT_BYTES", 0)
    assert job("third") == 0  # took the memory kept, and frees it at its end
    assert runner._spare_images == {}
    assert job("fourth") == 2
