"""The run config: schema, unknown keys at every level, overrides, value checks, resolved form and hash."""

import json

import pytest
import yaml

from sidbench.errors import ConfigError
from sidbench.train.config import RunConfig, load_recipe
from tests.train._methods import toy_recipe


@pytest.fixture
def recipe(tmp_path):
    return toy_recipe(tmp_path / "teacher")


def test_a_recipe_becomes_a_frozen_typed_config(recipe):
    cfg = load_recipe(recipe, ["training.batch=16", "method.alpha=1.5", "training.networks.fake.lr=2e-4"])
    assert isinstance(cfg, RunConfig)
    assert cfg.training.batch == 16 and cfg.method_settings.alpha == 1.5
    assert cfg.network("fake").lr == 2e-4 and isinstance(cfg.network("fake").lr, float)
    assert cfg.network("generator").betas == (0.0, 0.999)
    assert cfg.training.total_steps == 5  # ceil(80 / 16)
    with pytest.raises(AttributeError):
        cfg.training.batch = 3  # frozen


def test_a_yaml_file_and_its_mapping_give_the_same_config(tmp_path, recipe):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    a, b = load_recipe(path), load_recipe(recipe)
    assert a.config_hash() == b.config_hash()
    assert a.recipe == str(path) and b.recipe is None


def test_yaml_exponent_without_a_dot_is_a_number(tmp_path, recipe):
    text = yaml.safe_dump(recipe).replace("lr: 0.001", "lr: 1e-3")
    assert "1e-3" in text
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert load_recipe(path).network("generator").lr == 1e-3


@pytest.mark.parametrize("override,near", [
    ("trainig.batch=3", "'training'"),
    ("training.bach=3", "'training.batch'"),
    ("training.networks.generator.lrr=1", "'training.networks.generator.lr'"),
    ("training.networks.genrator.lr=1", "'generator'"),
    ("training.eval.protocol=[digits-fd]", "'training.eval.protocols'"),
    ("method.alpah=1", "'alpha'"),
    ("method_settings.sigma_int=2", "'sigma_init'"),
    ("training.duration=1", "'training.duration_kimg'"),
])
def test_unknown_keys_at_every_level_name_the_nearest_valid_key(recipe, override, near):
    with pytest.raises(ConfigError) as err:
        load_recipe(recipe, [override])
    assert f"Did you mean {near}" in str(err.value) and "\n" not in str(err.value)


def test_unknown_keys_in_the_recipe_itself_are_refused_too(recipe):
    recipe["training"]["networks"]["fake"]["ema_halflife"] = 3
    with pytest.raises(ConfigError, match="'training.networks.fake.ema_halflife'.*ema_halflife_kimg"):
        load_recipe(recipe)


@pytest.mark.parametrize("override,key", [
    *[(f"training.batch={v}", "training.batch") for v in ("0", "-3", "2.5", "true", "abc", "null")],
    *[(f"training.duration_kimg={v}", "training.duration_kimg") for v in ("0", "nan", "inf", "-1", "x")],
    *[(f"training.networks.fake.lr={v}", "training.networks.fake.lr") for v in ("0", "-1e-3", ".nan", "[1]")],
    ("training.networks.fake.betas=[0.9]", "betas"),
    ("training.networks.fake.betas=[0.9, 1.0]", "betas[1]"),
    ("training.networks.fake.dropout=1.0", "dropout"),
    ("training.networks.fake.optimizer=sgd", "optimizer"),
    ("training.precision=fp8", "precision"),
    ("training.seed=-1", "seed"),
    ("training.nan_guard=0", "nan_guard"),
    ("training.tensorboard=maybe", "tensorboard"),
    ("training.eval.protocols=[digits-fdd]", "digits-fd"),
    ("training.architecture=3", "architecture"),
    ("suite=digitz", "digits"),
    ("method=sidlike", "test-sidlike"),
])
def test_bad_values_are_one_line_errors_naming_the_setting(recipe, override, key):
    with pytest.raises(ConfigError) as err:
        load_recipe(recipe, [override])
    assert key in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("bad", ["training.batch", "=3", "training..batch=3", "training.batch.x=3"])
def test_malformed_overrides_are_refused(recipe, bad):
    with pytest.raises(ConfigError):
        load_recipe(recipe, [bad])


def test_a_recipe_without_duration_suite_or_method_is_refused(recipe):
    del recipe["training"]["duration_kimg"]
    with pytest.raises(ConfigError, match="lacks training.duration_kimg"):
        load_recipe(recipe)
    with pytest.raises(ConfigError, match="lacks 'method'"):
        load_recipe({"suite": "toy2d"})


def test_resolved_fills_every_default_and_is_json(recipe):
    r = load_recipe(recipe).resolved()
    assert json.loads(json.dumps(r, allow_nan=False)) == r
    fake = r["training"]["networks"]["fake"]
    assert fake["ema_rampup"] == 0.05 and fake["grad_clip_norm"] is None and fake["optimizer"] == "adam"
    assert r["training"]["eval"] == {"protocols": None, "num_images": None, "batch_size": 250}
    assert r["method_settings"] == {"sigma_init": 2.5, "alpha": 1.0, "poison_steps": []}
    assert r["method_version"] == "1.0.0" and r["suite_version"]


def test_the_hash_is_stable_and_ignores_descriptions(recipe):
    base = load_recipe(recipe).config_hash()
    assert base == load_recipe(recipe).config_hash()
    described = ["name=other", "hardware.gpus=8", "expected=[{value: 1.9}]"]
    assert base == load_recipe(recipe, described).config_hash()
    assert base == load_recipe(recipe, ["training.networks.fake.lr=0.001"]).config_hash()  # same value


CHANGES = [
    "training.seed=4", "training.batch=16", "training.batch_per_gpu=4", "training.duration_kimg=0.16",
    "training.precision=bf16", "training.teacher=/elsewhere", "training.nan_guard=3",
    "training.checkpoint_kimg=0.016", "training.eval_kimg=1", "training.eval.num_images=10",
    "training.log_every_kimg=0.032", "training.networks.fake.lr=2e-3",
    "training.networks.fake.betas=[0.5,0.9]",
    "training.networks.fake.eps=1e-6", "training.networks.fake.weight_decay=0.1",
    "training.networks.fake.grad_clip_value=1", "training.networks.fake.grad_clip_norm=1",
    "training.networks.fake.dropout=0.1", "training.networks.generator.ema_halflife_kimg=1",
    "training.networks.generator.ema_rampup=null", "training.networks.generator.warmup_kimg=1",
    "training.networks.generator.optimizer=adamw", "method.alpha=1.2", "method.sigma_init=2.0",
    "training.keep_checkpoints=2", "training.tensorboard=auto",
]


def test_the_hash_changes_with_any_setting(recipe):
    hashes = {c: load_recipe(recipe, [c]).config_hash() for c in CHANGES}
    hashes["base"] = load_recipe(recipe).config_hash()
    assert len(set(hashes.values())) == len(hashes)


def test_batch_split_is_checked_against_the_process_count(recipe):
    cfg = load_recipe(recipe, ["training.batch_per_gpu=2"])
    assert cfg.training.rounds(1) == 4 and cfg.training.rounds(2) == 2 and cfg.training.rounds(4) == 1
    with pytest.raises(ConfigError, match="not a multiple"):
        cfg.training.rounds(3)
    assert load_recipe(recipe).training.rounds(2) == 1  # no batch_per_gpu: batch / processes
