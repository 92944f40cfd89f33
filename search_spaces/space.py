"""A declarative search space: which trial-config fields a sweep varies, and how.

A space is a YAML mapping (or dict) parsed into pydantic models, so a typo or an impossible range is refused with
an error that names the parameter before any trial starts::

    description: CLReg on SimNPO
    parameters:                      # dotted TrialConfig paths; mapping order is kept and matters
      method.name: {type: categorical, choices: [simnpo, npo, pdu]}
      method.beta: {type: float, low: 0.05, high: 1.0, when: {method.name: npo}}
      clreg.enabled: {type: categorical, choices: [true, false]}
      clreg.tau: {type: float, low: 0.05, high: 1.0}
      clreg.lambda: {type: float, low: 1.0e-3, high: 10, log: true}
      clreg.layer: {type: layer, last: [1, 4]}
      train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    fixed:                           # dotted path -> value for every trial (optionally conditional)
      method.eps: {value: 0.3, when: {method.name: pdu}}
    seeds: [0, 1, 2]                 # every point runs with each training seed (see "Seeds")

Parameter types:
    float / int: a range `low < high`, optional `log` (needs low > 0) or `step` (not both).
    categorical: `choices`, sampled by the sampler.
    grid: `values`, enumerated exhaustively (see "Grid semantics").
    layer: `last: [k_min, k_max]` (the choices last-k_min .. last-k_max) or `values: [last-1, last-4, 3]`;
        sampled as a categorical, or enumerated like a grid with `grid: true`. The choices are clipped to the
        model's depth when they are used: entries deeper than `num_layers` are dropped and entries naming the same
        layer are de-duplicated (the first spelling is kept); nothing left is an error.

Conditions: `when: {param: value or [values]}` makes a parameter (or fixed value) active only when every named
parameter, which must be defined earlier, was given one of the listed values; an inactive parameter is absent
from the sample. The CLReg switch is built in: when `clreg.enabled` is false in a trial, no other `clreg.*`
parameter or fixed value is set, so a baseline trial neither spends sampler budget on nor records unused knobs.
A `fixed` entry is a plain value, or `{value: v, when: {...}}` (a mapping with a `value` key) for a value only
some trials get, such as PDU's eps that other methods refuse; a fixed `clreg.enabled` must be unconditional.

Seeds: `seeds` gives differences a spread. In a space of grid parameters only (the ablation presets) it is the
grid parameter `train.seed`, so each (combination, seed) is its own trial and reports group trials by
combination. In a space with sampled parameters one sampled point must be scored with every seed before the
sampler learns from it, so the seeds are `repeat_seeds`: the sweep runs each trial's point once per seed and
reports the mean of every metric (plus `<metric>_std`) as the trial's result.

Grid semantics: the grid is the cross product of the grid parameters (inactive ones dropped, so no combination
repeats). A sweep runs every grid combination once per sample of the other parameters, as Ray Tune's
`grid_search` does: `num_samples` N gives N x len(grid()) trials, and a space of grid parameters only runs
each combination once with N = 1. With Optuna, enqueue each `grid()` combination (`study.enqueue_trial`) or use
`GridSampler(space.grid_search_space(num_layers))` when every parameter is finite; `sample` then returns the
enqueued values because grid parameters are suggested as categoricals.
"""

from __future__ import annotations

import abc
import copy
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from trainables.config import MAX_SEED, StrictModel, TrialConfig, short_repr
from trainables.model.layers import LayerSpec

if typing.TYPE_CHECKING:
    from optuna.trial import BaseTrial

# The values Optuna accepts as categorical choices (optuna.distributions.CategoricalChoiceType).
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr | None
LayerValue = StrictInt | StrictStr  # as a config writes a layer (LayerSpec.parse)

PARAM_TYPES = ("float", "int", "categorical", "grid", "layer")
CLREG_SWITCH = "clreg.enabled"
SEED_PATH = "train.seed"


class SearchSpaceError(ValueError):
    """A search space that cannot be used, with the parameter at fault named in the message."""


class _Conditional(StrictModel):
    """Shared `when` field: parameter name -> the values that activate the owner (a scalar means one value)."""

    when: dict[str, list[Scalar]] = Field(default_factory=dict)

    @field_validator("when", mode="before")
    @classmethod
    def _scalars_to_lists(cls, when: Any) -> Any:
        if not isinstance(when, Mapping):
            return when
        return {name: list(v) if isinstance(v, (list, tuple)) else [v] for name, v in when.items()}


