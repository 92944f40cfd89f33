"""LoRA through peft under a real (single-process, gloo) DeepSpeed engine: only adapters train, and the model
`save_model` writes reloads to exactly the trained function."""

from __future__ import annotations

import torch

from trainables.config import LoraConfig, ModelConfig, TinyModelConfig, TrainConfig
from trainables.engine.deepspeed_config import deepspeed_config
from trainables.engine.saving import save_model
from trainables.model.loading import load_causal_lm, load_tokenizer
from trainables.model.tiny import build_tiny_llama


def test_lora_trains_adapters_only_and_round_trips(tmp_path, single_process_group):
    import deepspeed

    texts = ["Question: who wrote it?\nAnswer: the author of many books"] * 20
    build_tiny_llama(TinyModelConfig(num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64,
                                     vocab_size=300), texts, tmp_path / "base", max_positions=64)
    cfg = ModelConfig(name_or_path=str(tmp_path / "base"), lora=LoraConfig(rank=4))
    model = load_causal_lm(str(tmp_path / "base"), cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)

    engine, *_ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
                                      config=deepspeed_config(TrainConfig(lr=1e-2), "fp32", 1))
    tokenizer = load_tokenizer(str(tmp_path / "base"))
    x = torch.randint(0, len(tokenizer), (2, 8), generator=torch.Generator().manual_seed(0))
    before = engine.module(input_ids=x).logits.detach()
    for _ in range(3):
        engine.backward(engine(input_ids=x, labels=x).loss)
        engine.step()
    save_model(engine, tokenizer, tmp_path / "out", rank=0)
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()

    reloaded = load_causal_lm(str(tmp_path / "out"), cfg, trainable=False).eval()
    with torch.no_grad():
        trained = engine.module.eval()(input_ids=x).logits
        again = reloaded(input_ids=x).logits
    assert not torch.allclose(trained, before)  # the adapters did change the model
    torch.testing.assert_close(again, trained)
