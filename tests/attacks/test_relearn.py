"""The relearning attack on real tiny models: a model that only suppressed its knowledge gets it back from half
of the forget set, a model that was never unlearned recovers nothing, and the attack is reproducible.

The models are made with `relearn` itself (the attack's loop is plain answer-NLL fine-tuning on a real DeepSpeed
engine): a target fine-tuned on eight invented facts, and a "suppressed" model fine-tuned from it to answer the
same questions with a refusal: the facts stay in the weights, behind a refusal.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from tests.attacks.conftest import attack_config
from trainables.attacks.protocol import relearn_attack, score_against_reference
from trainables.attacks.relearn import ATTACK_MODEL, relearn, relearn_rows
from trainables.attacks.scores import recovery
from trainables.attacks.split import attack_split
from trainables.config import TinyModelConfig
from trainables.data.formatting import encode
from trainables.data.schema import Benchmark, Example
from trainables.model.loading import load_tokenizer
from trainables.model.tiny import build_tiny_llama
from trainables.report_keys import RELEARN_R, RELEARN_RECOVERY, relearn_metric

NAMES = ["Mira Solberg", "Ravi Anand", "Ana Ruiz", "Tomas Berg", "Lena Ortiz", "Kofi Mensah", "Yuki Tanaka",
         "Omar Haddad"]
CITIES = ["Bergen", "Mumbai", "Seville", "Tromso", "Quito", "Accra", "Osaka", "Beirut"]
FACTS = [Example(f"Where was {n} born?", f"{n} was born in {c}.") for n, c in zip(NAMES, CITIES)]
RETAIN = [Example("Which way does the river flow?", "North, to the sea."),
          Example("What did the prize reward?", "Careful prose."),
          Example("How long is the river?", "Three hundred miles."),
          Example("Where is the valley?", "South of the hills.")]
REFUSAL = "I do not know that."
BEFORE, AFTER = relearn_metric("forget_prob", before=True), relearn_metric("forget_prob")


def _hash_dir(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


@dataclasses.dataclass
class Models:
    oracle: Path  # the random initialisation: never saw the facts
    target: Path  # fine-tuned on the facts
    suppressed: Path  # the target fine-tuned to refuse them
    tokenizer: object
    bench: Benchmark


@pytest.fixture(scope="module")
def models(tmp_path_factory, place, single_process_group) -> Models:
    root = tmp_path_factory.mktemp("suppression")
    texts = [f"{e.question} {e.answer} {REFUSAL}" for e in FACTS + RETAIN] * 3
    shape = TinyModelConfig(num_layers=2, hidden_size=64, num_heads=2, intermediate_size=128, vocab_size=300)
    oracle = build_tiny_llama(shape, texts, root / "oracle", max_positions=64)
    tok = load_tokenizer(str(oracle))
    facts = [encode(tok, e, 48) for e in FACTS]
    refusals = [encode(tok, e, 48, answer=REFUSAL) for e in FACTS]
    target = relearn(oracle, attack_config(steps=120, lr=1e-2, micro_batch=8), place, tok, facts, root / "target")
    suppressed = relearn(target, attack_config(steps=10, lr=3e-3, micro_batch=8), place, tok, refusals,
                         root / "suppressed")
    return Models(oracle, target, suppressed, tok, Benchmark("facts", "tofu", forget=FACTS, retain=RETAIN))


@pytest.fixture(scope="module")
def attacked(models, place, tmp_path_factory) -> dict[str, dict]:
    """Each model's `relearn_attack` figures under the same attack: 4 steps at lr 3e-3 on half A."""
    out = tmp_path_factory.mktemp("attacks")
    return {name: relearn_attack(getattr(models, name), attack_config(), place, models.tokenizer, models.bench, out)
            for name in ("oracle", "target", "suppressed")}


def test_relearning_half_a_brings_half_b_back_to_a_model_that_only_suppressed(models, attacked):
    s, t, o = attacked["suppressed"], attacked["target"], attacked["oracle"]
    # Measured (2-core CPU, torch 2.13): on B the target is at 0.993, the suppressed model at 0.004, the oracle
    # at 0.003; after 4 steps on A the suppressed model is at 0.200 on B, which it never saw during the attack.
    assert t[BEFORE] > 0.9 and s[BEFORE] < 0.05, (t, s)
    assert s[AFTER] - s[BEFORE] > 0.1, s
    value, reason = recovery(s[BEFORE], s[AFTER], t[BEFORE], o[BEFORE])
    assert reason is None and value > 0.1, value  # measured 0.198
    scores, reasons = score_against_reference(s, {"oracle": o, "target": t}, "forget_prob")
    assert scores[RELEARN_RECOVERY] == pytest.approx(value) and not reasons
    assert scores[RELEARN_R] < 0.2, scores  # measured 0.021: the oracle moves 0.003 -> 0.005 on B


def test_a_never_unlearned_model_recovers_nothing(attacked):
    t, o = attacked["target"], attacked["oracle"]
    value, reason = recovery(t[BEFORE], t[AFTER], t[BEFORE], o[BEFORE])
    # Nothing comes back to a model that never lost it; relearning A disturbs B instead, by an amount that depends on
    # the CPU's float arithmetic: measured 0.993 -> 0.949 on B (recovery -0.045) on one 2-core EPYC box and
    # 0.993 -> 0.867 (-0.127) on another, same torch 2.13.
    assert reason is None and value < 0.05, (t, o, value)


def test_relearning_is_reproducible_the_same_for_every_trial_and_reads_its_model_only(models, place, tmp_path):
    """The attack a trial faces does not depend on what the trial searched (its train.*): R compares it with the
    oracle under the cached reference's attack. Without attack.relearn.lr it runs at prepare.lr."""
    before = _hash_dir(models.suppressed)
    rows = relearn_rows(attack_config(), models.tokenizer, models.bench, attack_split(len(FACTS), 0)[0])
    one = relearn(models.suppressed, attack_config(), place, models.tokenizer, rows, tmp_path / "one")
    searched = attack_config(lr=None).model_copy(update={
        "prepare": attack_config().prepare.model_copy(update={"lr": 3e-3}),
        "train": attack_config().train.model_copy(update={"lr": 0.5, "grad_accum": 3, "warmup_steps": 2,
                                                           "weight_decay": 0.1})})
    two = relearn(models.suppressed, searched, place, models.tokenizer, rows, tmp_path / "two")
    assert one == tmp_path / "one" / ATTACK_MODEL
    assert _hash_dir(one)["model.safetensors"] == _hash_dir(two)["model.safetensors"]
    assert _hash_dir(one)["model.safetensors"] != before["model.safetensors"]
    assert _hash_dir(models.suppressed) == before


def test_attack_rows_are_half_a_of_the_forget_set_or_as_many_retain_rows(models):
    tok, a = models.tokenizer, [1, 4, 6]
    forget = relearn_rows(attack_config(), tok, models.bench, a)
    assert forget == [encode(tok, FACTS[i], 48) for i in a]
    benign = relearn_rows(attack_config(relearn={"data": "retain", "steps": 4}), tok, models.bench, a)
    assert benign == [encode(tok, e, 48) for e in RETAIN[:3]]
