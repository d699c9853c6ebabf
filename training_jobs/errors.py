"""Errors raised while preparing and running a fine-tuning job.

The hierarchy::

    TrainingError
    ├── InvalidTrainingDataError   a row or the table's shape cannot be turned into training text
    ├── InvalidParametersError     the job's parameters are out of bounds or name a missing model
    │   └── UnknownModelError      the base model is not in the platform's registry
    ├── ModelRegistryError         a directory cannot be registered, or the registry is unreadable
    ├── ReleaseCheckError          the release checks cannot be run on what they were given
    ├── JobCancelled               the job was asked to stop between two steps
    ├── JobPaused                  the job was asked to pause between two steps
    └── TimeLimitExceeded          the job ran past its soft time limit

Training data is licensed: messages name row indices, field names and types, never the content
of a row, so nothing leaks through logs, job records or API error bodies.
"""

from __future__ import annotations

from pathlib import Path


class TrainingError(Exception):
    """Base class of every error this package raises."""


class InvalidTrainingDataError(TrainingError):
    """The training table has an unknown shape, or a row has a missing or ill-typed field."""

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.row = row
        self.field = field


class InvalidParametersError(TrainingError):
    """The training parameters are out of bounds, inconsistent, or name a missing base model."""


class UnknownModelError(InvalidParametersError):
    """The named base model is not in the platform's model registry."""


class ModelRegistryError(TrainingError):
    """An operator's registration failed: a bad directory, a missing package, a corrupt registry."""


class ReleaseCheckError(TrainingError):
    """The release checks were given nothing to measure (no rows, no canaries, no candidates)."""


class JobCancelled(TrainingError):
    """The job was cancelled between two steps; what was trained so far is in `checkpoint_dir`."""

    def __init__(self, *, step: int, checkpoint_dir: Path | None) -> None:
        where = f", saved to {checkpoint_dir}" if checkpoint_dir is not None else ""
        super().__init__(f"training cancelled after step {step}{where}")
        self.step = step
        self.checkpoint_dir = checkpoint_dir


class JobPaused(TrainingError):
    """The job was paused between two steps; `checkpoint_dir` holds what resuming needs."""

    def __init__(self, *, step: int, checkpoint_dir: Path | None) -> None:
        where = f", saved to {checkpoint_dir}" if checkpoint_dir is not None else ""
        super().__init__(f"training paused after step {step}{where}")
        self.step = step
        self.checkpoint_dir = checkpoint_dir


class TimeLimitExceeded(TrainingError):
    """The job ran longer than its soft time limit (seconds of training, over all attempts)."""

    def __init__(self, *, limit_seconds: float) -> None:
        super().__init__(f"the job ran past its time limit of {limit_seconds:g} s")
        self.limit_seconds = limit_seconds
