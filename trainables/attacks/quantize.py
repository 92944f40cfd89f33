"""Round-to-nearest (RTN) weight quantization: the cheapest quantization attack on an unlearned model.

arXiv 2410.16454 ("Does your LLM truly unlearn?") shows that quantizing an unlearned model's weights to 4 bits
brings much of the forgotten knowledge back: unlearning with a small learning rate moves the weights by less than
one quantization step, so rounding snaps them back to the target's grid. RTN is the simplest of the quantizers
it uses, needs no calibration data and no GPU kernels (here it simulates quantization: weights are rounded to the
grid and stored dequantized in the model's dtype), so CPU and GPU runs give the same attack.
"""

from __future__ import annotations

import torch


def quantize_rtn(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """`w` rounded to a `bits`-bit asymmetric min-max grid per group of `group_size` consecutive elements along the
    last (input) dimension, dequantized.

    Per group: `scale = (max - min) / (2**bits - 1)`, `q = clamp(round((x - min) / scale), 0, 2**bits - 1)`,
    `x' = min + q * scale`. The offset is the group's minimum itself rather than an integer zero point, so the
    grid spans exactly [min, max] and every element moves by at most half a step (`scale / 2`); a constant group
    (`scale = 0`) is returned exactly. A last group shorter than `group_size` is padded with its own last element,
    which leaves its min and max unchanged. Computed in float32, returned in `w`'s dtype and shape.

    Args:
        w: `[..., in]`, any floating dtype.
        bits: grid of `2**bits` levels, >= 1.
        group_size: elements sharing one scale and offset, >= 1.
    """
    if bits < 1 or group_size < 1:
        raise ValueError(f"bits and group_size must be >= 1, got bits={bits}, group_size={group_size}")
    shape, width = w.shape, w.shape[-1]
    x = w.detach().to(torch.float32).reshape(-1, width)
    pad = -width % group_size
    if pad:
        x = torch.cat([x, x[:, -1:].expand(-1, pad)], dim=1)
    groups = x.reshape(x.shape[0], -1, group_size)
    lo = groups.amin(dim=-1, keepdim=True)
    scale = (groups.amax(dim=-1, keepdim=True) - lo) / (2**bits - 1)
    q = torch.round((groups - lo) / torch.where(scale > 0, scale, torch.ones_like(scale)))
    deq = lo + q.clamp_(0, 2**bits - 1) * scale
    return deq.reshape(x.shape[0], -1)[:, :width].reshape(shape).to(w.dtype)


@torch.no_grad()
def quantize_model_(model: torch.nn.Module, bits: int, group_size: int) -> int:
    """Quantize, in place, the weight of every `torch.nn.Linear` of `model` except the output head; how many
    tensors were quantized.

    These are the weights GPTQ, AWQ and bitsandbytes quantize, and the ones arXiv 2410.16454 attacks: the decoder
    layers' projections. Biases, norms and the token embeddings stay in 16 bits or more in all of them, and so
    does the LM head (`get_output_embeddings()`), which they skip by default; with tied embeddings (the tiny
    Llama) it is the embedding matrix itself. `bits >= 16` returns 0 and changes nothing: the weights are stored
    at 16 bits or more already, so a 16-bit grid is no attack.
    """
    if bits >= 16:
        return 0
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    count = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            module.weight.copy_(quantize_rtn(module.weight, bits, group_size))
            count += 1
    return count
