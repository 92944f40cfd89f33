"""Search spaces: parsing and validation errors, define-by-run sampling with real Optuna studies, grids, presets."""

from __future__ import annotations

import optuna
import pytest
import yaml

from search_spaces.presets import PRESETS, load_preset
from search_spaces.space import SearchSpace, SearchSpaceError, apply
from trainables.config import TrialConfig
from trainables.objectives import METHODS
from trainables.registry import UnknownNameError

optuna.logging.set_verbosity(optuna.logging.WARNING)

SHIPPED = ["clreg-default", "layer-ablation", "method-compare", "rmu-layer-ablation", "tau-ablation"]

EXAMPLE = """
parameters:
  method.name: {type: categorical, choices: [simnpo, npo]}
  clreg.enabled: {type: categorical, choices: [true, false]}
  clreg.tau: {type: float, low: 0.05, high: 1.0}
  clreg.lambda: {type: float, low: 1.0e-3, high: 10, log: true}
  clreg.layer: {type: layer, last: [1, 4]}
  method.beta: {type: float, low: 0.05, high: 1.0, when: {method.name: npo}}
  train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
  train.epochs: {type: int, low: 1, high: 7, step: 2}
  train.seed: {type: grid, values: [0, 1, 2]}
fixed:
  method.gamma: {value: 0.5, when: {method.name: npo}}
  eval.every: 1
"""


def _example() -> SearchSpace:
    return SearchSpace.from_dict(yaml.safe_load(EXAMPLE))


def _samples(space: SearchSpace, num_layers: int, n: int, sampler=None) -> list[dict]:
    """Sample `n` trials with a real in-memory study, telling each one so the sampler moves on."""
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.sample(trial, num_layers))
        study.tell(trial, 0.0)
    return out


def _valid_config(params: dict) -> TrialConfig:
    return TrialConfig.model_validate(apply({}, params))


# --- sampling -----------------------------------------------------------------------------------------------------


def test_example_samples_within_its_ranges():
    for params in _samples(_example(), num_layers=8, n=60):
        _valid_config(params)
        assert params["method.name"] in ("simnpo", "npo")
        assert 1.0e-5 <= params["train.lr"] <= 1.0e-3
        assert params["train.epochs"] in (1, 3, 5, 7)
        assert params["train.seed"] in (0, 1, 2)
        assert params["eval.every"] == 1
        if params["clreg.enabled"]:
            assert 0.05 <= params["clreg.tau"] <= 1.0
            assert 1.0e-3 <= params["clreg.lambda"] <= 10
            assert params["clreg.layer"] in ("last-1", "last-2", "last-3", "last-4")


def test_conditions_beta_and_fixed_value_only_for_npo():
    samples = _samples(_example(), num_layers=8, n=60)
    assert {p["method.name"] for p in samples} == {"simnpo", "npo"}
    for params in samples:
        assert ("method.beta" in params) == (params["method.name"] == "npo")
        assert ("method.gamma" in params) == (params["method.name"] == "npo")


def test_clreg_disabled_samples_no_clreg_parameter():
    samples = _samples(_example(), num_layers=8, n=60)
    assert {p["clreg.enabled"] for p in samples} == {True, False}
    for params in samples:
        clreg = {k for k in params if k.startswith("clreg.")}
        assert clreg == (
            {"clreg.enabled", "clreg.tau", "clreg.lambda", "clreg.layer"}
            if params["clreg.enabled"]
            else {"clreg.enabled"}
        )


def test_inactive_parameters_are_not_optuna_params():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    space = _example()
    for _ in range(20):
        trial = study.ask()
        params = space.sample(trial, 8)
        study.tell(trial, 0.0)
        optuna_params = study.trials[-1].params
        assert optuna_params == {k: v for k, v in params.items() if k not in ("method.gamma", "eval.every")}


def test_layer_range_is_clipped_to_the_model_depth():
    layers = {p.get("clreg.layer") for p in _samples(_example(), num_layers=2, n=60)} - {None}
    assert layers == {"last-1", "last-2"}


def test_layer_values_clip_and_deduplicate():
    space = SearchSpace.from_dict(
        {"parameters": {"clreg.layer": {"type": "layer", "values": ["last-1", 7, "last-3", 2]}}}
    )
    assert space.grid_search_space(8) == {"clreg.layer": ["last-1", "last-3", 2]}  # 7 is last-1 at 8 layers
    assert space.grid_search_space(3) == {"clreg.layer": ["last-1", "last-3"]}  # 2 is last-1 at 3 layers
    assert space.grid_search_space(2) == {"clreg.layer": ["last-1"]}


