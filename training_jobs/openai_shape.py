"""The OpenAI fine-tuning API's shapes, mapped onto governed jobs.

``training_file`` names a licensed dataset version; ``model`` names a base model from the
registry, or ``aidx-tiny`` (a small model built from a config); ``method`` is ``supervised``
(full fine-tuning) or ``lora``; hyperparameters are ``"auto"`` or bounded numbers. Steps follow
from the epochs, the version's rows and the batch size; a checkpoint is kept at the end of each
epoch. ``suffix``, ``seed`` and ``metadata`` are OpenAI's (checked by the service, which names the
parameter at fault); ``country`` (ISO 3166-1 alpha-2) is the exchange's own field: where the
buyer uses the data, checked against a territorial license.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from training_jobs.models import TrainingJob, TrainingJobCheckpoint, TrainingJobEvent

TINY_MODEL = "aidx-tiny"
BASE_LEARNING_RATE = 1e-3
MAX_STEPS = 100_000


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_epochs: Literal["auto"] | int = Field(default="auto")
    batch_size: Literal["auto"] | int = Field(default="auto")
    learning_rate_multiplier: Literal["auto"] | float = Field(default="auto")


class LoraHyperparameters(Hyperparameters):
    rank: Literal["auto"] | int = Field(default="auto")
    alpha: Literal["auto"] | int = Field(default="auto")
    dropout: Literal["auto"] | float = Field(default="auto")


class MethodSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: LoraHyperparameters = Field(default_factory=LoraHyperparameters)


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["supervised", "lora"] = "supervised"
    supervised: MethodSection | None = None
    lora: MethodSection | None = None


class JobCreate(BaseModel):
    """The body of ``POST /v1/fine_tuning/jobs``; fields the exchange does not use are refused."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=100)
    training_file: str = Field(min_length=1, max_length=40)
    hyperparameters: Hyperparameters | None = None
    method: Method = Field(default_factory=Method)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    suffix: str | None = None
    validation_file: None = None
    metadata: dict[str, Any] | None = None
    integrations: list[Any] | None = Field(default=None, max_length=0)
    country: str | None = None


def training_params(body: JobCreate, *, num_rows: int) -> dict[str, Any]:
    """The job's ``TrainingParams`` (as a mapping, validated by the service)."""
    section = body.method.lora if body.method.type == "lora" else body.method.supervised
    chosen = section.hyperparameters if section else LoraHyperparameters()
    if body.hyperparameters is not None:  # the deprecated top-level form
        chosen = LoraHyperparameters(**body.hyperparameters.model_dump())
    epochs = 1 if chosen.n_epochs == "auto" else chosen.n_epochs
    batch_size = 8 if chosen.batch_size == "auto" else chosen.batch_size
    multiplier = (
        1.0 if chosen.learning_rate_multiplier == "auto" else chosen.learning_rate_multiplier
    )
    steps_per_epoch = max(1, math.ceil(num_rows / max(batch_size, 1)))
    params: dict[str, Any] = {
        "max_steps": min(MAX_STEPS, max(1, math.ceil(epochs * num_rows / max(batch_size, 1)))),
        "checkpoint_every": min(MAX_STEPS, steps_per_epoch),
        "batch_size": batch_size,
        "learning_rate": BASE_LEARNING_RATE * multiplier,
        "method": "lora" if body.method.type == "lora" else "full",
    }
    if body.seed is not None:
        params["seed"] = body.seed
    if body.model != TINY_MODEL:
        params["base_model"] = body.model
    if body.method.type == "lora":
        for ours, theirs in (
            ("lora_rank", "rank"),
            ("lora_alpha", "alpha"),
            ("lora_dropout", "dropout"),
        ):
            value = getattr(chosen, theirs)
            if value != "auto":
                params[ours] = value
    return params


PARAMETER_NAMES = {
    "max_steps": "n_epochs",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate_multiplier",
    "lora_rank": "rank",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
}


