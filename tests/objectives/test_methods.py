"""Each base method's forget loss and the retain losses against values worked out from `handmade`."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.objectives import (
    SequenceOutputs,
    ceu,
    gradascent,
    graddiff,
    npo,
    pdu,
    satimp,
    simnpo,
    undial,
    wga,
)
from trainables.objectives.retain import retain_loss

from .handmade import ANSWER, LABELS, LOGITS, REF_LOGITS, log_sigmoid, log_softmax, scramble_ignored, seq_nll, softmax


def mean_answer_nll(logits: torch.Tensor) -> float:
    sums, counts = seq_nll(logits)
    return sum(sums) / sum(counts)


def answer_probability(logits: torch.Tensor, row: int, pos: int, target: int) -> float:
    return softmax(logits[row, pos].tolist())[target]


def assert_descent_lowers_the_answer_tokens(loss_fn, params: dict, scored: list[tuple[int, int, int]]) -> None:
    """A gradient step on the logits lowers each scored answer logit and raises the others at that position (so the
    answer's probability falls), and leaves every unscored position alone."""
    logits = LOGITS.clone().requires_grad_(True)
    loss_fn(SequenceOutputs(logits, LABELS), params).backward()
    grad = logits.grad
    for row, pos, target in scored:
        others = [v for v in range(grad.shape[-1]) if v != target]
        assert grad[row, pos, target] > 0 and all(grad[row, pos, v] < 0 for v in others)
    scored_positions = {(row, pos) for row, pos, _ in scored}
    for row in range(grad.shape[0]):
        for pos in range(grad.shape[1]):
            if (row, pos) not in scored_positions:
                assert torch.equal(grad[row, pos], torch.zeros(grad.shape[-1]))


def test_gradascent_is_negated_mean_nll():
    loss = gradascent.forget_loss(SequenceOutputs(LOGITS, LABELS), {"gamma": 1.0})
    assert loss.item() == pytest.approx(-mean_answer_nll(LOGITS), rel=1e-6)


def test_graddiff_forget_term_is_gradascent():
    params = {"gamma": 1.0, "alpha": 1.0}
    out = SequenceOutputs(LOGITS, LABELS)
    assert graddiff.forget_loss(out, params).item() == gradascent.forget_loss(out, params).item()


def test_npo_by_hand():
    beta = 0.1
    s_theta, _ = seq_nll(LOGITS)
    s_ref, _ = seq_nll(REF_LOGITS)
    r = [sr - st for sr, st in zip(s_ref, s_theta)]
    expected = -(2 / beta) * sum(log_sigmoid(-beta * ri) for ri in r) / 2
    loss = npo.forget_loss(SequenceOutputs(LOGITS, LABELS, REF_LOGITS), {"beta": beta})
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_npo_at_the_reference_is_two_over_beta_log_two():
    beta = 0.5
    loss = npo.forget_loss(SequenceOutputs(LOGITS, LABELS, LOGITS.clone()), {"beta": beta})
    assert loss.item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)


def test_npo_does_not_backpropagate_into_the_reference():
    ref = REF_LOGITS.clone().requires_grad_(True)
    logits = LOGITS.clone().requires_grad_(True)
    npo.forget_loss(SequenceOutputs(logits, LABELS, ref), {"beta": 0.1}).backward()
    assert ref.grad is None and logits.grad is not None


def test_npo_without_reference_names_the_missing_input():
    with pytest.raises(ValueError, match="npo needs ref_logits"):
        npo.forget_loss(SequenceOutputs(LOGITS, LABELS), {"beta": 0.1})