def test_no_layer_left_after_clipping_names_the_parameter():
    space = SearchSpace.from_dict({"parameters": {"clreg.layer": {"type": "layer", "values": ["last-5", "last-7"]}}})
    study = optuna.create_study()
    with pytest.raises(SearchSpaceError, match=r"parameter 'clreg.layer': none of the layers \['last-5', 'last-7'\]"):
        space.sample(study.ask(), num_layers=4)
    with pytest.raises(SearchSpaceError, match="num_layers must be >= 1"):
        space.sample(study.ask(), num_layers=0)


def test_sample_with_fixed_trial_is_deterministic():
    params = {"method.name": "npo", "clreg.enabled": True, "clreg.tau": 0.2, "clreg.lambda": 0.1}
    params |= {"clreg.layer": "last-2", "method.beta": 0.3, "train.lr": 1e-4, "train.epochs": 3, "train.seed": 1}
    assert _example().sample(optuna.trial.FixedTrial(params), 8) == params | {"method.gamma": 0.5, "eval.every": 1}


# --- grids --------------------------------------------------------------------------------------------------------


def test_grid_is_the_cross_product_last_parameter_fastest():
    space = SearchSpace.from_dict(
        {"parameters": {"method.name": {"type": "grid", "values": ["npo", "simnpo"]}}, "seeds": [0, 1]}
    )
    assert space.grid() == [
        {"method.name": "npo", "train.seed": 0},
        {"method.name": "npo", "train.seed": 1},
        {"method.name": "simnpo", "train.seed": 0},
        {"method.name": "simnpo", "train.seed": 1},
    ]


def test_grid_drops_inactive_parameters_without_repeats():
    space = SearchSpace.from_dict(
        {
            "parameters": {
                "clreg.enabled": {"type": "grid", "values": [True, False]},
                "clreg.tau": {"type": "grid", "values": [0.1, 0.5, 0.9]},
                "method.name": {"type": "grid", "values": ["npo", "simnpo"]},
                "method.beta": {"type": "grid", "values": [0.1, 1.0], "when": {"method.name": "npo"}},
            }
        }
    )
    grid = space.grid()
    assert len(grid) == (3 + 1) * (2 + 1)
    assert {"clreg.enabled": False, "method.name": "simnpo"} in grid
    assert all("clreg.tau" not in combo for combo in grid if not combo["clreg.enabled"])


def test_grid_without_grid_parameters_is_one_empty_combination():
    assert load_preset("clreg-default").grid() == [{}]


def test_enqueued_grid_combinations_drive_a_mixed_space():
    space = SearchSpace.from_dict(
        {
            "parameters": {
                "clreg.tau": {"type": "grid", "values": [0.1, 0.9]},
                "train.lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
                "train.seed": {"type": "grid", "values": [0, 1, 2]},
            },
        }
    )
    study = optuna.create_study()
    for combo in space.grid():
        study.enqueue_trial(combo)
    seen = []
    for combo in space.grid():
        trial = study.ask()
        params = space.sample(trial, 8)
        study.tell(trial, 0.0)
        assert {k: params[k] for k in combo} == combo and "train.lr" in params
        seen.append(combo)
    assert len(seen) == 6


def test_seeds_are_a_grid_axis_of_a_pure_grid_and_repeats_of_a_sampled_space():
    grid = load_preset("tau-ablation")
    assert grid.repeat_seeds == [] and grid.params["train.seed"].values == [0, 1, 2]
    assert len(grid.grid()) == 5 * 3
    sampled = load_preset("clreg-default")
    assert sampled.repeat_seeds == [0, 1, 2] and "train.seed" not in sampled.params
    assert sampled.grid() == [{}]  # repeats never become separate trials
    assert "train.seed" not in sampled.sample(optuna.trial.FixedTrial(
        {"clreg.tau": 0.2, "clreg.lambda": 0.1, "clreg.layer": "last-1", "train.lr": 1e-4}), 8)


def test_with_seeds_replaces_the_seeds_and_keeps_everything_else():
    space = load_preset("method-compare")
    one = space.with_seeds([7])
    assert one.grid() == [{**combo, "train.seed": 7} for combo in space.grid() if combo["train.seed"] == 0]
    assert one.fixed == space.fixed
    assert load_preset("clreg-default").with_seeds([3, 4]).repeat_seeds == [3, 4]
    with pytest.raises(SearchSpaceError, match=r"seeds: each seed may appear once"):
        space.with_seeds([1, 1])


