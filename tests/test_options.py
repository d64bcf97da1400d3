"""Each training option is declared once (pipeline/gan/options.py): edn's parser and the configs' checks
are made from the declarations, and the JSON schema, config/config.yaml and config/README.md are held to
them here, so none can drift from another."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.arguments import Number
from pipeline.cli import build_parser
from pipeline.gan.commands import ON_OFF, add_training_options
from pipeline.gan.options import KEEP, SWITCH, WEIGHT, FaceConfig, TrainConfig, config_key, declaration, option, \
    options, workflow_default
from pipeline.plan.train_flags import WORKFLOW_ONLY, stage_options, train_flags

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())["properties"]
CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())["train"]
# Every option the config sets, as (config class, field, key under train:); the face GAN's own under face.
KEYS = [(TrainConfig, f.name, config_key(TrainConfig, f.name)) for f, _ in options(TrainConfig)
        if config_key(TrainConfig, f.name)] + \
       [(FaceConfig, f.name, config_key(FaceConfig, f.name)) for f, _ in options(FaceConfig)
        if (config_key(FaceConfig, f.name) or "").startswith("face.")]


def spelled(value: Any, name: str) -> Any:
    """A value as the config writes it: switches true/false, no file ""."""
    if name == "compile":
        return {"on": True, "off": False}.get(value, value)
    return "" if value is None and name.endswith(("_weights", "_global")) else value


def at(tree: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        tree = tree[part] if part in tree else tree["properties"][part]
    return tree


def schema_rule(prop: dict[str, Any]) -> dict[str, Any]:
    """What a schema property allows, in one shape (an enum's own type left out)."""
    kinds = prop.get("type", [])
    kinds = set([kinds] if isinstance(kinds, str) else kinds)
    rule = {k: prop[k] for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in prop}
    if "enum" in prop:
        return {**rule, "enum": sorted(map(str, prop["enum"])), "null": "null" in kinds}
    return {**rule, "type": kinds - {"null"}, "null": "null" in kinds}


def declared_rule(cls: type, name: str) -> dict[str, Any]:
    """What the declaration allows, in :func:`schema_rule`'s shape."""
    field = cls.__dataclass_fields__[name]
    check = field.metadata["option"].check
    null = field.default is None and name not in ("vgg_weights",)
    if isinstance(check, tuple):
        return {"enum": sorted(str(spelled(c, name)) for c in check), "null": False}
    if isinstance(check, Number):
        bounds = (("minimum", check.minimum), ("maximum", check.maximum), ("exclusiveMinimum", check.above),
                  ("exclusiveMaximum", check.below))
        rule = {k: v for k, v in bounds if v is not None}
        return {**rule, "type": {"integer" if check.kind is int else "number"}, "null": null}
    return {"type": {"boolean" if isinstance(field.default, bool) else "string"}, "null": False}


@pytest.mark.parametrize("cls, name, key", KEYS, ids=[key for _, _, key in KEYS])
def test_the_schema_checks_each_option_as_declared_with_the_workflows_default(cls, name, key):
    prop = at(SCHEMA["train"], key)
    assert schema_rule(prop) == declared_rule(cls, name), key
    assert prop["default"] == spelled(workflow_default(cls, name), name), key


@pytest.mark.parametrize("cls, name, key", KEYS, ids=[key for _, _, key in KEYS])
def test_config_yaml_is_the_default_or_a_declared_demo_value(cls, name, key):
    assert at(CONFIG, key) == spelled(workflow_default(cls, name), name), \
        f"config/config.yaml train.{key}: declare it (pipeline/gan/options.py, demo=) or set the default"


def test_the_config_sets_only_declared_options_and_the_workflows_own_keys():
    keys = {key for _, _, key in KEYS}
    assert set(CONFIG) - {k.split(".")[0] for k in keys} == set(WORKFLOW_ONLY) - {"face"}
    assert {f"face.{k}" for k in CONFIG["face"]} <= keys


def test_ablations_may_change_exactly_the_declared_options_with_their_checks():
    allowed = SCHEMA["evaluate"]["properties"]["ablations"]["additionalProperties"]["properties"]
    declared = [f.name for f, o in options(TrainConfig) if o.ablation]
    assert sorted(allowed) == sorted(declared)
    for name in declared:
        assert schema_rule(allowed[name]) == declared_rule(TrainConfig, name), name
        assert "default" not in allowed[name]  # what an ablation does not set is train:'s
    text = (REPO / "config/README.md").read_text()
    sentence = text[text.index("`evaluate.ablations` may change"):].split(";")[0]
    assert sorted(re.findall(r"`(\w+)`", sentence)) == sorted(declared)


def test_the_config_reference_shows_the_workflows_default():
    rows = dict(re.findall(r"^\| `train\.([\w.]+)` \| ([^|]*) \|", (REPO / "config/README.md").read_text(), re.M))
    for cls, name, key in KEYS:
        assert yaml.safe_load(rows[key]) == spelled(workflow_default(cls, name), name), f"config/README.md train.{key}"


def test_demo_values_are_declared_only_where_they_differ():
    for cls in (TrainConfig, FaceConfig):
        for field, declared in options(cls):
            assert declared.demo is KEEP or declared.demo != field.default, f"{cls.__name__}.{field.name}"


def test_the_parser_takes_each_option_from_its_declaration():
    parser = build_parser()
    for stage, cls in (("train", TrainConfig), ("train-face", FaceConfig)):
        argv = [stage, "out", "--clip", "f", "r", "k"] + (["--generator", "g.pt"] if stage == "train-face" else [])
        args = vars(parser.parse_args(argv))
        taken = {f.name for f, o in options(cls) if stage in o.stages}
        assert taken <= set(args) and not ({f.name for f, _ in options(cls)} - taken) & set(args), stage
        for name in taken:
            declared, default = declaration(cls, name), cls.__dataclass_fields__[name].default
            expected = ON_OFF[default] if declared.check == SWITCH else default
            assert args[name] == expected, (stage, name)


def test_a_new_option_reaches_parser_checks_and_flags_from_its_declaration():
    """The declaration is all a new loss weight needs to be parsed, checked and passed by the workflow."""

    @dataclasses.dataclass
    class WithNewWeight(TrainConfig):
        lambda_new: float = option(0.0, "a new loss weight", WEIGHT, ablation=True)

    with pytest.raises(ValueError, match=r"lambda_new=-1.0 \(must be a finite number >= 0\)"):
        WithNewWeight(lambda_new=-1.0)
    parser = argparse.ArgumentParser()
    add_training_options(parser, WithNewWeight, "train")
    assert parser.parse_args(["--lambda-new", "2.5"]).lambda_new == 2.5
    assert "a new loss weight (default: 0.0)" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--lambda-new", "nan"])
    assert "--lambda-new 2.5" in train_flags({**CONFIG, "lambda_new": 2.5}, "generator")


def test_the_face_job_takes_its_own_section_and_the_shared_options():
    chosen = stage_options(CONFIG, "face")
    assert chosen["epochs"] == CONFIG["face"]["epochs"] and chosen["lambda_l1"] == CONFIG["face"]["lambda_l1"]
    assert chosen["face_ngf"] == CONFIG["face"]["ngf"] and chosen["lr"] == CONFIG["lr"]
    assert not {"width", "ngf", "num_d", "background", "lambda_fg", "upsample"} & set(chosen)
    global_phase = stage_options({**CONFIG, "local_enhancer": True, "global_phase": {"epochs": 2, "niter_decay": 1}},
                                 "global")
    assert global_phase["width"] == CONFIG["width"] // 2 and global_phase["ngf"] == 2 * CONFIG["ngf"]
    assert global_phase["epochs"] == 2 and "local_enhancer" not in global_phase
    with pytest.raises(ValueError, match="training stage 'local'"):
        stage_options(CONFIG, "local")