def test_simnpo_by_hand():
    beta, delta = 4.5, 0.3
    sums, counts = seq_nll(LOGITS)
    a = [s / n - delta for s, n in zip(sums, counts)]
    expected = -(2 / beta) * sum(log_sigmoid(beta * ai) for ai in a) / 2
    loss = simnpo.forget_loss(SequenceOutputs(LOGITS, LABELS), {"beta": beta, "delta": delta})
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_simnpo_normalises_by_answer_length():
    # Row 0 has one answer token, row 1 four, all predicted from the same logits: equal per-token NLL x, so
    # a_0 = a_1 = x - delta whatever the lengths (NPO's summed NLL would differ by a factor of four).
    z = [0.3, -1.2, 2.0]
    logits = torch.tensor(z).repeat(2, 6, 1)
    labels = torch.tensor([[-100, -100, -100, -100, 1, -100], [-100, 1, 1, 1, 1, -100]])
    beta, delta = 2.0, 0.5
    x = -log_softmax(z)[1]
    expected = -(2 / beta) * log_sigmoid(beta * (x - delta))
    loss = simnpo.forget_loss(SequenceOutputs(logits, labels), {"beta": beta, "delta": delta})
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_undial_by_hand():
    beta = 10.0
    per_position = []
    for row, pos, target in ANSWER:
        shifted = REF_LOGITS[row, pos].tolist()
        shifted[target] -= beta
        q = softmax(shifted)
        log_p = log_softmax(LOGITS[row, pos].tolist())
        per_position.append(-sum(qv * lv for qv, lv in zip(q, log_p)))
    expected = sum(per_position) / len(per_position)
    loss = undial.forget_loss(SequenceOutputs(LOGITS, LABELS, REF_LOGITS), {"beta": beta})
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_undial_ignores_prompt_and_padding_positions():
    params = {"beta": 3.0}
    base = undial.forget_loss(SequenceOutputs(LOGITS, LABELS, REF_LOGITS), params)
    scrambled = SequenceOutputs(scramble_ignored(LOGITS, 1), LABELS, scramble_ignored(REF_LOGITS, 2))
    assert undial.forget_loss(scrambled, params).item() == pytest.approx(base.item(), rel=1e-6)


def test_pdu_by_hand():
    gaps = []
    for row, pos, _ in ANSWER:
        z = LOGITS[row, pos].tolist()
        gaps.append((max(z) - sum(z) / len(z)) ** 2)
    loss = pdu.forget_loss(SequenceOutputs(LOGITS, LABELS), {})
    assert loss.item() == pytest.approx(sum(gaps) / len(gaps), rel=1e-6)


def test_pdu_ignores_prompt_and_padding_positions_and_is_zero_on_flat_logits():
    base = pdu.forget_loss(SequenceOutputs(LOGITS, LABELS), {})
    assert pdu.forget_loss(SequenceOutputs(scramble_ignored(LOGITS), LABELS), {}).item() == pytest.approx(base.item())
    flat = scramble_ignored(torch.full_like(LOGITS, 1.7))
    assert pdu.forget_loss(SequenceOutputs(flat, LABELS), {}).item() == pytest.approx(0.0, abs=1e-12)


def test_pdu_dual_step():
    assert pdu.pdu_dual_step(1.0, retain_loss_mean=0.5, eps=0.3, eta=2.0) == pytest.approx(1.4)
    assert pdu.pdu_dual_step(1.0, retain_loss_mean=0.1, eps=0.3, eta=2.0) == pytest.approx(0.6)
    assert pdu.pdu_dual_step(0.5, retain_loss_mean=0.1, eps=0.3, eta=5.0) == 0.0  # clipped at 0, not -0.5


def test_wga_on_explicit_numbers():
    # One sequence, two answer tokens: p = 1/2 from logits [0, 0], p = 3/4 from [ln 3, 0]. With beta = 1 the weights
    # are the probabilities themselves: L = -(1/2) * (1/2 * ln 2 + 3/4 * ln(4/3)).
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    loss = wga.forget_loss(SequenceOutputs(logits, labels), {"beta": 1.0})
    assert loss.item() == pytest.approx(-(0.5 * math.log(2) + 0.75 * math.log(4 / 3)) / 2, rel=1e-6)


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_wga_by_hand(beta):
    weighted = []
    for row, pos, target in ANSWER:
        p = answer_probability(LOGITS, row, pos, target)
        weighted.append(p**beta * -math.log(p))
    loss = wga.forget_loss(SequenceOutputs(LOGITS, LABELS), {"beta": beta})
    assert loss.item() == pytest.approx(-sum(weighted) / len(ANSWER), rel=1e-6)


def test_wga_tends_to_gradient_ascent_and_ignores_prompt_and_padding_positions():
    out = SequenceOutputs(LOGITS, LABELS)
    assert wga.forget_loss(out, {"beta": 1e-9}).item() == pytest.approx(gradascent.forget_loss(out, {}).item())
    scrambled = SequenceOutputs(scramble_ignored(LOGITS), LABELS)
    assert wga.forget_loss(scrambled, {"beta": 1.0}).item() == pytest.approx(wga.forget_loss(out, {"beta": 1.0}).item())


def test_wga_descent_lowers_the_answer_probabilities():
    assert_descent_lowers_the_answer_tokens(wga.forget_loss, {"beta": 1.0}, ANSWER)


