"""The per-worker training function of a trial: what every Ray Train worker runs.

Read top to bottom: `train_worker` sets up (data, model, DeepSpeed engine, reference model, resume state), runs
the epochs, checkpoints after each one through `ray.train.report`, saves the final model and evaluates it. Two
tasks share it: "unlearn" (base method + CLReg on forget/retain batches) and "finetune" (plain NLL: `prepare`'s
target and oracle models), so both scale the same way on a cluster.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from trainables.atomic_files import write_json_atomic
from trainables.config import TrialConfig
from trainables.data.formatting import Encoded, collate, encode
from trainables.data.loading import load_benchmark
from trainables.data.schema import Benchmark, Example, require_paraphrases
from trainables.engine.deepspeed_config import deepspeed_config, inference_config, linear_schedule
from trainables.engine.schedule import Layout, epoch_permutation, micro_batch, view_generator
from trainables.engine.views import forward_at_layer, rerun_layer
from trainables.model.layers import mean_pool, resolve_layer
from trainables.model.loading import load_causal_lm, load_tokenizer, num_layers
from trainables.model.tiny import TINY_PRESET
from trainables.objectives import (
    ResolvedMethod,
    SequenceOutputs,
    batch_nll,
    clreg_term,
    dropout_view,
    pdu_dual_step,
    resolve_method,
    unlearning_loss,
)
from trainables.report_keys import (
    DIVERGED,
    DIVERGENCE_REASON,
    OUTCOME_FILE,
    TRIAL_COMPLETE,
    VERBOSE_ENV,
    finished_outcome,
    seed_dir,
)

STATE_FILE = "trial_state.json"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf: the run stops at once instead of training on garbage, and is not retried
    (raised on the driver by `trainables.engine.trainer.fit_to_end`)."""


@dataclass
class WorkerJob:
    """What one Ray Train run does, passed as `train_loop_config` (plain JSON-able values only)."""

    trial: dict
    task: str  # "unlearn" or "finetune"
    model_dir: str
    output_dir: str
    finetune_split: str = "target"  # finetune only: "target" (forget+retain) or "oracle" (retain only)
    evaluate: bool = True
    oracle_reference: str | None = None
    extra: dict = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)  # unlearn only: train once per seed, into output_dir/seed-<s>/


@dataclass
class TrainData:
    """Tokenised training sets of one run."""

    forget: list[Encoded]
    retain: list[Encoded]
    paraphrase: list[Encoded] | None


@dataclass
class SetupClock:
    """Where a worker's start-up time goes (DeepSpeed import, data, model, engine, reference model, restore).

    Reported with the final metrics as `setup/<phase>_seconds`; the outcome file also gets `worker_started_at`
    (epoch seconds), so the driver can split a run's fixed cost into Ray Train's start (fit -> worker entry), this
    set-up, and its end (see `trainer.fixed_costs`).
    """

    started_at: float = field(default_factory=time.time)
    seconds: dict[str, float] = field(default_factory=dict)
    _last: float = field(default_factory=time.perf_counter)

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[f"setup/{phase}_seconds"] = now - self._last
        self._last = now


