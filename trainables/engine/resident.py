"""What a worker process keeps between the runs it serves: the tokenizer, the benchmark and its tokenised sets, the
reference model and the starting model's weights.

A warm slot (`trainables.engine.slot_worker`) keeps one `Resident` for its life, so trial after trial reads
nothing from disk; a cold Ray Train run makes a new one that keeps nothing. Both load through here, in the same
order and with the same calls, which is what makes a trial in a warm slot train bit for bit like a cold one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from trainables.config import ModelConfig
from trainables.model.loading import add_lora, load_causal_lm, load_tokenizer

T = TypeVar("T")


@dataclass
class Resident:
    """Values built once per key and handed out again (`keep`), or built on every call (a cold run).

    Attributes:
        keep: keep what is built (a warm slot's worker) or not (a cold run: nothing outlives the run).
    """

    keep: bool = False
    _values: dict[tuple, Any] = field(default_factory=dict)

    def get(self, key: tuple, build: Callable[[], T]) -> T:
        """The value kept under `key`, built by `build` the first time (every time when not `keep`)."""
        if not self.keep:
            return build()
        if key not in self._values:
            self._values[key] = build()
        return self._values[key]

    def tokenizer(self, model_dir: str, trust_remote_code: bool):
        return self.get(("tokenizer", model_dir, trust_remote_code),
                        lambda: load_tokenizer(model_dir, trust_remote_code))

    def trainable_model(self, model_dir: str, cfg: ModelConfig):
        """The starting model to train, with LoRA adapters when configured: loaded from disk, or a copy of the
        weights this process already holds in host memory.

        The copy is taken before the adapters are added, so their (seeded) initialisation draws from the global
        generator exactly as after a load from disk (which draws nothing). A folder holding a peft adapter is
        always loaded from disk: its adapter is part of what is trained.
        """
        if not self.keep or (Path(model_dir) / "adapter_config.json").is_file():
            return load_causal_lm(model_dir, cfg, trainable=True)
        plain = cfg.model_copy(update={"lora": None})
        base = self.get(("model", model_dir, plain.model_dump_json()),
                        lambda: load_causal_lm(model_dir, plain, trainable=True))
        model = copy.deepcopy(base)
        return add_lora(model, cfg.lora) if cfg.lora is not None else model