class _Param(_Conditional):
    """What every parameter type answers; `SearchSpace` calls only these, never asks for the concrete type."""

    @abc.abstractmethod
    def options(self, num_layers: int | None) -> list[Any] | None:
        """The finite list of values a grid enumerates or GridSampler takes; None for a range."""

    @abc.abstractmethod
    def bounds(self) -> list[Any]:
        """The values to check against the trial config before any trial: every choice, or a range's ends."""

    @abc.abstractmethod
    def suggest(self, trial: BaseTrial, name: str, num_layers: int) -> Any:
        """Ask `trial` for this parameter's value under `name` (define-by-run)."""


class FloatParam(_Param):
    """A real range, uniform or log-uniform, optionally discretised by `step`."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> FloatParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined (Optuna has no stepped log scale)")
        return self

    def options(self, num_layers: int | None) -> list[Any] | None:
        return None

    def bounds(self) -> list[Any]:
        """A valid range has valid ends."""
        return [self.low, self.high]

    def suggest(self, trial: BaseTrial, name: str, num_layers: int) -> Any:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


class IntParam(_Param):
    """An integer range, uniform or log-uniform, with a step."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check_range(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("log and step cannot be combined (Optuna has no stepped log scale)")
        return self

    def options(self, num_layers: int | None) -> list[Any] | None:
        """None: sampled by range, not from a list (use `grid` to enumerate integers)."""
        return None

    def bounds(self) -> list[Any]:
        return [self.low, self.high]

    def suggest(self, trial: BaseTrial, name: str, num_layers: int) -> Any:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)


class CategoricalParam(_Param):
    """A finite list of values: `categorical` (`choices`, picked by the sampler) or `grid` (`values`, every one
    run, see "Grid semantics"). One class, since the two differ only in who picks the value."""

    type: Literal["categorical", "grid"]
    choices: list[Scalar] | None = Field(None, min_length=1)
    values: list[Scalar] | None = Field(None, min_length=1)

    @field_validator("choices", "values", mode="before")
    @classmethod
    def _finite(cls, values: Any, info: ValidationInfo) -> Any:
        return _check_finite(values, info.field_name)

    @field_validator("choices", "values")
    @classmethod
    def _unique(cls, values: list[Any] | None, info: ValidationInfo) -> list[Any] | None:
        return None if values is None else _check_unique(values, info.field_name)

    @model_validator(mode="after")
    def _one_list(self) -> CategoricalParam:
        """Each type has its YAML key: `choices` for categorical, `values` for grid."""
        key, other = ("values", "choices") if self.grid else ("choices", "values")
        if getattr(self, other) is not None:
            raise ValueError(f"a {self.type} parameter lists its values under `{key}`, not `{other}`")
        if getattr(self, key) is None:
            raise ValueError(f"a {self.type} parameter needs `{key}`: a list of values")
        return self

    @property
    def grid(self) -> bool:
        """Whether `grid()` enumerates the values rather than the sampler choosing one."""
        return self.type == "grid"

    @property
    def items(self) -> list[Scalar]:
        """The values, whichever key they were given under."""
        return list(self.values if self.grid else self.choices or [])

    def options(self, num_layers: int | None) -> list[Any] | None:
        return self.items

    def bounds(self) -> list[Any]:
        return self.items

    def suggest(self, trial: BaseTrial, name: str, num_layers: int) -> Any:
        # A grid value is suggested as a categorical too, so that GridSampler or an enqueued grid combination
        # decides it.
        return trial.suggest_categorical(name, self.items)