def train_worker(job_dict: dict) -> None:
    """Ray Train entry point (`train_loop_per_worker`).

    With `job.seeds` the run trains and evaluates the trial once per seed, one after the other, each into
    `output_dir/seed-<s>/`, sharing the worker processes, imports, tokenizer, tokenised data and reference model: a
    Ray Train run's own start and end cost more than a tiny trial's training (benchmarks/trial_overhead.py), so one
    run per seed would pay them once per seed. A seed whose outcome file says it finished is skipped, so a restarted
    run (a worker fault, a resumed sweep) trains only what is left; the checkpoint carries its seed.
    """
    clock = SetupClock()
    quiet_library_logs()
    import deepspeed  # noqa: F401  (imported here, timed as the "import" phase, not inside the first engine build)
    import ray
    import ray.train

    clock.lap("import")
    job = WorkerJob(**job_dict)
    cfg = TrialConfig.model_validate(job.trial)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    device = _device(cfg)

    tokenizer = load_tokenizer(job.model_dir, cfg.model.trust_remote_code)
    data = _tokenised_data(cfg, job, tokenizer)
    method = resolve_method(cfg.method) if job.task == "unlearn" else None
    clock.lap("data")
    ref = _reference_model(job, cfg, method, world, device) if method and method.needs_ref else None
    clock.lap("reference")
    run = _Run(job, rank, world, device, tokenizer, data, method, ref)
    checkpoint = ray.train.get_checkpoint()
    if not job.seeds:
        final = run.train_and_evaluate(cfg, Path(job.output_dir), checkpoint)
        _report_outcome({**final, **clock.seconds}, Path(job.output_dir), rank, worker_started_at=clock.started_at)
        return
    for seed in _unfinished_seeds(job, rank):
        seed_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
        final = run.train_and_evaluate(seed_cfg, seed_dir(job.output_dir, seed), checkpoint)
        if final.get(DIVERGED):
            _report_outcome({**final, "seed": seed}, Path(job.output_dir), rank)
            return
        _report_outcome(final, seed_dir(job.output_dir, seed), rank)
        del final
        gc.collect()  # the seed's engine and model, before the next seed builds its own
    _report_outcome({TRIAL_COMPLETE: 1, "seeds_trained": len(job.seeds), **clock.seconds}, Path(job.output_dir),
                    rank, worker_started_at=clock.started_at)