def test_wga_weights_are_constants():
    # One token, logits [0, 0], answer 0, beta = 1: with w = p = 1/2 held fixed, dL/dz_0 = -w * d(-log p)/dz_0
    # = -(1/2) * -(1 - 1/2) = 1/4; differentiating the weight too would give d(p ln p)/dz_0 = (1 + ln(1/2)) / 4.
    logits = torch.zeros(1, 2, 2, requires_grad=True)
    wga.forget_loss(SequenceOutputs(logits, torch.tensor([[-100, 0]])), {"beta": 1.0}).backward()
    assert logits.grad[0, 0].tolist() == pytest.approx([0.25, -0.25])


def test_satimp_on_explicit_numbers():
    # The two tokens of the WGA example, p = 1/2 and 3/4, at the defaults beta1 = 5, beta2 = 1: weights
    # (1/2)^5 * 1/2 = 1/64 and (3/4)^5 * 1/4 = 243/4096, so L = -(1/2) * (ln 2 / 64 + 243/4096 * ln(4/3)).
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    loss = satimp.forget_loss(SequenceOutputs(logits, labels), {"beta1": 5.0, "beta2": 1.0})
    assert loss.item() == pytest.approx(-(math.log(2) / 64 + 243 / 4096 * math.log(4 / 3)) / 2, rel=1e-6)


@pytest.mark.parametrize(("beta1", "beta2"), [(5.0, 1.0), (2.0, 0.5)])
def test_satimp_by_hand(beta1, beta2):
    weighted = []
    for row, pos, target in ANSWER:
        p = answer_probability(LOGITS, row, pos, target)
        weighted.append(p**beta1 * (1 - p) ** beta2 * -math.log(p))
    loss = satimp.forget_loss(SequenceOutputs(LOGITS, LABELS), {"beta1": beta1, "beta2": beta2})
    assert loss.item() == pytest.approx(-sum(weighted) / len(ANSWER), rel=1e-6)


def test_satimp_without_importance_is_wga_and_ignores_prompt_and_padding_positions():
    out = SequenceOutputs(LOGITS, LABELS)
    params = {"beta1": 2.0, "beta2": 1.0}
    assert satimp.forget_loss(out, {"beta1": 2.0, "beta2": 0.0}).item() == pytest.approx(
        wga.forget_loss(out, {"beta": 2.0}).item(), rel=1e-6)
    scrambled = SequenceOutputs(scramble_ignored(LOGITS), LABELS)
    assert satimp.forget_loss(scrambled, params).item() == pytest.approx(satimp.forget_loss(out, params).item())


def test_satimp_descent_lowers_the_answer_probabilities():
    assert_descent_lowers_the_answer_tokens(satimp.forget_loss, {"beta1": 5.0, "beta2": 1.0}, ANSWER)


def test_satimp_weights_are_constants():
    # One token, logits [0, 0], answer 0, beta1 = beta2 = 1: w = 1/4 held fixed, dL/dz_0 = -w * -(1 - 1/2) = 1/8.
    logits = torch.zeros(1, 2, 2, requires_grad=True)
    satimp.forget_loss(SequenceOutputs(logits, torch.tensor([[-100, 0]])), {"beta1": 1.0, "beta2": 1.0}).backward()
    assert logits.grad[0, 0].tolist() == pytest.approx([0.125, -0.125])


# The answer tokens CE-U scores on the handmade batch with its default of 1: each row's first label is skipped
# (row 0's at position 2, predicted by logits[0, 1]; row 1's at position 1, predicted by logits[1, 0]).
CEU_SCORED = [(0, 2, 0), (1, 1, 1), (1, 2, 2)]


def test_ceu_on_explicit_numbers():
    # Answer 0 from logits [0, 0, 0]: p = (1/3, 1/3, 1/3), target q = (0, 1/2, 1/2), CE = -ln(1/3) = ln 3.
    # Answer 0 from logits [ln 2, 0, 0]: p = (1/2, 1/4, 1/4), q = (0, 1/2, 1/2), CE = -ln(1/4) = ln 4.
    logits = torch.tensor([[[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0], [0.0, 0.0, 9.0]]])
    labels = torch.tensor([[-100, 0, 0]])
    every = ceu.forget_loss(SequenceOutputs(logits, labels), {"ignore_first_n_answer_tokens": 0})
    assert every.item() == pytest.approx((math.log(3) + math.log(4)) / 2, rel=1e-6)
    skip_first = ceu.forget_loss(SequenceOutputs(logits, labels), {"ignore_first_n_answer_tokens": 1})
    assert skip_first.item() == pytest.approx(math.log(4), rel=1e-6)


