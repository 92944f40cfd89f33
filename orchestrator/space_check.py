"""A sweep's search space resolved against its `base` trial config before any trial starts.

`SearchSpace` checks each value on its own (a tau > 0, a known field); a value can still be wrong in the context of
`base` and of the other values of its trial: a method name that is not registered, a hyperparameter the chosen
method does not take, a layer deeper than the model, more workers than the machine has. Left alone, those fail inside
trials, after Ray and `prepare` have run. Here every combination of the discrete parameters' values (categorical,
grid, layer; conditions honoured, because the combinations are drawn by `SearchSpace.sample` itself) is built into
a `TrialConfig` and resolved as a trial would resolve it. Ranges are taken at their low bound (a value there is
valid on its own, it only marks the parameter as set), and resource ranges (`RESOURCE_PATHS`) at both bounds.
Above `MAX_POINTS` combinations a covering set is checked instead: every value of every parameter in at least one
combination its conditions allow.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from orchestrator.cluster import check_trial_fits
from search_spaces.space import CategoricalParam, FloatParam, IntParam, SearchSpace, apply, is_grid
from trainables.config import TrialConfig
from trainables.data.schema import Benchmark, require_paraphrases
from trainables.model.layers import LayerError, LayerSpec, allowed_layers
from trainables.objectives import METHODS, ResolvedMethod, resolve_method

MAX_POINTS = 4096
# Fields whose value decides whether a trial fits the machine: a range of them can break only at its bounds.
RESOURCE_PATHS = ("train.num_workers", "train.cpus_per_worker", "train.gpus_per_worker")
VALUE_CHARS = 60


class SpaceError(ValueError):
    """A value of the search space that no trial could run with (the message names the parameter and value)."""


class _ScriptedTrial:
    """Stands in for an Optuna trial in `SearchSpace.sample`: the suggestion at position i takes the value
    `script[i]` (the first value beyond the script), and each position's parameter, choice and number of values
    are recorded."""

    def __init__(self, script: list[int]) -> None:
        self.script = script
        self.names: list[str] = []
        self.taken: list[int] = []
        self.widths: list[int] = []

    def _pick(self, name: str, values: list[Any]) -> Any:
        index = self.script[len(self.taken)] if len(self.taken) < len(self.script) else 0
        self.names.append(name)
        self.taken.append(index)
        self.widths.append(len(values))
        return values[index]

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._pick(name, list(choices))

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False,
                      step: float | None = None) -> float:
        top = low + math.floor((high - low) / step) * step if step else high
        return self._pick(name, [low, top] if name in RESOURCE_PATHS else [low])

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return self._pick(name, [low, low + (high - low) // step * step] if name in RESOURCE_PATHS else [low])


def space_points(space: SearchSpace, num_layers: int, limit: int = MAX_POINTS) -> tuple[list[dict[str, Any]], bool]:
    """The trial points to check: every combination (True), or past `limit` a covering set (False).

    Each point is drawn by `SearchSpace.sample` with a scripted trial, so conditions and the CLReg switch act as in
    a sweep; a run's new decisions are branched on (every other value of each), depth first. The covering set
    branches only on values no point has had yet: each value of each parameter appears in one point at least.

    Returns:
        Points as `SearchSpace.sample` gives them (dotted path -> value, active fixed values included), and whether
        they are all the combinations.
    """
    points = _walk(space, num_layers, limit, every=True)
    if len(points) <= limit:
        return points, True
    return _walk(space, num_layers, None, every=False), False


def _walk(space: SearchSpace, num_layers: int, limit: int | None, every: bool) -> list[dict[str, Any]]:
    """Points depth first, branching on every value (`every`) or on values not seen yet; stops past `limit`."""
    points: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    pending: list[list[int]] = [[]]
    while pending and (limit is None or len(points) <= limit):
        prefix = pending.pop()
        trial = _ScriptedTrial(prefix)
        points.append(space.sample(trial, num_layers))
        seen.update(zip(trial.names, trial.taken))
        branches = []
        for i in range(len(prefix), len(trial.names)):
            for alt in range(1, trial.widths[i]):
                if every or (trial.names[i], alt) not in seen:
                    seen.add((trial.names[i], alt))
                    branches.append(trial.taken[:i] + [alt])
        pending.extend(reversed(branches))
    return points


def check_space(base: TrialConfig, space: SearchSpace, num_layers: int, bench: Benchmark,
                machine: list[dict[str, float]] | None) -> None:
    """Resolve every point of `space` (see `space_points`) against `base` as its trial would.

    Args:
        base: the sweep's base trial config, already checked on its own.
        space: the resolved search space.
        num_layers: decoder layers of the model.
        bench: the loaded benchmark (paraphrases for `clreg.positives: paraphrase`).
        machine: the nodes a local cluster would have, to refuse a trial that cannot fit; None on a joined cluster,
            where the sweep only warns (an autoscaler may add nodes).

    Raises:
        SpaceError naming the space parameter, its value and what base or the method allows.
    """
    base_dict = base.model_dump(mode="json", by_alias=True)
    paraphrases: str | None = None  # found once, when a point first needs them: "" when the data has them
    for point in space_points(space, num_layers)[0]:
        cfg = _trial(base_dict, point, space)
        method = _check_method(cfg, point, space)
        if cfg.clreg.enabled:
            _check_layer(cfg, point, space, num_layers)
        _check_method_layer(method, cfg, point, space, num_layers)
        if cfg.clreg.enabled and cfg.clreg.positives == "paraphrase":
            paraphrases = _paraphrase_problem(bench) if paraphrases is None else paraphrases
            if paraphrases:
                key = "clreg.positives" if "clreg.positives" in point else "clreg.enabled"
                raise SpaceError(f"{_origin(space, key, point)}: {paraphrases}")
        if machine is not None:
            _check_fits(cfg, point, space, machine)


def _trial(base: dict[str, Any], point: dict[str, Any], space: SearchSpace) -> TrialConfig:
    try:
        return TrialConfig.model_validate(apply(base, point))
    except ValidationError as e:
        reasons = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:3])
        raise SpaceError(f"space: the combination {_combination(point)} is not a valid trial config: "
                         f"{reasons}") from None


def _check_method(cfg: TrialConfig, point: dict[str, Any], space: SearchSpace) -> ResolvedMethod:
    name = cfg.method.name
    try:
        return resolve_method(cfg.method)
    except ValueError as error:
        problem = str(error)
    if name not in METHODS:
        raise SpaceError(f"{_origin(space, 'method.name', point)} is not a method; allowed: "
                         f"{', '.join(METHODS.names())}")
    takes = METHODS.get(name).accepts
    foreign = [p for p in point if p.startswith("method.") and p.split(".", 1)[1] not in (*takes, "name",
                                                                                           "retain_loss")]
    if foreign:
        when = f" (when method.name={name})" if "method.name" in point else f" (base.method.name is {name})"
        raise SpaceError(f"space.{foreign[0]}: {name} does not take {foreign[0].split('.', 1)[1]}{when}; its "
                         f"parameters: {', '.join(sorted(takes))}")
    if "method.name" in point:
        raise SpaceError(f"{_origin(space, 'method.name', point)} with base.method: {problem}")
    raise SpaceError(f"space: the combination {_combination(point)}: {problem}")


def _check_method_layer(method: ResolvedMethod, cfg: TrialConfig, point: dict[str, Any], space: SearchSpace,
                        num_layers: int) -> None:
    """A method with a layer of its own (RMU's `method.layer`) must find it in the model."""
    layer = method.layer
    if layer is None or LayerSpec.parse(layer).fits(num_layers):
        return
    if "method.layer" in point:
        raise SpaceError(f"{_origin(space, 'method.layer', point)} is deeper than the {num_layers}-layer model; "
                         f"{allowed_layers(num_layers)}")
    written = "base.method.layer" if cfg.method.layer is not None else f"{cfg.method.name}'s default method.layer"
    raise SpaceError(f"space: the combination {_combination(point)}: {written} {layer!r} is deeper than the "
                     f"{num_layers}-layer model; {allowed_layers(num_layers)}")


def _check_layer(cfg: TrialConfig, point: dict[str, Any], space: SearchSpace, num_layers: int) -> None:
    try:
        LayerSpec.parse(cfg.clreg.layer).index(num_layers)
    except LayerError as error:
        if "clreg.layer" in point:
            raise SpaceError(f"{_origin(space, 'clreg.layer', point)} is deeper than the {num_layers}-layer model; "
                             f"{allowed_layers(num_layers)}") from None
        raise SpaceError(f"{_origin(space, 'clreg.enabled', point)} turns CLReg on at base.clreg.layer: "
                         f"{error}") from None


def _paraphrase_problem(bench: Benchmark) -> str:
    try:
        require_paraphrases(bench)
    except ValueError as error:
        return str(error)
    return ""


def _check_fits(cfg: TrialConfig, point: dict[str, Any], space: SearchSpace, machine: list[dict[str, float]]) -> None:
    try:
        check_trial_fits(cfg.train, machine, "this machine (a sweep without --address runs here)")
    except ValueError as error:
        key = next((k for k in RESOURCE_PATHS if k in point), None)
        where = _origin(space, key, point) if key else f"space: the combination {_combination(point)}"
        raise SpaceError(f"{where}: {error}") from None


def _origin(space: SearchSpace, key: str, point: dict[str, Any]) -> str:
    """`space.<key>: <kind> <value>`, the kind saying where the value comes from (choice, grid value, ...)."""
    param = space.params.get(key)
    if param is None:
        kind = "fixed value"
    elif is_grid(param):
        kind = "grid value"
    elif isinstance(param, CategoricalParam):
        kind = "choice"
    elif isinstance(param, (FloatParam, IntParam)):
        kind = "range bound"
    else:
        kind = "layer"
    return f"space.{key}: {kind} {_short(point.get(key))}"


def _combination(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in point.items()) or "(base alone)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "..."