def verbose() -> bool:
    """Whether the command that started this run asked for every library's info logs (`--verbose`)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def quiet_library_logs() -> None:
    """The worker's root logger at WARNING unless `verbose()`.

    Ray Train configures it at INFO, and its own info logs reach it: "Reporting training result N:
    TrainingReport(...)", once per epoch, comes from a logger named after its file path, which the run's
    `LoggingConfig(log_level)` (filtering `ray.train.*` only) does not reach; rouge_score's "Using default
    tokenizer." too. The reports themselves are Tune's and MLflow's metrics.
    """
    if not verbose():
        logging.getLogger().setLevel(logging.WARNING)


def _unfinished_seeds(job: WorkerJob, rank: int) -> list[int]:
    """The seeds of `job` whose outcome file does not say they finished.

    Rank 0 wrote those files, so rank 0 reads them and tells the others: a rank on another node could see a stale
    copy of the shared directory, train a different set of seeds and hang the run's collectives.
    """
    chosen = [[s for s in job.seeds if finished_outcome(seed_dir(job.output_dir, s)) is None] if rank == 0 else None]
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(chosen, src=0)
    return chosen[0]


@dataclass
class _Run:
    """What every seed of a run shares: the job, worker place, tokenizer, tokenised data, method, reference model."""

    job: WorkerJob
    rank: int
    world: int
    device: torch.device
    tokenizer: object
    data: TrainData
    method: ResolvedMethod | None
    ref: object | None

    def train_and_evaluate(self, cfg: TrialConfig, out_dir: Path, checkpoint) -> dict:
        """Train from `out_dir`'s seed (`cfg.train.seed`), checkpoint each epoch, save and evaluate into `out_dir`.

        `checkpoint` (the run's newest) is resumed from only when it holds this seed. Returns the final metrics, or a
        `DIVERGED` outcome when the loss became non-finite (no checkpoint, no evaluation).
        """
        import deepspeed
        import ray
        import ray.train

        job, method, rank, world, device, data = self.job, self.method, self.rank, self.world, self.device, self.data
        clock = SetupClock()
        micro = cfg.prepare.micro_batch_size if job.task == "finetune" else cfg.train.micro_batch_size
        lr = cfg.prepare.lr if job.task == "finetune" else cfg.train.lr
        epochs = cfg.prepare.epochs if job.task == "finetune" else cfg.train.epochs
        layout = Layout(micro, cfg.train.grad_accum, world)
        steps_per_epoch = layout.steps_per_epoch(len(data.forget))

        torch.manual_seed(cfg.train.seed)
        model = load_causal_lm(job.model_dir, cfg.model, trainable=True)
        layer = resolve_layer(cfg.clreg.layer, num_layers(model)) if _clreg_on(cfg, job) else None
        clock.lap("model")
        ds_cfg = deepspeed_config(cfg.train, cfg.model.dtype, world, lr=lr, micro_batch=micro)
        engine, *_ = deepspeed.initialize(
            model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=ds_cfg,
            lr_scheduler=linear_schedule(cfg.train.warmup_steps, steps_per_epoch * epochs),
        )
        clock.lap("engine")

        is_pdu = method is not None and method.spec.name == "pdu"
        state = {"seed": cfg.train.seed, "epoch": 0, "dual_lambda": method.params["alpha"] if is_pdu else None,
                 "history": []}
        if checkpoint is not None:
            with checkpoint.as_directory() as ckpt_dir:
                saved = json.loads((Path(ckpt_dir) / STATE_FILE).read_text())
                if saved.get("seed", cfg.train.seed) == cfg.train.seed:  # the run's newest may be an earlier seed's
                    engine.load_checkpoint(ckpt_dir, load_lr_scheduler_states=True)
                    state = saved
        clock.lap("restore")

        resumed_from_epoch = state["epoch"]  # > 0 when this attempt continues from a checkpoint after a fault
        pad = self.tokenizer.pad_token_id
        training_started = time.perf_counter()
        for epoch in range(state["epoch"], epochs):
            started = time.perf_counter()
            sums = _EpochSums()
            perm_f = epoch_permutation(len(data.forget), cfg.train.seed, epoch)
            perm_r = epoch_permutation(len(data.retain), cfg.train.seed + 1, epoch) if data.retain else []
            for step in range(steps_per_epoch):
                retain_step_losses = []
                for a in range(layout.grad_accum):
                    u = layout.micro_index(step, rank, a)
                    idx_f = micro_batch(perm_f, u, micro)
                    forget = _to(collate([data.forget[i] for i in idx_f], pad), device)
                    if job.task == "finetune":
                        terms = {"loss": batch_nll(engine(input_ids=forget["input_ids"],
                                                          attention_mask=forget["attention_mask"]).logits,
                                                   forget["labels"])}
                    else:
                        retain = _to(collate([data.retain[i] for i in micro_batch(perm_r, u, micro)], pad), device)
                        paraphrase = (_to(collate([data.paraphrase[i] for i in idx_f], pad), device)
                                      if data.paraphrase is not None else None)
                        terms = unlearn_micro_step(engine, self.ref, cfg, method, layer, state["dual_lambda"],
                                                   forget, retain, paraphrase,
                                                   view_generator(cfg.train.seed, epoch, u))
                        if terms.get("retain") is not None:
                            retain_step_losses.append(terms["retain"].item())
                    loss = terms["loss"]
                    if not _finite_on_every_rank(loss, device):
                        # Every rank stops at the same micro-step, as Ray Train requires; no checkpoint, so nothing
                        # diverged is ever resumed from.
                        return {DIVERGED: 1, "epoch": epoch, DIVERGENCE_REASON: (
                            f"training loss became non-finite (this rank: {loss.item()}) at epoch {epoch}, step "
                            f"{step} (lr={lr}); trial stopped")}
                    engine.backward(loss)
                    engine.step()
                    sums.add({k: v.item() for k, v in terms.items() if v is not None})
                if is_pdu:
                    state["dual_lambda"] = pdu_dual_step(
                        state["dual_lambda"], _all_mean(sum(retain_step_losses) / len(retain_step_losses), device),
                        method.params["eps"], method.params["eta"],
                    )
            metrics = sums.all_reduced_means(device)
            metrics.update(epoch=epoch + 1, epoch_seconds=time.perf_counter() - started,
                           lr=engine.get_lr()[0])
            if is_pdu:
                metrics["dual_lambda"] = state["dual_lambda"]
            state["epoch"] = epoch + 1
            state["history"].append(metrics)
            last = epoch + 1 == epochs
            eval_now = job.evaluate and cfg.eval.every and (epoch + 1) % cfg.eval.every == 0 and not last
            if eval_now:
                metrics.update(_save_and_evaluate(engine, self.tokenizer, cfg, job, out_dir, layer, rank,
                                                  final=False))
            if last or (epoch + 1) % _checkpoint_every(job) == 0:
                _report_with_checkpoint(engine, state, metrics, rank)
            else:
                ray.train.report(metrics)

        # The last epoch's training figures travel with the final metrics (a trial's result is its final report),
        # plus the training wall time of this attempt (steps, mid-run evaluations, checkpoints) beside
        # `eval_seconds`.
        final = {**(state["history"][-1] if state["history"] else {}), TRIAL_COMPLETE: 1, "epoch": state["epoch"],
                 "train_seconds": time.perf_counter() - training_started, "resumed_from_epoch": resumed_from_epoch,
                 "node_id": ray.get_runtime_context().get_node_id(), **clock.seconds}
        final.update(_save_and_evaluate(engine, self.tokenizer, cfg, job, out_dir, layer, rank, final=True))
        return final


# ---------------------------------------------------------------------------------------------------------------
# one unlearning micro-step


def unlearn_micro_step(engine, ref, cfg: TrialConfig, method: ResolvedMethod, layer: int | None,
                        dual_lambda: float | None, forget: dict, retain: dict, paraphrase: dict | None,
                        gen: torch.Generator) -> dict[str, torch.Tensor | None]:
    """Loss terms of one micro-batch: base method on (forget, retain) plus lambda * CLReg at `layer`."""
    module = engine.module
    clreg_on = layer is not None
    need_retain = clreg_on or method.uses_retain
    if clreg_on:
        f = forward_at_layer(engine, module, forget, layer)
        r = forward_at_layer(engine, module, retain, layer) if need_retain else None
        f_logits, r_logits = f.logits, (r.logits if r else None)
    else:
        f_logits = engine(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits
        r_logits = (engine(input_ids=retain["input_ids"], attention_mask=retain["attention_mask"]).logits
                    if need_retain else None)
    f_ref = r_ref = None
    if ref is not None:
        with torch.no_grad():
            f_ref = ref(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits
            if r_logits is not None:
                r_ref = ref(input_ids=retain["input_ids"], attention_mask=retain["attention_mask"]).logits
    terms = unlearning_loss(
        method,
        SequenceOutputs(f_logits, forget["labels"], f_ref),
        SequenceOutputs(r_logits, retain["labels"], r_ref) if r_logits is not None else None,
        dual_lambda=dual_lambda,
    )
    out: dict[str, torch.Tensor | None] = {"loss": terms.total, "forget": terms.forget, "retain": terms.retain}
    if clreg_on:
        c = cfg.clreg
        z_f = mean_pool(f.hidden, forget["attention_mask"])
        z_r = mean_pool(r.hidden, retain["attention_mask"])
        if c.positives == "paraphrase":
            p = forward_at_layer(engine, module, paraphrase, layer)
            z_f_pos = mean_pool(p.hidden, paraphrase["attention_mask"])
        else:
            z_f_pos = mean_pool(_dropout_rerun(module, layer, f, c.dropout, gen), forget["attention_mask"])
        z_r_pos = (mean_pool(_dropout_rerun(module, layer, r, c.dropout, gen), retain["attention_mask"])
                   if c.symmetric else None)
        l_cl = clreg_term(z_f, z_f_pos, z_r, c.tau, c.form, symmetric=c.symmetric, z_retain_pos=z_r_pos)
        out["clreg"] = l_cl
        out["loss"] = terms.total + c.lam * l_cl
    return out


def _dropout_rerun(module, layer: int, fwd, p: float, gen: torch.Generator) -> torch.Tensor:
    """Second view of the target-layer output: dropout on the layer's input, then that layer again."""
    return rerun_layer(module, layer, dropout_view(fwd.layer_input, p, gen), fwd.layer_kwargs)


# ---------------------------------------------------------------------------------------------------------------
# setup helpers


def _device(cfg: TrialConfig) -> torch.device:
    if cfg.train.gpus_per_worker > 0 and torch.cuda.is_available():
        import ray.train.torch

        return ray.train.torch.get_device()
    return torch.device("cpu")


def _checkpoint_every(job: WorkerJob) -> int:
    """Unlearning checkpoints every epoch (the resume point after a fault); prepare's long fine-tuning every 5."""
    return 5 if job.task == "finetune" else 1


def _clreg_on(cfg: TrialConfig, job: WorkerJob) -> bool:
    return job.task == "unlearn" and cfg.clreg.enabled and cfg.clreg.lam > 0


def finetune_extra(bench: Benchmark, cfg: TrialConfig) -> list[Example]:
    """What `prepare` trains target and oracle on besides forget/retain.

    `bench.extra_train` (the synthetic benchmark's invented facts), or for a model built from scratch
    (`tiny-llama`) on data without them, the real-authors and world-facts eval sets: a stand-in for the
    pretraining that taught a real model those facts, so its utility on them is not zero by construction. Utility
    on those sets then measures recall of trained facts, not general knowledge.
    """
    if bench.extra_train or cfg.model.name_or_path != TINY_PRESET:
        return bench.extra_train
    return bench.eval_sets.get("real_authors", []) + bench.eval_sets.get("world_facts", [])


def _tokenised_data(cfg: TrialConfig, job: WorkerJob, tokenizer) -> TrainData:
    bench = load_benchmark(cfg.data, cfg.prepare.cache_dir)
    n = cfg.data.max_length

    def enc(examples: list[Example]) -> list[Encoded]:
        return [encode(tokenizer, e, n) for e in examples]

    if job.task == "finetune":
        split = bench.retain + finetune_extra(bench, cfg)
        if job.finetune_split == "target":
            split = bench.forget + split
        return TrainData(forget=enc(split), retain=[], paraphrase=None)
    paraphrase = None
    if cfg.clreg.enabled and cfg.clreg.positives == "paraphrase":
        require_paraphrases(bench)
        paraphrase = [encode(tokenizer, e, n, answer=e.paraphrased_answer) for e in bench.forget]
    return TrainData(forget=enc(bench.forget), retain=enc(bench.retain), paraphrase=paraphrase)


def _reference_model(job: WorkerJob, cfg: TrialConfig, method, world: int, device):
    """Frozen copy of the starting model; partitioned with ZeRO-3 when the trained model is, else replicated."""
    import deepspeed

    ref = load_causal_lm(job.model_dir, cfg.model, trainable=False).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    if cfg.train.zero_stage == 3:
        ref_engine, *_ = deepspeed.initialize(model=ref, config=inference_config(cfg.model.dtype, world))
        ref_engine.eval()
        return ref_engine
    return ref.to(device)


def _to(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _finite_on_every_rank(loss: torch.Tensor, device) -> bool:
    """Whether the loss is finite on all workers (one scalar all-reduce when there are several)."""
    bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return bad.item() == 0.0


def _all_mean(value: float, device) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return float(t.item())


class _EpochSums:
    """Running sums of per-micro-batch loss terms, averaged over all micro-batches of all workers."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, terms: dict[str, float]) -> None:
        self.count += 1
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def all_reduced_means(self, device) -> dict[str, float]:
        keys = sorted(self.sums)
        t = torch.tensor([self.sums[k] for k in keys] + [float(self.count)], dtype=torch.float64, device=device)
        if dist.is_initialized():
            dist.all_reduce(t)
        return {f"train/{k}_loss" if k != "loss" else "train/loss": float(t[i] / t[-1]) for i, k in enumerate(keys)}


# ---------------------------------------------------------------------------------------------------------------
# checkpoints, final model, evaluation


def _report_with_checkpoint(engine, state: dict, metrics: dict, rank: int) -> None:
    """Every worker saves its DeepSpeed shard, then all report the same checkpoint (Ray merges the shards)."""
    import ray.train

    with tempfile.TemporaryDirectory(prefix="clreg-ckpt-") as tmp:
        engine.save_checkpoint(tmp, tag="latest_epoch")
        if rank == 0:
            (Path(tmp) / STATE_FILE).write_text(json.dumps(state))
        if dist.is_initialized():
            dist.barrier()
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _report_outcome(metrics: dict, out: Path, rank: int, worker_started_at: float | None = None) -> None:
    """A run's (or one seed's) last report: to Ray (and Tune), and from rank 0 to `out/OUTCOME_FILE` for the driver
    to read. The run's own last report (`worker_started_at` given) also carries the wall-clock times the driver
    needs to measure the run's start and end (not metrics: never reported)."""
    import ray.train

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        clocks = {"reported_at": time.time(), "worker_started_at": worker_started_at} if worker_started_at else {}
        write_json_atomic(out / OUTCOME_FILE, {**metrics, **clocks})
    ray.train.report(metrics)


def save_model(engine, tokenizer, out_dir: Path, rank: int) -> None:
    """Write the trained model (full weights, safetensors) and tokenizer to `out_dir` from rank 0.

    Under ZeRO-3 the partitioned parameters are gathered first; every rank must call this.
    """
    import deepspeed

    module = engine.module
    params = list(module.parameters())
    gather = deepspeed.zero.GatheredParameters(params, modifier_rank=None) if _is_zero3(engine) else nullcontext()
    with gather:
        if rank == 0:
            tmp = out_dir.with_name(out_dir.name + ".tmp")
            state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
            module.save_pretrained(tmp, state_dict=state, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            _replace_dir(tmp, out_dir)
    if dist.is_initialized():
        dist.barrier()


def _save_and_evaluate(engine, tokenizer, cfg: TrialConfig, job: WorkerJob, out: Path, layer: int | None,
                       rank: int, final: bool) -> dict:
    """Save the model (final, or a temporary one mid-run) into `out` and evaluate it on rank 0; return rank 0's
    metrics."""
    model_dir = out / ("final_model" if final else "eval_model")
    save_model(engine, tokenizer, model_dir, rank)
    metrics: dict = {}
    if rank == 0 and job.evaluate:
        from trainables.evaluation import evaluate_saved_model
        from trainables.metrics.evaluate import MISSING_REASONS_KEY, PARTIAL_SUFFIX

        started = time.perf_counter()
        aggregates = evaluate_saved_model(
            model_dir, cfg, target_layer=layer, oracle_path=job.oracle_reference,
            out_dir=out if final else None,
        )
        metrics = {k: v for k, v in aggregates.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        metrics["eval_seconds"] = time.perf_counter() - started
        # prepare's models are evaluated before the oracle reference exists; their oracle metrics are scored
        # afterwards as the sweep's reference points (orchestrator/references.py), so only trials say why.
        reasons = aggregates.get(MISSING_REASONS_KEY, {}) if job.task == "unlearn" else {}
        for name, reason in sorted(reasons.items()):
            label = name if name.endswith(PARTIAL_SUFFIX) else f"{name} missing"
            print(f"eval{'' if final else ' (mid-run)'}: {label}: {reason}", flush=True)
    if dist.is_initialized():
        dist.barrier()
    return metrics


def _is_zero3(engine) -> bool:
    return engine.zero_optimization_stage() == 3


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move `tmp` to `final`, replacing an older `final`, so a reader never sees a half-written model."""
    import shutil

    if final.exists():
        old = final.with_name(final.name + f".old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
