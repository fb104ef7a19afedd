"""Can a checkpoint be loaded? Each problem in one line naming the file and the key, where
`from_pretrained` fails deep inside transformers; milliseconds (no tensor is read).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from detr_core.files.builtin_models import is_builtin, resolve_checkpoint
from detr_core.files.errors import UserInputError
from detr_core.files.file_io import read_user_text
from detr_core.model.families import FAMILIES

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
PYTORCH_FILE = "pytorch_model.bin"
PREPROCESSOR_FILE = "preprocessor_config.json"


def check_checkpoint(checkpoint: str, key: str = "model.checkpoint") -> None:
    """`UserInputError` naming the file and `key` when `checkpoint` cannot be loaded."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if is_builtin(checkpoint):
        check_model_folder(Path(resolve_checkpoint(checkpoint)), key)
        return
    folder = Path(checkpoint).expanduser()
    try:  # a Hub repo id (`facebook/detr-resnet-50`) unless it can be a local folder
        validate_repo_id(checkpoint)
        hub_name = not (checkpoint.startswith((".", "/", "~")) or folder.exists())
    except HFValidationError:
        hub_name = False
    if not hub_name:
        if not folder.exists():
            raise UserInputError("local model folder not found", source=folder.absolute(),
                                 key=key)
        check_model_folder(folder, key)
        return
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(checkpoint, CONFIG_FILE)
    if isinstance(cached, str):
        check_model_folder(Path(cached).parent, key)
    elif constants.HF_HUB_OFFLINE:
        raise UserInputError(
            f"{checkpoint!r} is not a local folder (no {Path(checkpoint).absolute()}) and not "
            "a Hugging Face Hub model in the local cache, and the Hub is offline "
            "(HF_HUB_OFFLINE=1): give a local save_pretrained folder or download it first",
            key=key)


def check_model_folder(folder: Path, key: str | None = None) -> None:
    """A `save_pretrained` folder of a supported DETR-family model, its files whole."""
    folder = Path(folder)
    if not folder.exists():
        raise UserInputError("model folder not found", source=folder, key=key)
    if not folder.is_dir():
        raise UserInputError("not a folder (a save_pretrained model folder is expected)",
                             source=folder, key=key)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise UserInputError(f"not a save_pretrained model folder (no {CONFIG_FILE})",
                             source=folder, key=key)
    config = _read_json(config_path, key)
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in FAMILIES:
        raise UserInputError(f"describes a {model_type!r} model, not a supported DETR-family "
                             f"detector (model_type must be one of {', '.join(FAMILIES)})",
                             source=config_path, key=key)
    if (folder / PREPROCESSOR_FILE).is_file():
        _read_json(folder / PREPROCESSOR_FILE, key)
    for weights in _weight_files(folder, key):
        _check_weights(weights, key)


def _read_json(path: Path, key: str | None) -> object:
    try:
        return json.loads(read_user_text(path))
    except json.JSONDecodeError as exc:
        raise UserInputError(f"not valid JSON (line {exc.lineno}, column {exc.colno}): "
                             f"{exc.msg}", source=path, key=key) from None
    except UserInputError as exc:
        raise UserInputError(exc.problem, source=path, key=key) from None


def _weight_files(folder: Path, key: str | None) -> list[Path]:
    """The weight files `from_pretrained` would read, in its order of preference."""
    if (folder / SAFETENSORS_FILE).is_file():
        return [folder / SAFETENSORS_FILE]
    index = folder / SAFETENSORS_INDEX_FILE
    if index.is_file():
        data = _read_json(index, key)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise UserInputError("has no `weight_map`", source=index, key=key)
        shards = [folder / str(name) for name in sorted(set(weight_map.values()))]
        for shard in shards:
            if not shard.is_file():
                raise UserInputError(f"names {shard.name}, which is missing", source=index,
                                     key=key)
        return shards
    if (folder / PYTORCH_FILE).is_file():
        return [folder / PYTORCH_FILE]
    raise UserInputError(f"no model weights ({SAFETENSORS_FILE}, {SAFETENSORS_INDEX_FILE} or "
                         f"{PYTORCH_FILE})", source=folder, key=key)


def _check_weights(path: Path, key: str | None) -> None:
    if path.suffix == ".bin":
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise UserInputError(f"corrupt PyTorch weights file: {exc}", source=path,
                                 key=key) from None
        return
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError) as exc:
        detail = " ".join(str(exc).split())
        size = path.stat().st_size if path.exists() else 0
        raise UserInputError(f"corrupt or truncated safetensors file ({size} bytes): {detail}",
                             source=path, key=key) from None