@pytest.mark.parametrize(("n", "scored"), [(0, ANSWER), (1, CEU_SCORED), (2, [(1, 2, 2)])])
def test_ceu_by_hand(n, scored):
    # Per token, CE(z, q) with q = p renormalised without the answer equals H(q) - ln(1 - p_answer).
    per_token = []
    for row, pos, target in scored:
        p = softmax(LOGITS[row, pos].tolist())
        q = [0.0 if v == target else pv / (1 - p[target]) for v, pv in enumerate(p)]
        entropy = -sum(qv * math.log(qv) for qv in q if qv > 0)
        per_token.append(entropy - math.log(1 - p[target]))
    loss = ceu.forget_loss(SequenceOutputs(LOGITS, LABELS), {"ignore_first_n_answer_tokens": n})
    assert loss.item() == pytest.approx(sum(per_token) / len(per_token), rel=1e-6)


def test_ceu_with_every_answer_token_skipped_is_zero_and_differentiable():
    logits = LOGITS.clone().requires_grad_(True)
    loss = ceu.forget_loss(SequenceOutputs(logits, LABELS), {"ignore_first_n_answer_tokens": 3})
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(LOGITS))


def test_ceu_ignores_prompt_padding_and_skipped_positions():
    params = {"ignore_first_n_answer_tokens": 1}
    base = ceu.forget_loss(SequenceOutputs(LOGITS, LABELS), params).item()
    scrambled = scramble_ignored(LOGITS)
    scrambled[0, 1] = torch.tensor([40.0, -3.0, 7.0])  # predicts row 0's skipped first answer token
    scrambled[1, 0] = torch.tensor([-8.0, 30.0, 1.0])  # predicts row 1's
    assert ceu.forget_loss(SequenceOutputs(scrambled, LABELS), params).item() == pytest.approx(base)


def test_ceu_descent_lowers_the_answer_probabilities():
    assert_descent_lowers_the_answer_tokens(ceu.forget_loss, {"ignore_first_n_answer_tokens": 1}, CEU_SCORED)


def test_ceu_loss_falls_with_the_answer_probability():
    params = {"ignore_first_n_answer_tokens": 1}
    lowered = LOGITS.clone()
    for row, pos, target in CEU_SCORED:
        lowered[row, pos, target] -= 1.0
    before = ceu.forget_loss(SequenceOutputs(LOGITS, LABELS), params).item()
    assert ceu.forget_loss(SequenceOutputs(lowered, LABELS), params).item() < before


def test_ceu_target_is_a_constant():
    # One token, logits [0, 0, 0], answer 0: the gradient of CE(z, q) with q held fixed is p - q
    # = (1/3, 1/3, 1/3) - (0, 1/2, 1/2).
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    ceu.forget_loss(SequenceOutputs(logits, torch.tensor([[-100, 0]])), {"ignore_first_n_answer_tokens": 0}).backward()
    assert logits.grad[0, 0].tolist() == pytest.approx([1 / 3, -1 / 6, -1 / 6])


def test_retain_nll_is_mean_answer_nll():
    loss = retain_loss(SequenceOutputs(LOGITS, LABELS), "nll")
    assert loss.item() == pytest.approx(mean_answer_nll(LOGITS), rel=1e-6)


def test_retain_kl_by_hand():
    kls = []
    for row, pos, _ in ANSWER:
        log_p_ref = log_softmax(REF_LOGITS[row, pos].tolist())
        log_p = log_softmax(LOGITS[row, pos].tolist())
        kls.append(sum(math.exp(lr) * (lr - lp) for lr, lp in zip(log_p_ref, log_p)))
    loss = retain_loss(SequenceOutputs(LOGITS, LABELS, REF_LOGITS), "kl")
    assert loss.item() == pytest.approx(sum(kls) / len(kls), rel=1e-6)


def test_retain_kl_is_zero_at_the_reference_and_ignores_padding():
    out = SequenceOutputs(scramble_ignored(LOGITS, 3), LABELS, LOGITS.clone())
    assert retain_loss(out, "kl").item() == pytest.approx(0.0, abs=1e-6)


def test_retain_errors():
    with pytest.raises(ValueError, match="needs ref_logits"):
        retain_loss(SequenceOutputs(LOGITS, LABELS), "kl")
    with pytest.raises(ValueError, match="allowed: nll, kl"):
        retain_loss(SequenceOutputs(LOGITS, LABELS), "mse")