def test_grid_search_space_refuses_ranges():
    with pytest.raises(SearchSpaceError, match=r"\['clreg.tau', 'clreg.lambda', 'train.lr'\] are float/int ranges"):
        load_preset("clreg-default").grid_search_space(8)


def test_layer_grid_needs_num_layers():
    with pytest.raises(SearchSpaceError, match="parameter 'clreg.layer': .*num_layers is needed"):
        load_preset("layer-ablation").grid()


# --- presets ------------------------------------------------------------------------------------------------------


def test_shipped_presets_are_registered():
    assert PRESETS.names() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("num_layers", [8, 2])
def test_every_preset_validates_and_samples(name, num_layers):
    space = load_preset(name)
    assert space.description
    samples = _samples(space, num_layers, n=12, sampler=optuna.samplers.TPESampler(seed=0))
    for params in samples:
        config = _valid_config(params)
        if config.clreg.enabled and "clreg.layer" in params:
            k = int(str(config.clreg.layer).removeprefix("last-"))
            assert 1 <= k <= num_layers


@pytest.mark.parametrize(
    ("name", "num_layers", "count"),
    [
        ("tau-ablation", 8, 15),
        ("tau-ablation", 2, 15),
        ("layer-ablation", 8, 9),
        ("layer-ablation", 4, 6),  # last-7 dropped
        ("layer-ablation", 2, 3),  # only last-1 left
        ("method-compare", 8, 66),
        ("rmu-layer-ablation", 8, 24),
        ("rmu-layer-ablation", 2, 6),  # only layer 1 left
    ],
)
def test_grid_presets_enumerate_expected_counts(name, num_layers, count):
    space = load_preset(name)
    grid = space.grid(num_layers)
    assert len(grid) == count
    assert len({tuple(sorted(c.items())) for c in grid}) == count


@pytest.mark.parametrize("name", ["tau-ablation", "layer-ablation", "method-compare"])
def test_grid_sampler_covers_the_grid(name):
    space = load_preset(name)
    grid = space.grid(8)
    sampler = optuna.samplers.GridSampler(space.grid_search_space(8), seed=0)
    study = optuna.create_study(sampler=sampler)
    samples = []
    study.optimize(lambda trial: samples.append(space.sample(trial, 8)) or 0.0, n_trials=len(grid) + 5)
    assert len(samples) == len(grid)  # GridSampler stops the study once the grid is exhausted
    assert sorted(map(repr, ({k: s[k] for k in grid[0]} for s in samples))) == sorted(map(repr, grid))


def test_method_compare_conditions():
    space = load_preset("method-compare")
    for combo in space.grid(8):
        params = space.sample(optuna.trial.FixedTrial(combo), 8)
        assert ("method.eps" in params) == (combo["method.name"] == "pdu")
        assert ("method.layer" in params) == (combo["method.name"] == "rmu")
        assert [k for k in params if k.startswith("clreg.")] == ["clreg.enabled"]
        _valid_config(params)
    methods = {c["method.name"] for c in space.grid(8)}
    assert methods == set(METHODS.names())  # every registered base method


def test_tau_ablation_values():
    grid = load_preset("tau-ablation").grid()
    assert sorted({c["clreg.tau"] for c in grid}) == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert sorted({c["train.seed"] for c in grid}) == [0, 1, 2]


def test_unknown_preset_lists_the_presets():
    with pytest.raises(UnknownNameError, match="clreg-default, layer-ablation, method-compare, rmu-layer-ablation, "
                                               "tau-ablation"):
        load_preset("tau-ablaton")


# --- validation ---------------------------------------------------------------------------------------------------


def _float(**extra):
    return {"type": "float", "low": 0.1, "high": 1.0, **extra}


NPO_OR_SIMNPO = {"type": "categorical", "choices": ["npo", "simnpo"]}

