"""Fine-tune a causal language model on a licensed table, reporting progress as events.

`train` is the whole job: it formats and tokenizes the rows, trains with AdamW, and saves the
model (safetensors) and tokenizer. Two recipes: ``full`` trains every weight and saves them all;
``lora`` freezes the base model, trains low-rank adapters on every linear layer of the blocks
(with peft) and saves only the adapter. Recipes are platform code: `recipe_hash` pins them, and a
job records it; buyers send `TrainingParams`, never code. It reports through `on_event` with
small JSON-able dicts that never hold row text, and stops cooperatively between steps when
`should_stop` (cancel) or `should_pause` (pause) says so.

A checkpoint is the model's weights (a full model's in ``model.safetensors`` with its config and
tokenizer, a LoRA model's adapter as `train` saves it) plus the trainer's state: the optimizer's
moments and the RNG states in ``trainer_state.safetensors``; the step, the scheduler, the Python and
NumPy RNG states, the data position and the counters in ``trainer_state.json``. No pickle: a
checkpoint read back from the object store cannot run code. `train(resume_from=...)` continues
from one exactly where it stopped: the same batches, learning rates and random draws follow.
Periodic checkpoints are written in the background: between two steps the training thread only
copies the state into host memory laid out as the checkpoint's files, and one writer thread
hashes, writes and hands over those files while training goes on (`_CheckpointWriter`,
`training_jobs.checkpoint_files`).
Torch and transformers are imported inside the functions that use them, so importing this module
(for `TrainingParams`, say) stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from training_jobs.checkpoint_files import SafetensorsImage
from training_jobs.errors import (
    InvalidParametersError,
    InvalidTrainingDataError,
    JobCancelled,
    JobPaused,
    TrainingError,
)
from training_jobs.formatting import CHAT_TEMPLATE, END_TOKEN, rows_to_chats
from training_jobs.tokenization import (
    IGNORE_INDEX,
    SPECIAL_TOKENS,
    EncodedChat,
    build_byte_tokenizer,
    encode_chats,
    ensure_chat_tokens,
    load_tokenizer,
    token_id,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Event = dict[str, Any]

log = logging.getLogger(__name__)
_MAX_PROGRESS_INTERVAL = 50
_MIN_LR_FRACTION = 0.1
_MAX_GRAD_NORM = 1.0
ADAPTER_FILE = "adapter_model.safetensors"
MODEL_FILE = "model.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"
TRAINER_TENSORS_FILE = "trainer_state.safetensors"
_RECIPE_MODULES = ("formatting.py", "runner.py", "tokenization.py")
"""The sources that decide what training does to a model; `recipe_hash` covers them."""
_SPARE_SNAPSHOT_BYTES = 4 << 30
"""A job's checkpoint snapshot memory up to this size stays with the worker process for its
next job: new memory costs page faults on first use, 1.8 s on the training thread for the
1.7 GB of a SmolLM2-135M full fine-tune on the bench's two-core virtual machine, against 0.1 s
for a copy into memory used before. Larger snapshots are freed when their job ends."""
_spare_images: dict[str, SafetensorsImage] = {}  # by role; one job at a time takes them
_WRITER_NICENESS = 19
"""The checkpoint writer thread's CPU priority on Linux, so that it runs on time training leaves
idle. Measured with SmolLM2-135M on two cores that training fills: writing a checkpoint at nice 0
or 10 slowed the loop by 3-4 s, at 19 by about 1 s or less (the rest of the write then runs when
training waits for it, at the next checkpoint or before the final save)."""


class TinyModelSpec(BaseModel):
    """A small Llama built from scratch with the byte tokenizer, for tests and demos."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: Literal["llama"] = "llama"
    hidden_size: int = Field(64, ge=8, le=4096)
    intermediate_size: int = Field(128, ge=8, le=16384)
    num_hidden_layers: int = Field(2, ge=1, le=64)
    num_attention_heads: int = Field(4, ge=1, le=64)
    max_position_embeddings: int = Field(512, ge=16, le=8192)

    @model_validator(mode="after")
    def _heads_split_hidden_size(self) -> Self:
        head_size, remainder = divmod(self.hidden_size, self.num_attention_heads)
        if remainder or head_size % 2:
            raise ValueError(
                f"hidden_size {self.hidden_size} must split into {self.num_attention_heads} "
                "attention heads of an even size"
            )
        return self


