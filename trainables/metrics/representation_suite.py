"""Representation metrics at the CLReg target layer (and per layer), as registered `METRICS`.

Entanglement compares forget with the retain eval set (`EvalContext.retain_split`); the probe compares forget with
holdout, both never-seen-by-the-probe sets, so its accuracy measures what the representation still encodes about
membership. Representations of every layer come from one forward pass per set (`EvalContext.representations`), and
each layer's entanglement is computed once and shared by the three scalar metrics and the profile. MISSING when a
set has fewer than 2 items. Same under both `eval.definitions`.
"""

from __future__ import annotations

from trainables.metrics.registry import EvalContext, MetricResult, metric, missing
from trainables.metrics.representation import entanglement, probe_recoverability

BOTH = ("tofu", "muse")


def _too_small(ctx: EvalContext, first: str, second: str) -> MetricResult | None:
    """MISSING with a reason unless both sets have at least 2 items (a covariance and a probe need 2), else None."""
    sizes = {split: len(ctx.examples(split)) for split in (first, second)}
    if min(sizes.values()) >= 2:
        return None
    have = ", ".join(f"{split} {n}" for split, n in sizes.items())
    return missing(f"needs at least 2 items in each of {first} and {second} in {ctx.source()}; has {have}")


def _entanglement(ctx: EvalContext, layer: int) -> dict | MetricResult:
    """`representation.entanglement` of forget vs retain at `layer`; MISSING when a set is too small."""
    retain = ctx.retain_split()
    if (small := _too_small(ctx, "forget", retain)) is not None:
        return small
    return ctx.cached(("entanglement", layer), lambda: entanglement(
        ctx.representations("forget")[layer], ctx.representations(retain)[layer]))


def _at_target(ctx: EvalContext, key: str) -> MetricResult:
    values = _entanglement(ctx, ctx.target_layer)
    return values if isinstance(values, MetricResult) else MetricResult(values[key])


@metric("entanglement_variance", BOTH, direction="min")
def entanglement_variance(ctx: EvalContext) -> MetricResult:
    """Variance-based entanglement at the target layer (lower = less entangled; inf when the means coincide)."""
    return _at_target(ctx, "variance")


@metric("entanglement_mk_mmd", BOTH, direction="max")
def entanglement_mk_mmd(ctx: EvalContext) -> MetricResult:
    """Multi-kernel MMD^2 (biased) between forget and retain at the target layer (higher = more separated)."""
    return _at_target(ctx, "mk_mmd")


@metric("entanglement_w2", BOTH, direction="max")
def entanglement_w2(ctx: EvalContext) -> MetricResult:
    """Squared W2 between Gaussian fits of forget and retain at the target layer (higher = more separated)."""
    return _at_target(ctx, "w2")


@metric("entanglement_profile", BOTH)
def entanglement_profile(ctx: EvalContext) -> MetricResult:
    """Entanglement at every layer, only with `cfg.layer_profile` (MISSING otherwise).

    Not a scalar: `value` is always None and `per_item` holds one `{"layer", "variance", "mk_mmd", "w2"}` dict per
    decoder layer, bottom to top.
    """
    if not ctx.cfg.layer_profile:
        return missing("eval.layer_profile is false")
    if isinstance(small := _entanglement(ctx, ctx.target_layer), MetricResult):
        return small
    return MetricResult(None, [{"layer": layer, **_entanglement(ctx, layer)} for layer in ctx.layers()])


@metric("probe_recoverability", BOTH, direction="min")
def probe_recoverability_metric(ctx: EvalContext) -> MetricResult:
    """Cross-validated accuracy of a linear probe telling forget from holdout at the target layer."""
    if (small := _too_small(ctx, "forget", "holdout")) is not None:
        return small
    layer = ctx.target_layer
    return MetricResult(probe_recoverability(ctx.representations("forget")[layer],
                                             ctx.representations("holdout")[layer]))