class LayerParam(_Param):
    """A CLReg target layer counted from the top, clipped to the model's depth when it is used."""

    type: Literal["layer"]
    last: tuple[int, int] | None = Field(None, description="[k_min, k_max]: the choices last-k_min .. last-k_max")
    values: list[LayerValue] | None = Field(None, min_length=1, description="'last-k' strings or 0-based indices")
    grid: bool = Field(False, description="enumerate the layers like a grid parameter instead of sampling one")

    @model_validator(mode="after")
    def _check_layers(self) -> LayerParam:
        if (self.last is None) == (self.values is None):
            raise ValueError("give exactly one of last: [k_min, k_max] or values: [last-k or index, ...]")
        if self.last is not None and not 1 <= self.last[0] <= self.last[1]:
            raise ValueError(f"last must be [k_min, k_max] with 1 <= k_min <= k_max, got {list(self.last)}")
        if self.values is not None:
            _check_unique(self.values, "values")
            for value in self.values:
                LayerSpec.parse(value)
        return self

    def specs(self) -> list[LayerSpec]:
        """The layers as written, before clipping."""
        if self.last is not None:
            return [LayerSpec(k, from_top=True) for k in range(self.last[0], self.last[1] + 1)]
        return [LayerSpec.parse(value) for value in self.values or []]

    def options(self, num_layers: int | None) -> list[Any] | None:
        """The layers that exist in a model of `num_layers` decoder layers, one spelling per layer."""
        if num_layers is None:
            raise ValueError("layers are clipped to the model's depth, so num_layers is needed")
        _check_depth(num_layers)
        kept: dict[int, LayerValue] = {}
        for spec in self.specs():
            if spec.fits(num_layers):
                kept.setdefault(spec.index(num_layers), spec.value)
        if not kept:
            written = [spec.value for spec in self.specs()]
            raise ValueError(f"none of the layers {written} exists in a model with {num_layers} layers")
        return list(kept.values())

    def bounds(self) -> list[Any]:
        return [spec.value for spec in self.specs()]

    def suggest(self, trial: BaseTrial, name: str, num_layers: int) -> Any:
        return trial.suggest_categorical(name, self.options(num_layers))


Param = Annotated[FloatParam | IntParam | CategoricalParam | LayerParam, Field(discriminator="type")]


class FixedValue(_Conditional):
    """A value set in every trial (or, with `when`, in the trials whose parameters match)."""

    value: Any


def is_grid(param: Param) -> bool:
    """Whether the parameter is enumerated by `grid()` rather than sampled."""
    return isinstance(param, (CategoricalParam, LayerParam)) and param.grid