class TrainingParams(BaseModel):
    """What a buyer may choose about a fine-tuning job; bounds keep one job's cost in check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model: TinyModelSpec | Annotated[str, Field(min_length=1)] = Field(
        default_factory=TinyModelSpec,
        description="a tiny model to build, or the local directory of a pretrained model",
    )
    max_steps: int = Field(30, ge=1, le=100_000)
    batch_size: int = Field(8, ge=1, le=512)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    max_seq_len: int = Field(256, ge=16, le=8192)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    checkpoint_every: int = Field(0, ge=0, le=100_000, description="steps; 0 saves no checkpoint")
    warmup_steps: int = Field(0, ge=0, le=100_000)
    method: Literal["full", "lora"] = Field(
        "full", description="full: train every weight; lora: train low-rank adapters only"
    )
    lora_rank: int = Field(8, ge=1, le=256, description="rank of each adapter (lora only)")
    lora_alpha: int = Field(16, ge=1, le=1024, description="adapter scale: alpha / rank")
    lora_dropout: float = Field(0.0, ge=0, le=0.5, description="dropout on the adapter input")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} exceeds max_steps {self.max_steps}")
        if (
            isinstance(self.base_model, TinyModelSpec)
            and self.max_seq_len > self.base_model.max_position_embeddings
        ):
            raise ValueError(
                f"max_seq_len {self.max_seq_len} exceeds the model's max_position_embeddings "
                f"{self.base_model.max_position_embeddings}"
            )
        return self


@dataclass(frozen=True)
class TrainingResult:
    """What a finished job reports; `trained_tokens` is what metering charges."""

    final_loss: float  # loss of the last step (progress events report window means)
    first_loss: float  # loss of the first step
    steps: int
    trained_tokens: int  # non-padding tokens fed to the model, summed over steps
    files: list[Path]  # the files saved in output_dir
    device: str  # "cuda" or "cpu"
    seconds: float
    method: str = "full"  # "full" or "lora"; a lora job's files hold the adapter only
    recipe_hash: str = ""  # `recipe_hash()` of the code that trained it


def parse_training_params(data: Mapping[str, Any]) -> TrainingParams:
    """Validate `data` as `TrainingParams`; `InvalidParametersError` lists every fault."""
    try:
        return TrainingParams.model_validate(data)
    except ValidationError as error:
        faults = "; ".join(
            f"{'.'.join(str(part) for part in fault['loc']) or 'params'}: {fault['msg']}"
            for fault in error.errors()
        )
        raise InvalidParametersError(f"invalid training parameters: {faults}") from error


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    """Where `train` saves the checkpoint taken after `step`."""
    return output_dir / "checkpoints" / f"step-{step:06d}"


def recipe_hash() -> str:
    """sha256 over the source of the recipe modules, so a job can record the code it ran."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for name in _RECIPE_MODULES:
        source = (package / name).read_bytes()
        digest.update(f"{name} {len(source)}\n".encode())
        digest.update(source)
    return digest.hexdigest()


def _ignore_event(event: Event) -> None:
    return None


def _never_stop() -> bool:
    return False


