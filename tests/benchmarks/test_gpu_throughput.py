"""benchmarks/gpu_throughput.py: its FLOP count and peak table, and the whole script run on CPU on a tiny shape
(the GPU figures themselves need a GPU; this keeps the code that produces them working)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import gpu_throughput as gt


def test_model_flops_count_multiplying_parameters_and_attention():
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = gt.SHAPES["tiny"]
    model = LlamaForCausalLM(LlamaConfig(**shape))
    n = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    d, layers = shape["hidden_size"], shape["num_hidden_layers"]
    vocab, ff = shape["vocab_size"], shape["intermediate_size"]
    # by hand: per layer q,k,v,o (kv heads = heads here) + gate/up/down + 2 norms; final norm; untied lm_head
    assert n - emb == layers * (4 * d * d + 3 * d * ff + 2 * d) + d + vocab * d
    assert gt.model_flops_per_token(n, emb, shape, 128) == 6 * (n - emb) + 12 * layers * d * 128


def test_llama_1b_shape_is_about_a_billion_parameters():
    s = gt.SHAPES["llama-1b"]
    d, ff, layers, kv = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"], s["num_key_value_heads"]
    head = d // s["num_attention_heads"]
    n = layers * (2 * d * d + 2 * d * kv * head + 3 * d * ff + 2 * d) + d + 2 * s["vocab_size"] * d
    assert 1.0e9 < n < 1.2e9


@pytest.mark.parametrize("name,override,expected", [
    ("NVIDIA H100 80GB HBM3", None, 989.4), ("NVIDIA H200", None, 989.4), ("NVIDIA A100-SXM4-80GB", None, 312.0),
    ("Some Future GPU", None, None), ("Some Future GPU", 500.0, 500.0), (None, None, None),
])
def test_peak_tflops_by_name_or_override(name, override, expected):
    assert gt.peak_tflops(name, override) == expected


def test_script_runs_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_throughput", "--shape", "tiny", "--device", "cpu",
                           "--stages", "3", "--batch", "2", "--length", "16", "--steps", "2", "--rounds", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())["results"]["zero3"]
    assert set(res["median_tokens_per_s"]) == {"off", "on"} and all(v > 0 for v in res["median_tokens_per_s"].values())
    assert res["mfu"] is None and res["cuda_peak_allocated_mib"] is None  # no GPU, no made-up figures
    assert "ZeRO-3 CLReg on/off step time" in proc.stdout