class SearchSpace(StrictModel):
    """A parsed search space (format in the module docstring); build it with `from_dict` or `from_yaml`."""

    description: str = ""
    parameters: dict[str, Param] = Field(default_factory=dict)
    fixed: dict[str, FixedValue] = Field(default_factory=dict)
    seeds: list[Annotated[StrictInt, Field(ge=0, le=MAX_SEED)]] | None = Field(
        None, min_length=1,
        description="training seeds each point runs with, each 0 .. 2**32-1 (a grid axis, or repeats; see module)",
    )

    _params: dict[str, Param] = PrivateAttr(default_factory=dict)

    @field_validator("parameters", mode="before")
    @classmethod
    def _check_types(cls, parameters: Any) -> Any:
        """Name the parameter and the allowed types when `type` is missing or unknown (pydantic names neither)."""
        for name, spec in parameters.items() if isinstance(parameters, Mapping) else []:
            if not isinstance(spec, Mapping):
                raise ValueError(
                    f"parameter {name!r}: expected a mapping with a 'type' ({', '.join(PARAM_TYPES)}), "
                    f"got {short_repr(spec)}; "
                    "a constant belongs in `fixed:`"
                )
            if spec.get("type") not in PARAM_TYPES:
                raise ValueError(
                    f"parameter {name!r}: unknown type {short_repr(spec.get('type'))}; "
                    f"allowed: {', '.join(PARAM_TYPES)}"
                )
        return parameters

    @field_validator("fixed", mode="before")
    @classmethod
    def _wrap_plain_values(cls, fixed: Any) -> Any:
        """A plain value means "always"; a mapping with a `value` key is the conditional form."""
        if not isinstance(fixed, Mapping):
            return fixed
        return {path: v if isinstance(v, Mapping) and "value" in v else {"value": v} for path, v in fixed.items()}

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        self._params = dict(self.parameters)
        if self.seeds is not None:
            if SEED_PATH in self.parameters:
                raise ValueError(f"parameter {SEED_PATH!r} and `seeds` both set the seed; keep one of them")
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError(f"seeds: each seed may appear once, got {self.seeds}")
            if not self.repeat_seeds:
                self._params[SEED_PATH] = CategoricalParam(type="grid", values=list(self.seeds))
        self._check_paths()
        self._check_conditions()
        self._check_clreg_switch()
        self._check_values()
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        """Parse and validate a space; every problem is reported as a `SearchSpaceError` naming the parameter."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SearchSpaceError(_describe(exc)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        """Parse a YAML space file (mapping order is the parameter order, which conditions rely on)."""
        data = yaml.safe_load(Path(path).read_text())
        if not isinstance(data, Mapping):
            raise SearchSpaceError(f"{path}: a search space file must be a mapping, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except SearchSpaceError as exc:
            raise SearchSpaceError(f"{path}: {exc}") from None

    @property
    def params(self) -> dict[str, Param]:
        """All parameters in sampling order; in a pure grid, `seeds` as the grid parameter `train.seed`."""
        return dict(self._params)

    @property
    def repeat_seeds(self) -> list[int]:
        """The seeds each sampled point runs with inside one trial; [] when `seeds` is a grid axis or unset."""
        if self.seeds is None or all(is_grid(p) for p in self.parameters.values()):
            return []
        return list(self.seeds)

    def with_seeds(self, seeds: list[int]) -> SearchSpace:
        """The same space with `seeds` replaced (a sweep's `search.trial_seeds`), validated again."""
        data = self.model_dump(mode="json", exclude_unset=True)
        data["seeds"] = seeds
        return type(self).from_dict(data)

    def sample(self, trial: BaseTrial, num_layers: int) -> dict[str, Any]:
        """Sample one trial define-by-run: active parameters in order, then the active fixed values.

        Args:
            trial: the Optuna trial; each parameter is suggested under its dotted name.
            num_layers: decoder layers of the model, to clip `layer` parameters.

        Returns:
            Dotted path -> value for the active parameters and fixed values, ready for `apply`.
        """
        _check_depth(num_layers)
        chosen: dict[str, Any] = {}
        for name, param in self._params.items():
            if self._is_active(name, param.when, chosen):
                chosen[name] = self._with_name(name, param.suggest, trial, name, num_layers)
        return {**chosen, **self._active_fixed(chosen)}

    def grid(self, num_layers: int | None = None) -> list[dict[str, Any]]:
        """The cross product of the grid parameters, without inactive ones (so no combination repeats).

        Args:
            num_layers: decoder layers of the model; needed only when a `layer` parameter has `grid: true`.

        Returns:
            One dict per combination (dotted name -> value), in order with the last parameter varying fastest;
            [{}] when there are no grid parameters (one combination: nothing to enumerate).
        """
        combos: list[dict[str, Any]] = [{}]
        for name, param in self._params.items():
            if is_grid(param):
                values = self._with_name(name, param.options, num_layers)
                combos = [bigger for combo in combos for bigger in self._extend(combo, name, param.when, values)]
        return combos

    def grid_search_space(self, num_layers: int) -> dict[str, list[Any]]:
        """The space for `optuna.samplers.GridSampler`: every parameter's finite list of values.

        GridSampler enumerates the full cross product, conditions ignored, so with conditional parameters some of
        its trials coincide; enqueueing the `grid()` combinations avoids that.

        Raises:
            SearchSpaceError: when a float or int range has no finite list of values.
        """
        _check_depth(num_layers)
        ranges = [name for name, param in self._params.items() if isinstance(param, (FloatParam, IntParam))]
        if ranges:
            raise SearchSpaceError(
                f"GridSampler needs finite values; parameters {ranges} are float/int ranges "
                "(allowed types: grid, categorical, layer)"
            )
        return {name: self._with_name(name, param.options, num_layers) for name, param in self._params.items()}

    def _is_active(self, name: str, when: Mapping[str, list[Any]], chosen: Mapping[str, Any]) -> bool:
        """Whether a parameter or fixed value applies, given the values chosen so far."""
        if name.startswith("clreg.") and name != CLREG_SWITCH and not self._clreg_enabled(chosen):
            return False
        return all(ref in chosen and _contains(allowed, chosen[ref]) for ref, allowed in when.items())

    def _clreg_enabled(self, chosen: Mapping[str, Any]) -> bool:
        """The CLReg switch of this trial: sampled, else fixed (unconditionally, see validation), else on."""
        if CLREG_SWITCH in chosen:
            return bool(chosen[CLREG_SWITCH])
        if CLREG_SWITCH in self.fixed:
            return bool(self.fixed[CLREG_SWITCH].value)
        return True

    def _active_fixed(self, chosen: Mapping[str, Any]) -> dict[str, Any]:
        return {path: copy.deepcopy(f.value) for path, f in self.fixed.items() if self._is_active(path, f.when, chosen)}

    def _extend(
        self, combo: dict[str, Any], name: str, when: Mapping[str, list[Any]], values: list[Any]
    ) -> list[dict[str, Any]]:
        """The combinations that add each value of one grid parameter to `combo` (just `combo` if inactive)."""
        if not self._is_active(name, when, combo):
            return [combo]
        return [{**combo, name: value} for value in values]

    @staticmethod
    def _with_name(name: str, func: Callable[..., Any], *args: Any) -> Any:
        """Call `func`, turning a ValueError into a `SearchSpaceError` that names the parameter."""
        try:
            return func(*args)
        except ValueError as exc:
            raise SearchSpaceError(f"parameter {name!r}: {exc}") from None

    def _check_paths(self) -> None:
        """Every path must be a TrialConfig field, and no two entries may set the same field (lam vs lambda)."""
        seen: dict[tuple[str, ...], str] = {}
        for kind, name in [("parameter", n) for n in self._params] + [("fixed value", n) for n in self.fixed]:
            try:
                canonical = tuple(key.name for key in resolve_path(name))
            except ValueError as exc:
                raise ValueError(f"{kind} {name!r}: {exc}") from None
            if canonical in seen:
                raise ValueError(f"{kind} {name!r} sets the same config field as {seen[canonical]!r}")
            seen[canonical] = name

    def _check_conditions(self) -> None:
        """`when` must name earlier, discrete parameters and values they can take (grid: grid parameters only)."""
        names = list(self._params)
        for position, (name, param) in enumerate(self._params.items()):
            for ref, allowed in param.when.items():
                if ref in names and names.index(ref) >= position:
                    raise ValueError(
                        f"parameter {name!r}: `when` refers to {ref!r}, which is not defined before it; "
                        "conditions must refer to earlier parameters"
                    )
                self._check_reference(f"parameter {name!r}", ref, allowed)
                if is_grid(param) and not is_grid(self._params[ref]):
                    raise ValueError(
                        f"parameter {name!r}: a grid parameter's `when` must refer to grid parameters, "
                        f"{ref!r} is sampled (the grid is enumerated before sampling)"
                    )
        for path, fixed in self.fixed.items():
            for ref, allowed in fixed.when.items():
                self._check_reference(f"fixed value {path!r}", ref, allowed)

    def _check_reference(self, owner: str, ref: str, allowed: list[Any]) -> None:
        if ref not in self._params:
            raise ValueError(
                f"{owner}: `when` refers to {ref!r}, which is not a parameter; parameters: {list(self._params)}"
            )
        target = self._params[ref]
        if isinstance(target, (FloatParam, IntParam)):
            raise ValueError(f"{owner}: `when` refers to the range {ref!r}; conditions need a categorical/grid/layer")
        possible = target.bounds()
        unknown = [v for v in allowed if not _contains(possible, v)]
        if unknown:
            raise ValueError(f"{owner}: `when` lists {unknown} for {ref!r}, which only takes {possible}")

    def _check_clreg_switch(self) -> None:
        """The switch must be decided before the parameters it turns off, and by the grid for grid ones."""
        gated = [n for n in self._params if n.startswith("clreg.") and n != CLREG_SWITCH]
        if CLREG_SWITCH in self.fixed and self.fixed[CLREG_SWITCH].when:
            raise ValueError(f"fixed value {CLREG_SWITCH!r}: cannot have `when`; make it a parameter instead")
        if CLREG_SWITCH not in self._params:
            return
        names = list(self._params)
        switch = self._params[CLREG_SWITCH]
        for name in gated:
            if names.index(name) < names.index(CLREG_SWITCH):
                raise ValueError(
                    f"parameter {name!r}: must come after {CLREG_SWITCH!r}, which decides whether it is sampled"
                )
            if is_grid(self._params[name]) and not is_grid(switch):
                raise ValueError(
                    f"parameter {name!r}: a grid clreg.* parameter needs {CLREG_SWITCH!r} to be a grid parameter"
                )

    def _check_values(self) -> None:
        """Each choice, range end and fixed value must be accepted by TrialConfig (e.g. tau > 0)."""
        checks = [(f"parameter {n!r}", n, v) for n, p in self._params.items() for v in p.bounds()]
        checks += [(f"fixed value {n!r}", n, f.value) for n, f in self.fixed.items()]
        for owner, path, value in checks:
            try:
                TrialConfig.model_validate(apply({}, {path: value}))
            except ValidationError as exc:
                reason = "; ".join(e["msg"] for e in exc.errors())
                raise ValueError(
                    f"{owner}: value {short_repr(value)} is not valid in the trial config: {reason}"
                ) from None


class ConfigKey(NamedTuple):
    """One step of a dotted path: the spelling to write (alias if any) and other spellings of the same field."""

    name: str
    others: tuple[str, ...]


@functools.cache
def resolve_path(path: str) -> tuple[ConfigKey, ...]:
    """Resolve a dotted path against TrialConfig's `model_fields`, accepting field names and aliases.

    Raises:
        ValueError: naming the first unknown segment and the fields allowed there.
    """
    model: type[BaseModel] | None = TrialConfig
    keys: list[ConfigKey] = []
    parts = path.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth]) or "the trial config"
        if model is None:
            raise ValueError(f"{path!r} is not a config field: {where!r} is a value, not a section")
        fields = {(info.alias or name): (name, info) for name, info in model.model_fields.items()}
        match = next(((key, name, info) for key, (name, info) in fields.items() if part in (key, name)), None)
        if match is None:
            raise ValueError(f"{path!r} is not a config field: {where} has no {part!r}; allowed: {sorted(fields)}")
        key, name, info = match
        keys.append(ConfigKey(key, (name,) if name != key else ()))
        model = _section_model(info.annotation)
    return tuple(keys)


