"""Loading causal LMs and tokenizers: HF hub names, local directories, optional LoRA.

Weights are read and written as safetensors only; remote code runs only when the config says so explicitly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from trainables.config import LoraConfig, ModelConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# One of these makes a tokenizer `AutoTokenizer` can load: the fast tokenizer, a sentencepiece model, BPE/WordPiece
# vocabularies.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")
HUB_TIMEOUT_S = 5.0
MODULES_SHOWN = 8


class ModelError(ValueError):
    """The configured model cannot be found or loaded."""


def check_model_source(name_or_path: str) -> None:
    """Fail fast on a local path that does not exist (a hub name is checked when it is loaded).

    A string that looks like a path (starts with '/', '.', '~' or contains the OS separator more than once) but
    does not exist is reported here, before any Ray worker starts, rather than as a hub 404 minutes later.
    """
    looks_local = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1
    if looks_local and not Path(name_or_path).expanduser().is_dir():
        raise ModelError(
            f"model.name_or_path {name_or_path!r} does not exist; allowed: 'tiny-llama', an HF hub name "
            "(org/name) or an existing local directory"
        )


def check_model_folder(folder: Path, field: str, trust_remote_code: bool, files: bool = True) -> Any:
    """The model in `folder` checked without reading its weights; returns its transformers config.

    `config.json` must parse and name a `model_type` transformers knows (or, with `trust_remote_code`, map its own
    classes in `auto_map`); with `files`, safetensors weights and tokenizer files must be there. A pickle
    `pytorch_model.bin` is never read (unpickling runs arbitrary code), so a folder with only that is refused.

    Raises:
        ModelError: naming `field`, the folder or file, and what to fix.
    """
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    where = f"{field} {str(folder)!r}"
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{where}: no config.json: not a saved transformers model (save_pretrained writes one)")
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{where}: {config_file} is not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: {config_file} holds a {type(raw).__name__}, not a mapping of config fields")
    model_type = raw.get("model_type")
    custom = trust_remote_code and "auto_map" in raw
    if not custom and model_type not in CONFIG_MAPPING:
        known = ", ".join(t for t in ("llama", "mistral", "qwen2", "gemma", "phi3", "gpt2") if t in CONFIG_MAPPING)
        raise ModelError(f"{where}: {config_file}: model_type {_short(model_type)} is not known to transformers; "
                         f"allowed: a transformers model type (e.g. {known}), or model.trust_remote_code: true with "
                         "the model's own code mapped in auto_map")
    if files:
        _check_weight_files(folder, where, field)
        if not any((folder / name).is_file() for name in TOKENIZER_FILES):
            raise ModelError(f"{where}: no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); save the "
                             "tokenizer beside the model (tokenizer.save_pretrained)")
    try:
        return AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except Exception as e:  # any config class's own validation: the file is the user's input
        raise ModelError(f"{where}: {config_file} does not load: {_first_line(e)}") from None


def _check_weight_files(folder: Path, where: str, field: str) -> None:
    """Safetensors weights (one file, or an index whose shards are all there); a pickle-only folder is refused."""
    index = folder / SAFETENSORS_FILES[1]
    if (folder / SAFETENSORS_FILES[0]).is_file():
        return
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelError(f"{where}: {index} is not a safetensors index (no weight_map: {_first_line(e)})") from None
        missing = sorted(name for name in shards if not (folder / name).is_file())
        if missing:
            raise ModelError(f"{where}: {index} lists {len(missing)} shard(s) that are not there: "
                             f"{', '.join(missing[:3])}")
        return
    pickled = [name for name in PICKLE_FILES if (folder / name).is_file()]
    if pickled:
        raise ModelError(f"{where}: weights are read as safetensors only, and it holds {pickled[0]} (a pickle, "
                         "which can run code when loaded: it was not opened); convert it where you trust the file "
                         "(load it, then save_pretrained(..., safe_serialization=True)) and point "
                         f"{field} at the result")
    raise ModelError(f"{where}: no weights: expected {' or '.join(SAFETENSORS_FILES)}")


def hub_offline() -> bool:
    """Whether the Hugging Face hub must not be asked: HF_HUB_OFFLINE as set now (huggingface_hub reads it once,
    when first imported)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"} or constants.HF_HUB_OFFLINE