def openai_param(param: str | None, body: JobCreate | None) -> str | None:
    """The request field a service-side parameter name stands for (``params.batch_size`` is
    ``method.supervised.hyperparameters.batch_size``)."""
    if param is None or not param.startswith("params."):
        return param
    ours = param.removeprefix("params.").split(".", 1)[0]
    theirs = PARAMETER_NAMES.get(ours, ours)
    method = body.method.type if body is not None else "supervised"
    return f"method.{method}.hyperparameters.{theirs}"


def job_object(job: TrainingJob, *, model: str | None = None) -> dict[str, Any]:
    params = job.params
    return {
        "object": "fine_tuning.job",
        "id": job.id,
        "model": model or job.model,
        "created_at": int(job.created_at.timestamp()),
        "finished_at": int(job.finished_at.timestamp()) if job.finished_at else None,
        "fine_tuned_model": job.fine_tuned_model,
        "organization_id": job.organization_id,
        "result_files": [],
        "status": job.status,
        "validation_file": None,
        "training_file": job.version_id,
        "hyperparameters": {
            "n_epochs": "auto",
            "batch_size": params.get("batch_size"),
            "learning_rate_multiplier": params.get("learning_rate", BASE_LEARNING_RATE)
            / BASE_LEARNING_RATE,
        },
        "trained_tokens": job.trained_tokens if job.finished_at else None,
        "error": (
            {
                "code": job.error_code or "job_" + job.status,
                "message": job.error,
                "param": job.error_param,
            }
            if job.error
            else None
        ),
        "seed": params.get("seed", 0),
        "suffix": job.suffix,
        "estimated_finish": None,
        "integrations": [],
        "metadata": job.user_metadata,
        "method": {"type": "lora" if params.get("method") == "lora" else "supervised"},
        "country": job.country,
        "validation_report": job.validation,
        "has_model_card": job.model_card is not None,
    }


def checkpoint_object(job: TrainingJob, checkpoint: TrainingJobCheckpoint) -> dict[str, Any]:
    metrics = checkpoint.metrics
    return {
        "object": "fine_tuning.job.checkpoint",
        "id": checkpoint.id,
        "created_at": int(checkpoint.created_at.timestamp()),
        "fine_tuned_model_checkpoint": (
            f"ft:{job.model}:aidx{':' + job.suffix if job.suffix else ''}:{job.id}"
            f":ckpt-step-{checkpoint.step}"
        ),
        "fine_tuning_job_id": job.id,
        "step_number": checkpoint.step,
        "metrics": {
            "step": checkpoint.step,
            "train_loss": metrics.get("train_loss"),
            "trained_tokens": metrics.get("trained_tokens"),
        },
    }


def event_object(event: TrainingJobEvent) -> dict[str, Any]:
    kind = "metrics" if event.type == "progress" else "message"
    level = "error" if event.type == "failed" else "warn" if event.type == "requeued" else "info"
    message = {
        "started": "Training started",
        "progress": f"Step {event.data.get('step')}/{event.data.get('max_steps')}: "
        f"training loss={event.data.get('loss')}",
        "completed": "Training completed",
        "resumed": f"Training resumed from step {event.data.get('step')}",
        "checkpoint": f"Checkpoint saved at step {event.data.get('step')}",
        "paused": f"Training paused after step {event.data.get('step')}",
        "requeued": f"Worker lost; requeued to resume from step {event.data.get('resume_step')}",
        "failed": f"Job failed: {event.data.get('code')}",
        "auditing": "Checking the model before release",
        "audited": f"Release gate: {event.data.get('decision')}",
    }.get(event.type, event.type)
    return {
        "object": "fine_tuning.job.event",
        "id": f"ftevent-{event.job_id}-{event.seq}",
        "created_at": int(event.at.timestamp()),
        "level": level,
        "message": message,
        "data": event.data,
        "type": kind,
    }
