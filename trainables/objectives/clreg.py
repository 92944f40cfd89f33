"""CLReg: a contrastive regularizer on sequence representations (Tang & Khanna, "From Logits to Latents",
https://arxiv.org/abs/2601.22028).

Forget sequences are the anchors; their positives are a second (dropout or paraphrase) view of the same sequence;
the retain sequences of the same step are the negatives. Pulling each forget representation towards its own view and
away from the retain representations separates forget from retain at the target layer, so that unlearning the
forget set disturbs the retain set less (Proposition 3.2: a gradient step on the loss lowers the anchor-negative
similarity). Representations are passed raw (mean-pooled hidden states, see `trainables.model.layers.mean_pool`)
and L2-normalised here, so `s(a, b)` is the cosine similarity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLREG_FORMS = ("dpo", "infonce")


def clreg_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, tau: float, form: str = "dpo"
) -> torch.Tensor:
    """Contrastive loss of anchors against their positives and a shared set of negatives.

    - `dpo` (default): `mean_{i,j} -2 * tau * log sigma((s(a_i, p_i) - s(a_i, n_j)) / tau)`, a DPO-style pairwise
      margin between each positive and each negative; when all similarities are equal it is `2 * tau * log 2`.
    - `infonce`: `mean_i -log(e^{s(a_i,p_i)/tau} / (e^{s(a_i,p_i)/tau} + sum_j e^{s(a_i,n_j)/tau}))`, computed as a
      log-sum-exp so small tau cannot overflow.

    Computed in fp32 whatever the input dtype (bf16 cosine similarities are too coarse for small tau).

    Args:
        anchor: `[B, D]` raw anchor representations (forget sequences).
        positive: `[B, D]` raw positives, row i a view of anchor i.
        negatives: `[N, D]` raw negatives (retain sequences), N >= 1, shared by every anchor.
        tau: temperature, > 0.
        form: "dpo" or "infonce".

    Returns:
        Scalar fp32.

    Raises:
        ValueError: for an unknown form, tau <= 0, no negatives, or mismatched shapes.
    """
    if form not in CLREG_FORMS:
        raise ValueError(f"unknown CLReg form {form!r}; allowed: {', '.join(CLREG_FORMS)}")
    if tau <= 0:
        raise ValueError(f"CLReg temperature tau must be > 0, got {tau}")
    if anchor.ndim != 2 or anchor.shape != positive.shape:
        raise ValueError(f"anchor and positive must both be [B, D], got {tuple(anchor.shape)}, {tuple(positive.shape)}")
    if negatives.ndim != 2 or negatives.shape[1] != anchor.shape[1] or negatives.shape[0] == 0:
        raise ValueError(
            f"negatives must be [N, D] with N >= 1 and D = {anchor.shape[1]}, got {tuple(negatives.shape)}"
        )
    a = F.normalize(anchor.float(), dim=-1)
    p = F.normalize(positive.float(), dim=-1)
    n = F.normalize(negatives.float(), dim=-1)
    s_pos = (a * p).sum(dim=-1)  # [B]
    s_neg = a @ n.T  # [B, N]
    if form == "dpo":
        return (-2.0 * tau * F.logsigmoid((s_pos.unsqueeze(1) - s_neg) / tau)).mean()
    logits = torch.cat([s_pos.unsqueeze(1), s_neg], dim=1) / tau  # [B, 1 + N]
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def clreg_term(
    z_forget: torch.Tensor,
    z_forget_pos: torch.Tensor,
    z_retain: torch.Tensor,
    tau: float,
    form: str,
    symmetric: bool = False,
    z_retain_pos: torch.Tensor | None = None,
) -> torch.Tensor:
    """`L_CL` as configured: forget anchors against retain negatives, optionally symmetrised.

    Symmetric: `0.5 * (L(f, f+, r) + L(r, r+, f))`, which also pulls each retain sequence towards its own view and
    away from the forget set.

    Args:
        z_forget: `[B_f, D]` forget representations (anchors).
        z_forget_pos: `[B_f, D]` their positive views.
        z_retain: `[B_r, D]` retain representations (negatives).
        tau: temperature, > 0.
        form: "dpo" or "infonce".
        symmetric: add the retain-anchored direction.
        z_retain_pos: `[B_r, D]` positive views of the retain sequences; required iff `symmetric`.

    Returns:
        Scalar fp32.

    Raises:
        ValueError: when `z_retain_pos` is missing for the symmetric variant or given without it (it would be
            computed for nothing), and as `clreg_loss`.
    """
    if symmetric != (z_retain_pos is not None):
        raise ValueError("z_retain_pos is required by, and only used by, the symmetric CLReg variant")
    forward = clreg_loss(z_forget, z_forget_pos, z_retain, tau, form)
    if not symmetric:
        return forward
    return 0.5 * (forward + clreg_loss(z_retain, z_retain_pos, z_forget, tau, form))


def dropout_view(h: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """A dropout-augmented view of hidden states: inverted dropout with an explicitly drawn mask.

    `h * m / (1 - p)` with `m = (u >= p)`, `u ~ U[0, 1)` of `h`'s shape, so `E[view] = h`. Llama has no hidden-state
    dropout, so the positive view is made by hand; the mask is drawn from `generator` (not the global RNG) so the
    same generator state and shape give the same view on every run, independently of what else consumed random
    numbers (for a view that does not depend on the data-parallel layout, seed the generator per micro-batch index,
    as `trainables.engine.schedule.view_generator` does). The mask is drawn on the generator's device and moved to
    `h`'s, so a CPU generator gives the same view on CPU and GPU; the uniforms are fp32, also for bf16 `h`, so `p`
    is not quantised.

    Args:
        h: hidden states, any shape (e.g. `[B, L, D]`).
        p: drop probability in [0, 1); 0 returns `h` itself.
        generator: RNG on any device (a CPU one is reproducible across devices), or None for the global RNG of
            `h`'s device.

    Returns:
        Tensor of `h`'s shape and dtype.

    Raises:
        ValueError: for p outside [0, 1).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {p}")
    if p == 0.0:
        return h
    device = generator.device if generator is not None else h.device
    keep = torch.rand(h.shape, generator=generator, device=device, dtype=torch.float32) >= p
    return h * keep.to(device=h.device, dtype=h.dtype) / (1.0 - p)
