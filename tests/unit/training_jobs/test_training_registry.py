import hashlib
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from training_jobs.errors import InvalidParametersError, ModelRegistryError, UnknownModelError
from training_jobs.registry import (
    ModelRegistry,
    count_parameters,
    register_directory,
    resolve,
    weights_sha256,
)
from training_jobs.tokenization import build_byte_tokenizer


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models") / "tiny-llama"
    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_a_registered_directory_records_what_a_job_needs(tiny_model_dir: Path) -> None:
    models_dir = tiny_model_dir.parent

    entry = register_directory(
        models_dir, name="tiny-llama", path=tiny_model_dir, license="apache-2.0"
    )

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    weights = (tiny_model_dir / "model.safetensors").read_bytes()
    assert entry.name == "tiny-llama"
    assert entry.path == "tiny-llama"  # inside the registry folder: stored relative, movable
    assert entry.architecture == "LlamaForCausalLM"
    assert entry.parameters == sum(p.numel() for p in model.parameters())
    assert entry.weights_sha256 == hashlib.sha256(weights).hexdigest()
    assert entry.license == "apache-2.0"
    assert resolve("tiny-llama", models_dir=models_dir) == tiny_model_dir
    stored = json.loads((models_dir / "registry.json").read_text())
    assert stored["models"][0]["weights_sha256"] == entry.weights_sha256


def test_registering_again_replaces_the_entry(tmp_path: Path, tiny_model_dir: Path) -> None:
    registry = ModelRegistry(tmp_path)

    registry.register(name="base", path=tiny_model_dir, license="mit")
    registry.register(name="base", path=tiny_model_dir, license="apache-2.0", source="operator")
    registry.register(name="another", path=tiny_model_dir, license="mit")

    assert [entry.name for entry in registry.entries()] == ["another", "base"]
    assert registry.get("base").license == "apache-2.0"
    assert registry.get("base").path == str(tiny_model_dir.resolve())  # outside: absolute


def test_an_unknown_model_is_a_parameter_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="'gpt-17'") as caught:
        resolve("gpt-17", models_dir=tmp_path)

    assert isinstance(caught.value, InvalidParametersError)


def test_pickled_weights_are_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    directory = tmp_path / "pickled"
    directory.mkdir()
    (directory / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    (directory / "pytorch_model.bin").write_bytes(b"not loaded, ever")

    with pytest.raises(ModelRegistryError, match=r"pickled weights \['pytorch_model.bin'\]"):
        register_directory(tmp_path, name="pickled", path=directory, license="mit")
    assert not (tmp_path / "registry.json").exists()


@pytest.mark.parametrize(
    ("name", "problem"),
    [("../escape", "is not a model name"), ("ok-name", "does not exist")],
)
def test_bad_names_and_missing_directories_are_refused(
    tmp_path: Path, name: str, problem: str
) -> None:
    with pytest.raises(ModelRegistryError, match=problem):
        register_directory(tmp_path, name=name, path=tmp_path / "nothing", license="mit")


def test_a_directory_without_weights_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())

    with pytest.raises(ModelRegistryError, match="no safetensors weights"):
        register_directory(tmp_path, name="empty", path=tmp_path, license="mit")


def test_a_corrupt_registry_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "registry.json").write_text('{"models": [{"name": 3}]}')

    with pytest.raises(ModelRegistryError, match="is not valid"):
        ModelRegistry(tmp_path).entries()


def test_sharded_weights_hash_their_manifest(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = (tiny_model_dir / "model.safetensors").read_bytes()
    for shard in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        (tmp_path / shard).write_bytes(data)

    digest = hashlib.sha256(data).hexdigest()
    manifest = (
        f"model-00001-of-00002.safetensors {digest}\nmodel-00002-of-00002.safetensors {digest}\n"
    )
    assert weights_sha256(tmp_path) == hashlib.sha256(manifest.encode()).hexdigest()
    assert count_parameters(tmp_path) == 2 * count_parameters(tiny_model_dir)
