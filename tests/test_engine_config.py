"""Dataclass configs: presets, overrides, resolved config files; every shipped preset parses."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field

import pytest
from conftest import REPO

from speechdraw.engine.config import parse_config, write_resolved_config
from speechdraw.engine.run import TrainConfig


@dataclass
class Inner:
    hidden: int = 8
    sizes: tuple[int, ...] = (1, 2)
    name: str | None = None


@dataclass
class Outer:
    model: Inner = field(default_factory=Inner)
    train: TrainConfig = field(default_factory=TrainConfig)
    flag: bool = False


def test_precedence_defaults_preset_config_flags(tmp_path):
    presets = {"big": {"model": {"hidden": 64, "sizes": [3]}, "train": {"lr": 0.5}}}
    cfg, _ = parse_config(Outer, [], presets=presets)
    assert cfg.model.hidden == 8 and cfg.train.lr == 1e-3
    cfg, _ = parse_config(Outer, ["--preset", "big", "--model.hidden", "7", "--flag", "true",
                                  "--model.sizes", "4,5", "--model.name", "x"], presets=presets)
    assert (cfg.model.hidden, cfg.model.sizes, cfg.train.lr, cfg.flag, cfg.model.name) == (7, (4, 5), 0.5, True, "x")
    path = write_resolved_config(tmp_path, cfg, ["prog", "--flag", "true"])
    saved = json.loads(path.read_text())
    assert saved["argv"] == ["prog", "--flag", "true"] and saved["config"]["model"]["hidden"] == 7
    again, _ = parse_config(Outer, ["--config", str(path)])
    assert again == cfg


def test_bad_values_are_rejected():
    with pytest.raises(SystemExit):
        parse_config(Outer, ["--model.hidden", "many"])
    with pytest.raises(ValueError, match="precision"):
        parse_config(Outer, ["--train.precision", "fp8"])


@pytest.mark.parametrize("recipe", sorted(p.relative_to(REPO).as_posix() for p in REPO.glob("recipes/*/train.py")))
def test_every_shipped_preset_parses(recipe):
    name = "recipe_" + recipe.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, REPO / recipe)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    for name in [None, *module.PRESETS]:
        cfg, _ = parse_config(module.Config, [] if name is None else ["--preset", name], presets=module.PRESETS)
        assert cfg is not None


def test_config_changes_lists_what_differs_on_resume_and_ignores_the_resume_flag():
    from speechdraw.engine.config import to_dict
    from speechdraw.engine.run import config_changes

    saved = to_dict(TrainConfig(epochs=7, resume=""))
    assert config_changes(saved, TrainConfig(epochs=7, resume="auto")) == {}
    assert config_changes(saved, TrainConfig(epochs=20, resume="auto")) == {"epochs": (7, 20)}
    assert config_changes(None, TrainConfig()) == {}
