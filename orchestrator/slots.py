"""Warm slots (`search.slots: warm`): long-lived worker groups that run the sweep's trials one after another.

Why: a cold trial is one Ray Train run, and its fixed cost (worker processes, imports, process group, tokenizer,
data and model loads) is paid again for every trial; on the 2-core laptop it was 12.7 s against 3.6 s of training
and evaluation (benchmarks/trial_overhead.py). A slot pays it once.

Who does what:
- `SlotPool`, one Ray actor per sweep, on the driver's node: it owns the slots (a placement group of
  `train.num_workers` `SlotWorker` actors each, `trainables.engine.slot_worker`), starts a trial's run in a free
  slot, collects rank 0's per-epoch reports, and watches each run: a rank that raises or dies ends its slot (the
  rest are killed; the next run starts a fresh one), a finished run frees it, and a slot is recycled after
  `search.slot_recycle_trials` trials or when a worker's memory has grown by `search.slot_max_growth_gb` since
  its first trial (engines rebuilt in one process are known to leak: DeepSpeed issues #7204, #4856).
- `run_in_slot`, in a Tune trial's driver: starts the trial's job in the pool, relays its reports to Tune, restarts
  it after a worker failure (up to `train.max_failures`; the run resumes from its newest checkpoint) and reads
  the outcome file, as `fit_to_end` does for a cold run. Optuna, Tune and MLflow see what they see for a cold
  trial.

A trial Tune stops (a scheduler's decision) cancels its run; so does a run whose driver stops polling for
`HEARTBEAT_SECONDS` (its actor is gone). The workers stop at their next report and the slot serves the next
trial.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainables.config import TrainConfig
from trainables.engine.job import WorkerJob
from trainables.engine.outcome import clear_outcome, read_outcome
from trainables.report_keys import RUN_CANCELLED

# A run whose driver has not polled for this long is cancelled (its Tune trial's actor is gone); drivers poll every
# `_POLL_SECONDS`.
HEARTBEAT_SECONDS = 15.0
_POLL_SECONDS = 0.25
RUNNING, FINISHED, CANCELLED, FAILED = "running", "finished", "cancelled", "failed"


class SlotRunError(RuntimeError):
    """A trial's workers failed more often than `train.max_failures` allows."""


@dataclass(frozen=True)
class SlotShape:
    """What one slot holds: `num_workers` ranks of `cpus` CPUs and `gpus` GPUs each, with this environment."""

    num_workers: int
    cpus: float
    gpus: float
    env: dict[str, str]

    @classmethod
    def of(cls, train: TrainConfig) -> SlotShape:
        from trainables.engine.trainer import worker_env

        return cls(train.num_workers, train.cpus_per_worker, train.gpus_per_worker,
                   worker_env(train.gpus_per_worker > 0))


@dataclass
class _Slot:
    workers: list
    placement: object
    trials: int = 0
    first_rss: int | None = None  # the largest worker's memory after the slot's first trial


@dataclass
class _Run:
    slot: int
    refs: list
    reports: list[dict] = field(default_factory=list)
    state: str = RUNNING
    error: str | None = None
    cancelled: bool = False
    polled_at: float = field(default_factory=time.monotonic)