INVALID = [
    (
        {"clreg.tau": {"type": "floot", "low": 0.1, "high": 1}},
        r"parameter 'clreg.tau': unknown type 'floot'; allowed: float, int, categorical, grid, layer",
    ),
    ({"clreg.tau": {"low": 0.1, "high": 1}}, r"parameter 'clreg.tau': unknown type None; allowed: float"),
    ({"clreg.tau": 0.5}, r"parameter 'clreg.tau': expected a mapping .* a constant belongs in `fixed:`"),
    ({"clreg.tau": _float(low=1.0)}, r"parameter 'clreg.tau': low must be < high, got low=1.0, high=1.0"),
    ({"train.epochs": {"type": "int", "low": 5, "high": 2}}, r"parameter 'train.epochs': low must be < high"),
    ({"clreg.lambda": _float(low=0.0, log=True)}, r"parameter 'clreg.lambda': log: true needs low > 0, got low=0.0"),
    ({"clreg.tau": _float(log=True, step=0.1)}, r"parameter 'clreg.tau': log and step cannot be combined"),
    (
        {"train.epochs": {"type": "int", "low": 1, "high": 9, "step": 2, "log": True}},
        r"parameter 'train.epochs': log and step",
    ),
    ({"clreg.tau": _float(lo=3)}, r"parameter 'clreg.tau' \(lo\): Extra inputs are not permitted"),
    (
        {"method.name": {"type": "categorical", "choices": []}},
        r"parameter 'method.name' \(choices\): List should have at least 1 item",
    ),
    (
        {"method.name": {"type": "grid", "values": ["npo", "npo"]}},
        r"parameter 'method.name' \(values\): values must not repeat a value",
    ),
    (
        {"clreg.tauu": _float()},
        r"parameter 'clreg.tauu': .* clreg has no 'tauu'; allowed: \['dropout', 'enabled', 'form', 'lambda', 'layer'",
    ),
    ({"clreg.tau.x": _float()}, r"parameter 'clreg.tau.x': .* 'clreg.tau' is a value, not a section"),
    (
        {"optimizer.lr": _float()},
        r"parameter 'optimizer.lr': .* the trial config has no 'optimizer'; allowed: \['attack', 'clreg', 'data'",
    ),
    (
        {"clreg.tau": _float(low=0.0)},
        r"parameter 'clreg.tau': value 0.0 is not valid in the trial config: Input should be greater than 0",
    ),
    (
        {"clreg.form": {"type": "categorical", "choices": ["dpo", "nce"]}},
        r"parameter 'clreg.form': value 'nce' is not valid .* 'dpo' or 'infonce'",
    ),
    (
        {"clreg.layer": {"type": "layer", "values": ["top"]}},
        r"parameter 'clreg.layer': a layer must be 'last-k' with k >= 1 or a 0-based index, got 'top'",
    ),
    (
        {"clreg.layer": {"type": "layer", "last": [0, 3]}},
        r"parameter 'clreg.layer': last must be \[k_min, k_max\] with 1 <= k_min <= k_max",
    ),
    ({"clreg.layer": {"type": "layer"}}, r"parameter 'clreg.layer': give exactly one of last"),
    (
        {"method.beta": _float(when={"method.nme": "npo"}), "method.name": NPO_OR_SIMNPO},
        r"parameter 'method.beta': `when` refers to 'method.nme', which is not a parameter; "
        r"parameters: \['method.beta', 'method.name'\]",
    ),
    (
        {"method.beta": _float(when={"method.name": "npo"}), "method.name": NPO_OR_SIMNPO},
        r"parameter 'method.beta': `when` refers to 'method.name', which is not defined before it",
    ),
    (
        {"method.name": NPO_OR_SIMNPO, "method.beta": _float(when={"method.name": "pdu"})},
        r"parameter 'method.beta': `when` lists \['pdu'\] for 'method.name', which only takes \['npo', 'simnpo'\]",
    ),
    (
        {"train.lr": _float(), "method.beta": _float(when={"train.lr": 0.5})},
        r"parameter 'method.beta': `when` refers to the range 'train.lr'",
    ),
    (
        {"clreg.enabled": {"type": "grid", "values": [True, False]}, "clreg.tau": _float(when={"clreg.enabled": 1})},
        r"`when` lists \[1\] for 'clreg.enabled', which only takes \[True, False\]",
    ),
    (
        {
            "method.name": NPO_OR_SIMNPO,
            "method.beta": {"type": "grid", "values": [0.1], "when": {"method.name": "npo"}},
        },
        r"parameter 'method.beta': a grid parameter's `when` must refer to grid parameters",
    ),
    (
        {"clreg.tau": _float(), "clreg.enabled": {"type": "categorical", "choices": [True, False]}},
        r"parameter 'clreg.tau': must come after 'clreg.enabled'",
    ),
    (
        {
            "clreg.enabled": {"type": "categorical", "choices": [True, False]},
            "clreg.tau": {"type": "grid", "values": [0.1]},
        },
        r"parameter 'clreg.tau': a grid clreg.\* parameter needs 'clreg.enabled' to be a grid parameter",
    ),
    (
        {"clreg.lam": _float(), "clreg.lambda": _float()},
        r"parameter 'clreg.lambda' sets the same config field as 'clreg.lam'",
    ),
]