def apply(trial_config_dict: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Set dotted-path values into a nested trial-config dict; the input is not modified.

    Aliases are written under the alias (the spelling config files use, e.g. `clreg.lambda`), and another
    spelling of the same field already in the dict (`lam`) is removed, so the result never holds both.

    Raises:
        ValueError: when a path is not a TrialConfig field.
    """
    config = copy.deepcopy(dict(trial_config_dict))
    for path, value in params.items():
        keys = resolve_path(path)
        node = config
        for key in keys[:-1]:
            child = _canonical_value(node, key)
            if not isinstance(child, dict):
                child = node[key.name] = {}
            node = child
        _canonical_value(node, keys[-1])
        node[keys[-1].name] = copy.deepcopy(value)
    return config


def _canonical_value(node: dict[str, Any], key: ConfigKey) -> Any:
    """Move a value stored under another spelling of the field to the canonical one; return it (or None)."""
    for other in key.others:
        if other in node:
            value = node.pop(other)
            node.setdefault(key.name, value)
    return node.get(key.name)


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (also inside `X | None`), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 else None
    return None


def _check_range(low: float, high: float, log: bool) -> None:
    if low >= high:
        raise ValueError(f"low must be < high, got low={low}, high={high}")
    if log and low <= 0:
        raise ValueError(f"log: true needs low > 0, got low={low}")


def _check_unique(values: list[Any], field: str) -> list[Any]:
    """Refuse repeated values: a repeat would silently double its weight in sampling or its runs in a grid."""
    keys = [(type(v) is bool, v) for v in values]
    repeated = [v for i, v in enumerate(values) if keys[i] in keys[:i]]
    if repeated:
        raise ValueError(f"{field} must not repeat a value, got {short_repr(values)} "
                         f"(repeated: {short_repr(repeated)})")
    return values


def _check_finite(values: Any, field: str) -> Any:
    """Refuse `.inf` and `.nan` among the values, with one message (the union of choice types would give four)."""
    if isinstance(values, (list, tuple)):
        bad = [v for v in values if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ValueError(f"{field} must be finite numbers, got {short_repr(bad)}")
    return values


def _contains(allowed: list[Any], value: Any) -> bool:
    """Membership that tells booleans from integers (True == 1 in Python, not in a config)."""
    return any((type(a) is bool) == (type(value) is bool) and a == value for a in allowed)


def _check_depth(num_layers: int) -> None:
    if num_layers < 1:
        raise SearchSpaceError(f"num_layers must be >= 1, got {num_layers}")


def _describe(exc: ValidationError) -> str:
    """One line per pydantic error, led by the parameter it concerns rather than pydantic's location tuple."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        reason = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
        if len(loc) >= 2 and loc[0] in ("parameters", "fixed"):
            owner = f"{'parameter' if loc[0] == 'parameters' else 'fixed value'} {loc[1]!r}"
            field = loc[3:] if loc[0] == "parameters" else loc[2:]  # parameters: skip the union tag
            lines.append(f"{owner}{f' ({field[0]})' if field else ''}: {reason}")
        elif error["type"] == "value_error":  # raised by a validator here: the message names its owner
            lines.append(reason)
        else:
            lines.append(f"{'.'.join(loc) + ': ' if loc else ''}{reason}")
    return "\n".join(lines)