class SlotPool:
    """The sweep's slots (a threaded Ray actor: `start` may wait for a slot to be built while others poll).

    Args:
        shape: every slot's workers and resources (warm slots need every trial to ask for the same).
        recycle_trials: a slot is replaced after serving this many trials.
        max_growth_bytes: ... or when a worker's resident memory grew this much since the slot's first trial.
        prebuild: slots to build at once, in the background (the sweep's concurrency), so their processes start
            while Tune starts its own; a trial that finds none idle waits for one being built.
    """

    def __init__(self, shape: SlotShape, recycle_trials: int, max_growth_bytes: int, prebuild: int = 0) -> None:
        self.shape, self.recycle_trials, self.max_growth_bytes = shape, recycle_trials, max_growth_bytes
        self._lock = threading.Condition()
        self._slots: dict[int, _Slot] = {}
        self._idle: set[int] = set()  # built slots waiting for a run (or ended ones, rebuilt by the next `start`)
        self._building: set[int] = set(range(prebuild))  # being built in the background
        self._runs: dict[int, _Run] = {}
        self._next_run = 0
        self._stopped = False
        threading.Thread(target=self._watch, daemon=True, name="slot-watch").start()
        for index in range(prebuild):
            threading.Thread(target=self._prebuild, args=(index,), daemon=True, name=f"slot-{index}-build").start()

    def start(self, job_dict: dict) -> int:
        """Start `job_dict` (a `WorkerJob`) in an idle slot, or a new one; the run's id.

        Raises:
            Whatever building a new slot raised (a placement group or worker that could not start); the slot is
            cleaned up first.
        """
        import ray

        with self._lock:
            while not self._idle and self._building:
                self._lock.wait(timeout=1.0)
            index = min(self._idle) if self._idle else _new_index(self._slots, self._runs)
            self._idle.discard(index)
            run_id, self._next_run = self._next_run, self._next_run + 1
            self._runs[run_id] = _Run(slot=index, refs=[])
        try:
            slot = self._slots.get(index) or self._build(index)
            me = ray.get_runtime_context().current_actor
            refs = [w.run.remote(job_dict, me, run_id) for w in slot.workers]
        except BaseException:
            self._end_slot(index)
            with self._lock:
                del self._runs[run_id]
            raise
        with self._lock:
            self._runs[run_id].refs = refs
        return run_id

    def post(self, run_id: int, metrics: dict) -> bool:
        """Rank 0's report of `run_id`; whether the run is cancelled."""
        with self._lock:
            run = self._runs[run_id]
            run.reports.append(metrics)
            return run.cancelled

    def poll(self, run_id: int) -> dict:
        """The reports of `run_id` since the last poll, its state and error (a driver's heartbeat too)."""
        with self._lock:
            run = self._runs[run_id]
            reports, run.reports, run.polled_at = run.reports, [], time.monotonic()
            if run.state != RUNNING and not reports:
                del self._runs[run_id]
            return {"reports": reports, "state": run.state, "error": run.error}

    def cancel(self, run_id: int) -> None:
        with self._lock:
            if run_id in self._runs:
                self._runs[run_id].cancelled = True

    def stats(self) -> list[dict]:
        """Per built slot: its index, trials served, and its workers' process ids and resident memory (bytes)."""
        import ray

        with self._lock:
            slots = dict(self._slots)
        return [{"slot": index, "trials": slot.trials, "pids": ray.get([w.pid.remote() for w in slot.workers]),
                 "rss": ray.get([w.rss.remote() for w in slot.workers])} for index, slot in sorted(slots.items())]

    def shutdown(self) -> None:
        """End every slot (the sweep is over: its CPUs/GPUs go back to the cluster)."""
        self._stopped = True
        for index in list(self._slots):
            self._end_slot(index)

    # --- inside the actor ---------------------------------------------------------------------------------------

    def _build(self, index: int) -> _Slot:
        """A new slot: the placement group, its workers, their process group."""
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from trainables.engine.slot_worker import SlotWorker

        s = self.shape
        bundle = {"CPU": s.cpus, **({"GPU": s.gpus} if s.gpus else {})}
        group = placement_group([bundle] * s.num_workers, strategy="PACK")
        try:
            ray.get(group.ready())
            actor = ray.remote(SlotWorker)
            workers = [actor.options(num_cpus=s.cpus, num_gpus=s.gpus, runtime_env={"env_vars": s.env},
                                     scheduling_strategy=PlacementGroupSchedulingStrategy(
                                         group, placement_group_bundle_index=rank)).remote(rank, s.num_workers,
                                                                                          s.gpus > 0)
                       for rank in range(s.num_workers)]
            host, port = ray.get(workers[0].address.remote())
            ray.get([w.join.remote(host, port) for w in workers])
        except BaseException:
            remove_placement_group(group)
            raise
        slot = _Slot(workers, group)
        with self._lock:
            self._slots[index] = slot
        return slot

    def _prebuild(self, index: int) -> None:
        """Build slot `index` ahead of the trials; a failure is left to the `start` that next needs a slot (it
        builds one itself and raises what fails)."""
        try:
            self._build(index)
            built = True
        except Exception as e:  # noqa: BLE001 (reported, and retried by `start`)
            print(f"slot {index}: could not be built ahead of the trials: {_summary(e)}", flush=True)
            built = False
        with self._lock:
            self._building.discard(index)
            if built and not self._stopped:
                self._idle.add(index)
            self._lock.notify_all()

    def _end_slot(self, index: int) -> None:
        """Kill slot `index`'s workers and free its resources; its index is built afresh by the next `start`."""
        import ray
        from ray.util.placement_group import remove_placement_group

        with self._lock:
            slot = self._slots.pop(index, None)
            if not self._stopped:
                self._idle.add(index)
                self._lock.notify_all()
        if slot is None:
            return
        for w in slot.workers:
            ray.kill(w, no_restart=True)
        remove_placement_group(slot.placement)

    def _watch(self) -> None:
        """Forever: end runs whose workers all returned, fail runs with a failed worker, cancel orphaned runs."""
        while not self._stopped:
            with self._lock:
                running = [(rid, r) for rid, r in self._runs.items() if r.state == RUNNING and r.refs]
            for run_id, run in running:
                self._check(run)
            time.sleep(_POLL_SECONDS)

    def _check(self, run: _Run) -> None:
        import ray

        if time.monotonic() - run.polled_at > HEARTBEAT_SECONDS:
            run.cancelled = True
        done, _ = ray.wait(run.refs, num_returns=len(run.refs), timeout=0, fetch_local=False)
        for ref in done:
            try:
                outcome = ray.get(ref)
            except Exception as e:  # a rank raised or died: its peers may hang in a collective; end the slot
                self._end_slot(run.slot)
                run.error, run.state = _summary(e), FAILED
                return
        if len(done) < len(run.refs):
            return
        self._finish(run.slot)
        run.state = CANCELLED if outcome == RUN_CANCELLED else FINISHED

    def _finish(self, index: int) -> None:
        """Slot `index` served a trial: idle again, or recycled when it has served enough or grown too much."""
        import ray

        slot = self._slots.get(index)
        if slot is None:  # ended meanwhile (the pool is shutting down)
            return
        slot.trials += 1
        rss = max(ray.get([w.rss.remote() for w in slot.workers]))
        slot.first_rss = slot.first_rss or rss
        reason = None
        if slot.trials >= self.recycle_trials:
            reason = f"served {slot.trials} trials (search.slot_recycle_trials)"
        elif rss - slot.first_rss > self.max_growth_bytes:
            reason = (f"a worker grew by {(rss - slot.first_rss) / 2**30:.2f} GiB since its first trial "
                      f"(search.slot_max_growth_gb)")
        if reason:
            print(f"slot {index}: recycled: {reason}", flush=True)
            self._end_slot(index)
            return
        with self._lock:
            self._idle.add(index)
            self._lock.notify_all()