def hub_snapshot(repo_id: str, field: str) -> Path | None:
    """The local Hugging Face cache's folder of hub model `repo_id` when its config.json is cached, else None once
    one short request (`HUB_TIMEOUT_S`, no retries) found the model on the hub.

    Raises:
        ModelError: not cached and the hub cannot be reached or has no such model, in one line (never the HTTP
            client's traceback).
    """
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    where = f"{field} {repo_id!r}"
    try:
        cached = try_to_load_from_cache(repo_id, "config.json")
    except HFValidationError as e:
        raise ModelError(f"{where} is not an existing local directory nor a hub name (org/name): "
                         f"{_first_line(e)}") from None
    if isinstance(cached, str):
        return Path(cached).parent
    fix = f"download it and point {field} at the folder"
    if hub_offline():
        raise ModelError(f"{where}: not in the local Hugging Face cache and the hub cannot be reached "
                         f"(HF_HUB_OFFLINE is set); {fix}")
    try:
        HfApi().model_info(repo_id, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        raise ModelError(f"{where}: a gated model: accept its terms on the hub and log in (hf auth login), or "
                         f"{fix}") from None
    except RepositoryNotFoundError:
        raise ModelError(f"{where}: no such model on the Hugging Face hub (nor a local directory; a private one "
                         "needs hf auth login)") from None
    except Exception as e:  # connection refused, DNS, timeout, proxy: all mean the hub cannot be reached
        raise ModelError(f"{where}: not in the local Hugging Face cache and the hub cannot be reached "
                         f"({type(e).__name__}: {_first_line(e)}); {fix}") from None
    return None


def meta_model(config: Any, field: str, trust_remote_code: bool):
    """The causal LM `config` describes, built on the meta device: its architecture and module names, no weights
    read and no memory spent.

    Raises:
        ModelError: transformers cannot build a causal LM from it (no such head, inconsistent shapes).
    """
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as e:  # the architecture's own checks, whatever their type
        raise ModelError(f"{field}: the model does not build as a causal LM from its config.json "
                         f"({type(e).__name__}: {_first_line(e)})") from None


def check_lora_targets(model, lora: LoraConfig) -> None:
    """Every `model.lora.target_modules` entry names modules of `model` the way peft matches them (the full module
    name or its last dotted parts), so a typo is refused here rather than by peft inside a worker.

    Raises:
        ModelError: naming the entries that match nothing and a few module names that exist.
    """
    names = [name for name, _ in model.named_modules() if name]
    missing = [t for t in lora.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and not list(m.children())})
        raise ModelError(f"model.lora.target_modules: {', '.join(map(repr, missing))} match no module of the model; "
                         f"its modules include: {', '.join(leaves[:MODULES_SHOWN])}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """Load a tokenizer and give it a pad token (the EOS token) when it has none, as batching needs one."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str, cfg: ModelConfig, trainable: bool = True):
    """Load `path` with `AutoModelForCausalLM` in the configured dtype, adding LoRA adapters when configured.

    A directory holding a saved peft adapter (`adapter_config.json`) is loaded as base model + adapter, so a
    trial's LoRA output is evaluated the same way as a full model.
    """
    from transformers import AutoModelForCausalLM

    kwargs = dict(dtype=DTYPES[cfg.dtype], trust_remote_code=cfg.trust_remote_code, use_safetensors=True)
    if (Path(path) / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(path, is_trainable=trainable, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        if cfg.lora is not None and trainable:
            model = add_lora(model, cfg.lora)
    model.config.use_cache = False
    return model


def add_lora(model, cfg: LoraConfig):
    """Wrap `model` with peft LoRA adapters; only the adapters are trained."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_cfg = PeftLoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_cfg)


def decoder_parts(model):
    """The decoder-layer `ModuleList` and final norm of a (possibly peft-wrapped) HF causal LM.

    CLReg's dropout view re-runs decoder layers by hand, and the metrics count layers; both go through here.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    return decoder.layers, getattr(decoder, "norm", None)


def num_layers(model) -> int:
    """Number of decoder layers of `model`."""
    return len(decoder_parts(model)[0])