@pytest.mark.parametrize(("parameters", "message"), INVALID)
def test_invalid_parameters_are_refused_naming_the_parameter(parameters, message):
    with pytest.raises(SearchSpaceError, match=message):
        SearchSpace.from_dict({"parameters": parameters})


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"fixed": {"clreg.tau": -1}}, r"fixed value 'clreg.tau': value -1 is not valid in the trial config"),
        ({"fixed": {"train.lrr": 1e-4}}, r"fixed value 'train.lrr': .* train has no 'lrr'"),
        (
            {"fixed": {"method.eps": {"value": 0.3, "when": {"method.name": "pdu"}}}},
            r"fixed value 'method.eps': `when` refers to 'method.name', which is not a parameter",
        ),
        (
            {"fixed": {"clreg.enabled": {"value": False, "when": {"train.seed": 0}}}, "seeds": [0]},
            r"fixed value 'clreg.enabled': cannot have `when`",
        ),
        (
            {"parameters": {"train.seed": {"type": "grid", "values": [0]}}, "seeds": [1]},
            r"parameter 'train.seed' and `seeds` both set the seed",
        ),
        ({"seeds": []}, r"seeds: List should have at least 1 item"),
        ({"parameterz": {}}, r"parameterz: Extra inputs are not permitted"),
    ],
)
def test_invalid_spaces_are_refused(space, message):
    with pytest.raises(SearchSpaceError, match=message):
        SearchSpace.from_dict(space)


def test_from_yaml_keeps_order_and_names_the_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(EXAMPLE)
    assert list(SearchSpace.from_yaml(path).params) == list(_example().params)
    path.write_text("parameters:\n  clreg.tau: {type: float, low: 2, high: 1}\n")
    with pytest.raises(SearchSpaceError, match=rf"{path}: parameter 'clreg.tau': low must be < high"):
        SearchSpace.from_yaml(path)
    path.write_text("- not a mapping\n")
    with pytest.raises(SearchSpaceError, match="must be a mapping"):
        SearchSpace.from_yaml(path)


# --- apply --------------------------------------------------------------------------------------------------------


def test_apply_sets_nested_paths_and_maps_aliases_without_mutating():
    base = {"clreg": {"lam": 2.0, "tau": 0.3}, "model": {"lora": None}}
    out = apply(base, {"clreg.lambda": 0.5, "model.lora.rank": 4, "train.lr": 1e-4})
    assert out == {"clreg": {"tau": 0.3, "lambda": 0.5}, "model": {"lora": {"rank": 4}}, "train": {"lr": 1e-4}}
    assert base == {"clreg": {"lam": 2.0, "tau": 0.3}, "model": {"lora": None}}
    assert TrialConfig.model_validate(out).clreg.lam == 0.5


def test_apply_accepts_the_field_name_and_writes_the_alias():
    assert apply({}, {"clreg.lam": 3.0}) == {"clreg": {"lambda": 3.0}}


def test_apply_on_a_dumped_config_round_trips():
    dumped = TrialConfig().model_dump()
    config = TrialConfig.model_validate(apply(dumped, {"clreg.lambda": 0.25, "method.name": "npo"}))
    assert (config.clreg.lam, config.method.name) == (0.25, "npo")


def test_apply_refuses_unknown_paths():
    with pytest.raises(ValueError, match="'clreg.temperature' is not a config field"):
        apply({}, {"clreg.temperature": 1.0})


def test_categorical_and_grid_are_one_class_with_their_own_keys():
    """`categorical` takes `choices` and is sampled; `grid` takes `values` and is enumerated; the other key is
    refused with the one to use."""
    from search_spaces.space import CategoricalParam, is_grid

    space = SearchSpace.from_dict({"parameters": {
        "method.name": {"type": "grid", "values": ["npo", "simnpo"]},
        "clreg.form": {"type": "categorical", "choices": ["dpo", "infonce"]},
    }})
    grid, sampled = space.params["method.name"], space.params["clreg.form"]
    assert type(grid) is type(sampled) is CategoricalParam
    assert is_grid(grid) and not is_grid(sampled)
    assert grid.options(None) == ["npo", "simnpo"] and sampled.bounds() == ["dpo", "infonce"]
    assert space.with_seeds([0]).params["method.name"] == grid  # dumps and parses back with the same keys
    for spec, message in [({"type": "grid", "choices": ["npo"]}, "lists its values under `values`, not `choices`"),
                          ({"type": "categorical", "values": ["npo"]}, "under `choices`, not `values`"),
                          ({"type": "grid"}, "a grid parameter needs `values`")]:
        with pytest.raises(SearchSpaceError, match=f"parameter 'method.name': .*{message}"):
            SearchSpace.from_dict({"parameters": {"method.name": spec}})
