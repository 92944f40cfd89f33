"""Loading causal LMs and tokenizers: HF hub names, local directories, optional LoRA.

Weights are read and written as safetensors only; remote code runs only when the config says so explicitly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trainables.config import LoraConfig, ModelConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


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