def train(
    *,
    table: pa.Table,
    params: TrainingParams,
    output_dir: Path,
    on_event: Callable[[Event], None] = _ignore_event,
    should_stop: Callable[[], bool] = _never_stop,
    should_pause: Callable[[], bool] = _never_stop,
    on_checkpoint: Callable[[Path, int, dict[str, Any], dict[str, str]], None] | None = None,
    resume_from: Path | None = None,
) -> TrainingResult:
    """Fine-tune `params.base_model` on `table` and save the model and tokenizer in `output_dir`.

    Every `params.checkpoint_every` steps a checkpoint is saved under `output_dir` and handed to
    `on_checkpoint(directory, step, metrics, digests)` before the ``checkpoint`` event; `digests`
    maps the names of the files hashed as they were written to their SHA-256. Both happen on a
    writer thread while training goes on, in step order, one checkpoint at a time; `on_event`
    must therefore accept calls from that thread too. `on_checkpoint` may take the files away
    (move them into a store): `train` does not read them again. `resume_from`, a checkpoint
    directory of the same job, continues from its step.

    Raises `InvalidTrainingDataError` for rows that cannot be trained on,
    `InvalidParametersError` for a missing base model or a checkpoint of other parameters,
    `JobCancelled` (after saving a checkpoint) when `should_stop()` turns true between two steps
    and `JobPaused` (likewise) when `should_pause()` does. An error of the writer thread (of
    `on_checkpoint`, say) is raised here, at the next step or before the final save.
    """
    import torch

    started_at = time.perf_counter()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    _seed_everything(params.seed)

    chats = rows_to_chats(table)
    if not chats:
        raise InvalidTrainingDataError("the training table has no rows")
    model, tokenizer = load_base_model(params.base_model)
    if params.method == "lora":
        model = _with_lora_adapter(model, tokenizer, params)
    encoded = encode_chats(tokenizer, chats, max_length=params.max_seq_len)
    examples = [example for example in encoded if example.trainable_tokens]
    if not examples:
        raise InvalidTrainingDataError(
            f"no row has assistant text within the first {params.max_seq_len} tokens"
        )

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)  # type: ignore[arg-type]  # transformers wraps Module.to untyped
    model.train()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda index: _learning_rate_factor(index + 1, params)
    )
    batches = _batches(examples, batch_size=params.batch_size, seed=params.seed)
    pad_id = int(tokenizer.pad_token_id)
    progress_every = max(1, min(_MAX_PROGRESS_INTERVAL, params.max_steps // 10))

    progress = _Progress()
    if resume_from is not None:
        progress = _restore_checkpoint(resume_from, model, optimizer, scheduler, params)
        for _ in range(progress.step):  # the data position: the batches already trained on
            next(batches)
    started = {
        "num_rows": len(chats),
        "skipped_rows": len(chats) - len(examples),
        "num_tokens": sum(len(example.input_ids) for example in examples),
        "device": device.type,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "trainable_parameters": sum(parameter.numel() for parameter in trainable),
        "method": params.method,
    }
    if resume_from is None:
        on_event({"type": "started", **started})
    else:
        on_event({"type": "resumed", "step": progress.step, **started})

    def snapshot(step: int, metrics: dict[str, Any], memory: _CheckpointWriter) -> _Snapshot:
        """The state a checkpoint saves, copied into the writer's memory: training may go on."""
        trainer_tensors, trainer_state = _trainer_state(
            optimizer, scheduler, params, progress, step
        )
        memory.trainer_image.fill(trainer_tensors)
        taken = _Snapshot(step, metrics, trainer_state, memory.trainer_image)
        if params.method == "lora":  # peft writes the adapter: it gets a state dict
            state, changing = _model_state(model)
            copies = memory.adapter_memory.copy({name: state[name] for name in changing})
            taken.adapter_state = {name: copies.get(name, tensor) for name, tensor in state.items()}
        else:
            memory.model_image.fill(_distinct(model.state_dict()), metadata={"format": "pt"})
            taken.model_image = memory.model_image
        return taken

    def write_checkpoint(snapshot: _Snapshot) -> Path:
        directory = checkpoint_dir(output_dir, snapshot.step)
        digests = _write_snapshot(model, tokenizer, directory, snapshot)
        if on_checkpoint is not None:
            on_checkpoint(directory, snapshot.step, snapshot.metrics, digests)
        return directory

    def write_in_background(snapshot: _Snapshot) -> None:
        started = time.perf_counter()
        write_checkpoint(snapshot)
        on_event(
            {
                "type": "checkpoint",
                "step": snapshot.step,
                "metrics": snapshot.metrics,
                "training_thread_seconds": round(snapshot.training_thread_seconds, 3),
                "background_seconds": round(time.perf_counter() - started, 3),
            }
        )

    def is_checkpoint_step(step: int) -> bool:  # the last step saves the model instead
        every = params.checkpoint_every
        return every > 0 and step % every == 0 and step < params.max_steps

    loss_value = math.nan
    window_losses: list[float] = []
    window_tokens = 0
    window_started = time.perf_counter()
    with _CheckpointWriter(write_in_background) as writer:
        for step in range(progress.step + 1, params.max_steps + 1):
            writer.raise_error()
            stop, pause = should_stop(), should_pause()
            if stop or pause:
                writer.wait()
                done = step - 1
                saved = None
                if done > 0:
                    metrics = _checkpoint_metrics(progress, loss_value)
                    saved = write_checkpoint(snapshot(done, metrics, writer))
                if stop:
                    raise JobCancelled(step=done, checkpoint_dir=saved)
                raise JobPaused(step=done, checkpoint_dir=saved)

            input_ids, attention_mask, labels = _collate(next(batches), pad_id=pad_id)
            batch_tokens = int(attention_mask.sum())
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    use_cache=False,
                ).logits
            loss = _causal_lm_loss(logits, labels.to(device))
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(trainable, _MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            loss_value = float(loss.item())
            if step == 1:
                progress.first_loss = loss_value
            progress.step = step
            progress.trained_tokens += batch_tokens
            window_losses.append(loss_value)
            window_tokens += batch_tokens
            if step % progress_every == 0 or step == params.max_steps:
                elapsed = max(time.perf_counter() - window_started, 1e-9)
                on_event(
                    {
                        "type": "progress",
                        "step": step,
                        "max_steps": params.max_steps,
                        "loss": round(sum(window_losses) / len(window_losses), 4),
                        "tokens_per_second": round(window_tokens / elapsed, 1),
                        "progress": round(step / params.max_steps, 4),
                        "trained_tokens": progress.trained_tokens,
                    }
                )
                window_losses, window_tokens, window_started = [], 0, time.perf_counter()
            if is_checkpoint_step(step):
                checkpoint_started = time.perf_counter()
                writer.wait()  # at most one checkpoint in flight
                metrics = _checkpoint_metrics(progress, loss_value)
                taken = snapshot(step, metrics, writer)
                taken.training_thread_seconds = time.perf_counter() - checkpoint_started
                writer.submit(taken)
        writer.close()

    files = _save(model, tokenizer, output_dir)
    seconds = time.perf_counter() - started_at
    on_event(
        {
            "type": "completed",
            "final_loss": round(loss_value, 4),
            "trained_tokens": progress.trained_tokens,
            "steps": params.max_steps,
            "seconds": round(seconds, 2),
        }
    )
    return TrainingResult(
        final_loss=loss_value,
        first_loss=progress.first_loss,
        steps=params.max_steps,
        trained_tokens=progress.trained_tokens,
        files=files,
        device=device.type,
        seconds=seconds,
        method=params.method,
        recipe_hash=recipe_hash(),
    )


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy comes with transformers
        return
    numpy.random.seed(seed)


def load_base_model(
    base_model: TinyModelSpec | str,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model (fp32) and its tokenizer, with the house chat tokens and template.

    A `TinyModelSpec` is built from scratch with the torch generator's current state, so seed it
    first (as `train` does) to rebuild the same weights. A pretrained model whose tokenizer lacks
    the chat tokens gets them, and its embeddings grow to match.
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    if isinstance(base_model, TinyModelSpec):
        tokenizer: PreTrainedTokenizerBase = build_byte_tokenizer()
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=base_model.hidden_size,
            intermediate_size=base_model.intermediate_size,
            num_hidden_layers=base_model.num_hidden_layers,
            num_attention_heads=base_model.num_attention_heads,
            num_key_value_heads=base_model.num_attention_heads,
            max_position_embeddings=base_model.max_position_embeddings,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model: PreTrainedModel = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    else:
        path = Path(base_model)
        if not path.is_dir():
            raise InvalidParametersError(f"base model directory {base_model!r} does not exist")
        tokenizer = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
        ensure_chat_tokens(tokenizer)
        if len(tokenizer) > model.config.vocab_size:
            model.resize_token_embeddings(len(tokenizer))
    # fp32 master weights; on CUDA the forward pass runs under bf16 autocast.
    model.to(torch.float32)  # type: ignore[arg-type]

    tokenizer.chat_template = CHAT_TEMPLATE
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = [
        token_id(tokenizer, END_TOKEN),
        tokenizer.eos_token_id,
    ]
    return model, tokenizer


def load_base_tokenizer(base_model: TinyModelSpec | str) -> PreTrainedTokenizerBase:
    """The tokenizer `load_base_model` gives, without loading the model's weights.

    Loaded once per directory in a worker process (loading a tokenizer takes about a second,
    on the path from submission to running); callers only encode with it.
    """
    if isinstance(base_model, TinyModelSpec):
        return build_byte_tokenizer()
    path = Path(base_model)
    if not path.is_dir():
        raise InvalidParametersError(f"base model directory {base_model!r} does not exist")
    return _base_tokenizer(str(path.resolve()))


@functools.lru_cache(maxsize=4)
def _base_tokenizer(path: str) -> PreTrainedTokenizerBase:
    tokenizer = load_tokenizer(path)
    ensure_chat_tokens(tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def load_trained_model(
    output_dir: Path, params: TrainingParams
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model `train(params=params)` saved in `output_dir`, ready for inference (eval mode).

    A full job's directory is a whole model. A LoRA job's holds the adapter only, so the base
    model is rebuilt (a tiny one from `params.seed`, as `train` built it) and the adapter applied.
    """
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(output_dir)
    if params.method == "full":
        model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(
            str(output_dir), local_files_only=True
        )
    else:
        from peft import PeftModel

        if not (output_dir / ADAPTER_FILE).is_file():
            raise InvalidParametersError(f"{output_dir} holds no LoRA adapter")
        _seed_everything(params.seed)
        base, _ = load_base_model(params.base_model)
        model = PeftModel.from_pretrained(base, str(output_dir), is_trainable=False)  # type: ignore[assignment]
    model.eval()  # type: ignore[no-untyped-call]  # transformers wraps Module.eval untyped
    return model, tokenizer


def _with_lora_adapter(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, params: TrainingParams
) -> PreTrainedModel:
    """Freeze `model` and wrap it with LoRA adapters on every linear layer of its blocks.

    The rows of the house chat tokens in the embeddings train too (peft's trainable tokens):
    a pretrained model has just been given them, untrained, and must learn to read and end turns.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=params.lora_rank,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules="all-linear",  # the blocks' projections; peft leaves the output head out
        trainable_token_indices=[token_id(tokenizer, token) for token in SPECIAL_TOKENS],
        task_type="CAUSAL_LM",
    )
    wrapped: PreTrainedModel = get_peft_model(model, config)  # type: ignore[assignment]
    return wrapped


def _learning_rate_factor(step: int, params: TrainingParams) -> float:
    """Linear warmup over `warmup_steps`, then cosine decay to a tenth of the peak."""
    if step <= params.warmup_steps:
        return step / params.warmup_steps
    decay_steps = params.max_steps - params.warmup_steps
    if decay_steps <= 1:
        return 1.0
    done = (step - params.warmup_steps - 1) / (decay_steps - 1)
    cosine = 0.5 * (1 + math.cos(math.pi * done))
    return _MIN_LR_FRACTION + (1 - _MIN_LR_FRACTION) * cosine


def _batches(
    examples: Sequence[EncodedChat], *, batch_size: int, seed: int
) -> Iterator[list[EncodedChat]]:
    """Yield batches forever, reshuffling the examples (with a seeded order) at each pass."""
    order_random = random.Random(seed)
    order: list[int] = []
    while True:
        while len(order) < batch_size:
            epoch = list(range(len(examples)))
            order_random.shuffle(epoch)
            order += epoch
        yield [examples[index] for index in order[:batch_size]]
        del order[:batch_size]


def _collate(
    batch: Sequence[EncodedChat], *, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad `batch` to its longest example: (input_ids, attention_mask, labels)."""
    import torch

    width = max(len(example.input_ids) for example in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(batch):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids)
        attention_mask[row, :length] = 1
        labels[row, :length] = torch.tensor(example.labels)
    return input_ids, attention_mask, labels


def _causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions, computed in fp32."""
    import torch.nn.functional as functional

    shifted_logits = logits[:, :-1, :].float()
    shifted_labels = labels[:, 1:]
    return functional.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.size(-1)),
        shifted_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
    )


def _save(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: Path,
    *,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> list[Path]:
    """Save `model` (safetensors) and `tokenizer` into `directory`; return the files there.

    A LoRA model saves its adapter only (``adapter_model.safetensors`` and its config).
    `state_dict`, a snapshot of `model.state_dict()`, is saved in place of the model's own
    weights, by the same `save_pretrained`, so the files are those the model would give.
    """
    directory.mkdir(parents=True, exist_ok=True)
    card = directory / "README.md"
    had_card = card.exists()
    # save_pretrained pops what it writes: it gets a dict of its own.
    weights: dict[str, Any] = {} if state_dict is None else {"state_dict": dict(state_dict)}
    # transformers writes safetensors by default (4.35+) and only (5.0+); so does peft.
    if hasattr(model, "peft_config"):
        # The embeddings grew by the chat tokens only, and their rows are in the adapter (as
        # trainable tokens): the rest of the embedding matrix is the base model's.
        model.save_pretrained(directory, save_embedding_layers=False, **weights)
    else:
        model.save_pretrained(directory, **weights)
    tokenizer.save_pretrained(directory)
    if card.exists() and not had_card:
        card.unlink()  # peft's template card; the platform writes the job's own model card
    if (
        not (directory / MODEL_FILE).is_file()
        and not any(directory.glob("model-*.safetensors"))
        and not (directory / ADAPTER_FILE).is_file()
    ):
        raise TrainingError(f"the model saved in {directory} is not in safetensors")
    return sorted(path for path in directory.iterdir() if path.is_file())


@dataclass
class _Progress:
    """Where training stands: restored from a checkpoint, so a resumed job counts on."""

    step: int = 0
    trained_tokens: int = 0
    first_loss: float = math.nan


def _checkpoint_metrics(progress: _Progress, loss: float) -> dict[str, Any]:
    return {
        "step": progress.step,
        "train_loss": None if math.isnan(loss) else round(loss, 6),
        "trained_tokens": progress.trained_tokens,
    }


def _params_fingerprint(params: TrainingParams) -> str:
    """What must not change between a checkpoint and its resumption (the seed included)."""
    return hashlib.sha256(params.model_dump_json().encode()).hexdigest()


def _trainer_state(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    params: TrainingParams,
    progress: _Progress,
    step: int,
) -> tuple[dict[str, torch.Tensor], str]:
    """The optimizer's tensors and RNG states, and the rest of the trainer's state as JSON.

    The tensors are the optimizer's own (training changes them in place: copy them to keep
    them); the JSON is a copy already.
    """
    import numpy
    import torch

    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach()
            else:
                scalars.setdefault(str(index), {})[name] = value
    if torch.cuda.is_available():
        for device, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{device}"] = rng
    numpy_state: Any = numpy.random.get_state()
    document = {
        "step": step,
        "trained_tokens": progress.trained_tokens,
        "first_loss": None if math.isnan(progress.first_loss) else progress.first_loss,
        "data_position": {"batches_consumed": step},
        "params_fingerprint": _params_fingerprint(params),
        "recipe_hash": recipe_hash(),
        "optimizer_param_groups": state["param_groups"],
        "optimizer_scalars": scalars,
        "scheduler": {
            key: value for key, value in scheduler.state_dict().items() if key != "lr_lambdas"
        },
        "rng_python": _jsonable(random.getstate()),
        "rng_numpy": [
            numpy_state[0],
            [int(value) for value in numpy_state[1]],
            *(_jsonable(value) for value in numpy_state[2:]),
        ],
    }
    return tensors, json.dumps(document)


def _write_snapshot(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: Path,
    snapshot: _Snapshot,
) -> dict[str, str]:
    """Write a checkpoint's files into `directory`; return the SHA-256 of those hashed on the way
    (by file name), which the store then takes instead of reading the files again.

    The trainer's tensors (and a full model's weights) go from the snapshot's images; a LoRA
    model's adapter is saved by peft, from the snapshot's state dict. No pickle anywhere.
    """
    directory.mkdir(parents=True, exist_ok=True)
    digests = {}
    if snapshot.adapter_state is not None:
        _save(model, tokenizer, directory, state_dict=snapshot.adapter_state)
    else:
        assert snapshot.model_image is not None
        model.config.save_pretrained(directory)
        if model.can_generate():
            model.generation_config.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        digests[MODEL_FILE] = snapshot.model_image.write(directory / MODEL_FILE)
    digests[TRAINER_TENSORS_FILE] = snapshot.trainer_image.write(directory / TRAINER_TENSORS_FILE)
    (directory / TRAINER_STATE_FILE).write_text(snapshot.trainer_state)
    return digests


def _distinct(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` less the names of tensors stored under an earlier name too (tied weights), as
    `save_pretrained` leaves them out; loading the first name fills the others."""
    distinct: dict[str, torch.Tensor] = {}
    seen: set[tuple[Any, ...]] = set()
    for name, tensor in state.items():
        view = _view_of(tensor)
        if view not in seen:
            seen.add(view)
            distinct[name] = tensor
    return distinct


def _model_state(model: PreTrainedModel) -> tuple[dict[str, torch.Tensor], list[str]]:
    """`model.state_dict()` (the live tensors) and the names of those that training changes.

    The others are frozen weights (a LoRA model's base): a snapshot can refer to them instead of
    copying them.
    """
    state = model.state_dict()
    frozen = {
        parameter.untyped_storage().data_ptr()
        for parameter in model.parameters()
        if not parameter.requires_grad
    }
    changing = [
        name for name, tensor in state.items() if tensor.untyped_storage().data_ptr() not in frozen
    ]
    return state, changing


@dataclass
class _Snapshot:
    """A checkpoint's state, taken between two steps, for `_write_snapshot`."""

    step: int
    metrics: dict[str, Any]
    trainer_state: str  # JSON
    trainer_image: SafetensorsImage  # the optimizer's tensors and RNG states
    model_image: SafetensorsImage | None = None  # a full model's weights
    adapter_state: dict[str, torch.Tensor] | None = None  # a LoRA model's state dict
    training_thread_seconds: float = 0.0  # what taking it cost the training thread


@dataclass(frozen=True)
class _TensorSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype
    pinned: bool  # page-locked host memory, for copies from a CUDA device


class _SnapshotMemory:
    """Host memory that a LoRA model's trained tensors are copied into for peft to save, kept
    from one checkpoint to the next.

    (A full model's weights go into a `SafetensorsImage` instead.) The memory holds one
    snapshot at a time: the writer must be done with one before the next is copied in.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, tuple[_TensorSpec, torch.Tensor]] = {}

    def copy(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Copies of `tensors` in this memory; tensors that share storage (tied weights) share
        their copy too, as `save_pretrained` expects."""
        import torch

        copies: dict[str, torch.Tensor] = {}
        seen: dict[tuple[Any, ...], torch.Tensor] = {}
        from_device = False
        for name, tensor in tensors.items():
            view = _view_of(tensor)
            if view not in seen:
                spec = _spec_of(tensor)
                seen[view] = self._buffer(name, spec).copy_(tensor, non_blocking=spec.pinned)
                from_device = from_device or spec.pinned
            copies[name] = seen[view]
        if from_device:
            torch.cuda.synchronize()
        return copies

    def _buffer(self, name: str, spec: _TensorSpec) -> torch.Tensor:
        import torch

        held = self._buffers.get(name)
        if held is None or held[0] != spec:
            buffer = torch.empty(spec.shape, dtype=spec.dtype, pin_memory=spec.pinned)
            held = self._buffers[name] = (spec, buffer)
        return held[1]


def _view_of(tensor: torch.Tensor) -> tuple[Any, ...]:
    return (
        tensor.device,
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        tensor.dtype,
    )


def _spec_of(tensor: torch.Tensor) -> _TensorSpec:
    return _TensorSpec(tuple(tensor.shape), tensor.dtype, pinned=tensor.device.type == "cuda")


class _CheckpointWriter:
    """Writes checkpoints on one background thread, one at a time, in the order submitted.

    `submit` hands a snapshot over to `write`; `wait` returns once the one in flight is done,
    raising its error. `submit` waits likewise first, so at most one checkpoint is in flight and
    a training thread that checkpoints faster than they are written waits (back-pressure).
    `raise_error` raises a failed write's error without waiting; `close` waits and ends the
    thread. Leaving the ``with`` block on an error waits too, and notes a write's error on it
    instead of raising it over the one already on its way.
    """

    def __init__(self, write: Callable[[_Snapshot], None]) -> None:
        self._write = write
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="checkpoint-writer",
            initializer=_lower_thread_priority,
        )
        self._pending: Future[None] | None = None
        # The last job's images, if this process kept them (see _SPARE_SNAPSHOT_BYTES).
        self.model_image = _spare_images.pop("model", SafetensorsImage())
        self.trainer_image = _spare_images.pop("trainer", SafetensorsImage())
        self.adapter_memory = _SnapshotMemory()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except BaseException as error:
            log.warning("a checkpoint write failed while training stopped on an error: %r", error)
            exc.add_note(f"a checkpoint being written failed too: {error!r}")

    def submit(self, snapshot: _Snapshot) -> None:
        self.wait()
        self._pending = self._executor.submit(self._write, snapshot)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def raise_error(self) -> None:
        if self._pending is not None and self._pending.done():
            self.wait()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True)
            if self.model_image.size + self.trainer_image.size <= _SPARE_SNAPSHOT_BYTES:
                _spare_images.update(model=self.model_image, trainer=self.trainer_image)


def _lower_thread_priority() -> None:
    """Lower the calling thread's CPU priority (Linux keeps one per thread; elsewhere a no-op)."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):
        niceness = max(os.getpriority(os.PRIO_PROCESS, thread), _WRITER_NICENESS)
        os.setpriority(os.PRIO_PROCESS, thread, niceness)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def _restore_checkpoint(
    directory: Path,
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    params: TrainingParams,
) -> _Progress:
    """Load weights, optimizer, scheduler and RNG states saved by `_write_snapshot`."""
    import numpy
    import torch
    from safetensors.torch import load_file

    state_path = directory / TRAINER_STATE_FILE
    if not state_path.is_file() or not (directory / TRAINER_TENSORS_FILE).is_file():
        raise InvalidParametersError(f"{directory} is not a checkpoint with trainer state")
    document = json.loads(state_path.read_text())
    if document["params_fingerprint"] != _params_fingerprint(params):
        raise InvalidParametersError(
            f"the checkpoint at step {document['step']} was taken with other training parameters"
        )
    _load_weights(directory, model)
    tensors = load_file(str(directory / TRAINER_TENSORS_FILE))
    optimizer_state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            optimizer_state.setdefault(int(index), {})[name] = tensor
    for index, values in document["optimizer_scalars"].items():
        optimizer_state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict(
        {"state": optimizer_state, "param_groups": document["optimizer_param_groups"]}
    )
    scheduler.load_state_dict({**document["scheduler"], "lr_lambdas": [None]})
    random.setstate(_tuples(document["rng_python"]))
    kind, keys, *rest = document["rng_numpy"]
    numpy.random.set_state((kind, numpy.array(keys, dtype=numpy.uint32), *rest))
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        cuda_states = [tensors[key] for key in sorted(tensors) if key.startswith("rng.cuda.")]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    first_loss = document["first_loss"]
    return _Progress(
        step=int(document["step"]),
        trained_tokens=int(document["trained_tokens"]),
        first_loss=math.nan if first_loss is None else float(first_loss),
    )


def _load_weights(directory: Path, model: PreTrainedModel) -> None:
    """Put the weights a checkpoint saved into `model` (built as `train` builds it)."""
    from safetensors.torch import load_file

    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        if not (directory / ADAPTER_FILE).is_file():
            raise InvalidParametersError(f"{directory} holds no LoRA adapter")
        result: Any = set_peft_model_state_dict(model, load_file(str(directory / ADAPTER_FILE)))
        if result.unexpected_keys:
            raise InvalidParametersError(
                f"the checkpoint's adapter does not fit the model: {result.unexpected_keys[:3]}"
            )
        return
    files = sorted(directory.glob("model*.safetensors"))
    if not files:
        raise InvalidParametersError(f"{directory} holds no model weights")
    weights: dict[str, torch.Tensor] = {}
    for path in files:
        weights.update(load_file(str(path)))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # Tied weights are saved once, under their first name (`_distinct`).
    state = model.state_dict()
    tied = set(state) - set(_distinct(state))
    if unexpected or set(missing) - tied:
        raise InvalidParametersError(
            f"the checkpoint's weights do not fit the model "
            f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    if tied:
        model.tie_weights()