def _new_index(slots: dict[int, _Slot], runs: dict[int, _Run]) -> int:
    busy = set(slots) | {r.slot for r in runs.values() if r.state == RUNNING}
    return next(i for i in range(len(busy) + 1) if i not in busy)


def _summary(error: BaseException) -> str:
    """One line for a worker's failure: the last line of its text (a task error's own exception, after Ray's
    traceback), at most 300 characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def start_pool(name: str, shape: SlotShape, recycle_trials: int, max_growth_gb: float, prebuild: int = 0):
    """The sweep's `SlotPool` actor, named `name` (trial drivers look it up), on this (the driver's) node, so it
    lives as long as the sweep does; `prebuild` slots start building at once."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return ray.remote(SlotPool).options(
        name=name, num_cpus=0, max_concurrency=64, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
    ).remote(shape, recycle_trials, int(max_growth_gb * 2**30), prebuild)


def run_in_slot(pool, job: WorkerJob, max_failures: int, relay: Callable[[dict], None],
                log: Callable[[str], None] = print) -> dict:
    """Run `job` in a slot of `pool`, relaying each report, and return rank 0's final metrics (as `fit_to_end`).

    Raises:
        SlotRunError: when the workers failed more than `max_failures` times.
        NonFiniteLossError: when the loss diverged (`read_outcome`).
    """
    import ray

    out = Path(job.output_dir)
    clear_outcome(out)
    started, failures = time.time(), 0
    while True:
        run_id = ray.get(pool.start.remote(dataclasses.asdict(job)))
        try:
            status = _follow(pool, run_id, relay)
        except BaseException:  # Tune stopped the trial (SystemExit from its report) or the driver failed
            pool.cancel.remote(run_id)
            raise
        if status["state"] != FAILED:
            break
        failures += 1
        if failures > max_failures:
            raise SlotRunError(f"a worker failed {failures} time(s) (train.max_failures={max_failures}): "
                               f"{status['error']}")
        log(f"{out.name}: a worker failed ({status['error']}); restarting from the newest checkpoint "
            f"({failures} of train.max_failures={max_failures})")
    return read_outcome(out, started, time.time())


def _follow(pool, run_id: int, relay: Callable[[dict], None]) -> dict:
    """Relay `run_id`'s reports until it ends; its last status.

    Raises:
        SystemExit: when Tune asked the trial to stop (what Ray raises at the trial's next report).
    """
    import ray

    while True:
        if _tune_stopped():
            raise SystemExit(0)
        status = ray.get(pool.poll.remote(run_id))
        for metrics in status["reports"]:
            relay(metrics)
        if status["state"] != RUNNING and not status["reports"]:
            return status
        time.sleep(_POLL_SECONDS)


def _tune_stopped() -> bool:
    """Whether Tune asked the calling trial to stop (a scheduler's decision): its session's stop event, which Ray
    otherwise reads only at the trial's next report. Read while waiting, so a stopped trial frees its slot at once
    instead of after its next epoch; False outside a Tune trial."""
    from ray.train._internal.session import get_session

    event = getattr(get_session(), "stop_event", None)
    return bool(event is not None and event.is_set())
