"""Specs are the single source: for EVERY command, a CLI option = the Python API argument = the recipe key.

For each command of ``edgekit`` (walked from the click group, so a new command without a declared spec/API fails
here): its parameters are its spec's fields plus declared output options, and its API's signature is the same
fields. Then, field by field, the same value given as a CLI option (the real command runs until it calls its API,
which is replaced by a recorder), as a Python keyword and as a YAML recipe key must give the same spec (or the same
error). Plus the spec machinery itself: unknown keys, types, bounds, choices from registries, round trips.
"""
from __future__ import annotations

import importlib
import inspect
import typing

import click
import pytest
import yaml
from click.testing import CliRunner

from edgekit._spec import MISSING
from edgekit.cli import main
from edgekit.errors import InvalidArgument, PipelineError, UnknownNameError
from edgekit.specs import (BenchSpec, CheckSpec, ClusterSpec, CompareSpec, CompressSpec, DistillSpec, DoctorSpec,
                           ExportSpec, ModelSpec, PruneSpec, TrainSpec)

RUNTIME = {"progress", "callbacks", "spec"}  # API parameters that are not options (runtime objects, a ready spec)
#: commands whose CLI does not map 1:1 onto their API yet, with the owner migrating them; an entry must go as soon
#: as the command maps (the test then fails, so this list cannot hide a fixed command)
PENDING: dict[str, str] = {}


def commands(group: click.Group = main, prefix: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), cmd


COMMANDS = dict(commands())


def declared(cmd):
    info = getattr(cmd, "edgekit_api", None)
    assert info is not None, "command has no @spec_command declaration (spec, API, CLI-only options)"
    module, fn = info["api"].split(":")
    return info, getattr(importlib.import_module(module), fn)


def test_every_command_is_covered():
    assert {"export", "train", "compress", "bench", "profile", "models", "inspect", "devices check"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_options_are_the_api_arguments(name):
    if name in PENDING:
        with pytest.raises(AssertionError):
            _check_cli_is_api(name)
        pytest.xfail(PENDING[name])
    _check_cli_is_api(name)


def _check_cli_is_api(name):
    info, api = declared(COMMANDS[name])
    cli = {p.name for p in COMMANDS[name].params} - set(info["cli_only"])
    params = inspect.signature(api).parameters
    has_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    api_args = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    spec = info["spec"]
    if spec is not None:
        fields = set(spec.cli_keys()) - set(info["exclude"])
        assert cli == fields, f"CLI options {sorted(cli ^ fields)} differ from {spec.__name__}'s fields"
        if getattr(api, "spec_class", None) is not None:
            assert api.spec_class is spec
            assert api_args - RUNTIME - set(info["api_only"]) == set(spec.keys())
        else:  # an API taking the spec's fields as keywords (plus its positional arguments)
            assert has_kwargs or set(spec.keys()) - set(info["exclude"]) - {"model"} <= api_args
    else:
        assert cli == api_args - {"progress", "callbacks"} - set(info["api_only"])


def test_recipe_keys_are_the_compress_and_export_arguments():
    from edgekit.recipes import META_KEYS, recipe_keys

    keys = set(recipe_keys())
    assert keys == set(META_KEYS) | set(CompressSpec.recipe_keys()) | set(ExportSpec.recipe_keys())
    # every option of `edgekit export` / `edgekit compress` is a recipe key, so `export --recipe X --opt` overrides
    for name in ("export", "compress"):
        assert {p.name for p in COMMANDS[name].params} - {"recipe", "as_json"} <= keys
    # the only recipe keys that are not CLI options are structured (lists/mappings)
    assert set(CompressSpec.recipe_keys()) - set(CompressSpec.cli_keys()) == {"stages", "teacher_options"}


# -- one value, three ways --------------------------------------------------------------------------------------
#: command -> (spec, base values in which each field is tried; a field must be valid in one of them)
_COMPRESS = {"model": "mobilenet_v1", "data": "fashion-mnist", "train_epochs": 1, "distill_from": "mobilenet_v1",
             "prune": 0.5, "cluster": 8, "quantize": "int8"}
BASES = {
    "export": (ExportSpec, [{"model": "mobilenet_v1", "quantize": "int8", "max_drop": 1.0, "eval_data": "digits"},
                            {"model": "mobilenet_v1", "quantize": "int8", "formats": ("tflite", "onnx")}]),
    "doctor": (DoctorSpec, [{"model": "m.keras", "calib_data": "digits", "eval_data": "digits", "max_drop": 1.0,
                             "format": "onnx"}]),
    "train": (TrainSpec, [{"model": "mobilenet_v1", "data": "fashion-mnist"}]),
    "compress": (CompressSpec, [{**_COMPRESS, "qat": True}, {**_COMPRESS, "formats": ("tflite", "onnx")}]),
    "bench": (BenchSpec, [{"artifacts": ("a.tflite",)}]),
    "compare": (CompareSpec, [{"artifacts": ("a.tflite", "b.tflite")}]),
    "devices check": (CheckSpec, [{"device": "local"}]),
    "profile": (ModelSpec, [{"model": "mobilenet_v1"}]),
}


def _base_type(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (
        typing.Union, __import__("types").UnionType) else [tp]
    return args[0]


def candidates(f):
    if f.meta.metavar == "KEY=VALUE":  # export --metadata author=... (a mapping from Python and recipes too)
        return [("author=Jane Doe", "version=1.0")]
    names = f.meta.choice_names()
    tp = _base_type(f.type)
    if names and typing.get_origin(tp) is tuple:
        return [tuple(names), *[(n,) for n in names]]
    if names:
        return [n for n in names if n != f.default] + names
    if tp is bool:  # a flag set to its own default is "not given": only the other value says anything
        return [not f.default] if isinstance(f.default, bool) else [True, False]
    if tp is int:
        return [3, 2, 1, 100]
    if tp is float:
        return [0.5, 0.25, 2.0]
    if typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0]
        return [(1, 4)] if item is int else [("conv_pw_1", "conv_pw_2"), ("@first",)]
    return ["sample.keras", "sample", "xnnpack", "2:4"]  # bench --delegate xnnpack, --prune-structure 2:4


def cli_args(f, value):
    if f.meta.argument:
        return [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
    flag = f.flag_names[0]
    if isinstance(value, bool):
        on, _, off = flag.partition("/")
        off = off or f"--no-{on[2:]}"
        return [on if value else off]
    if isinstance(value, tuple):
        if f.meta.separator:
            return [flag, f.meta.separator.join(map(str, value))]
        return [a for v in value for a in (flag, str(v))]
    return [flag, str(value)]


def outcome(build):
    try:
        return build()
    except InvalidArgument as exc:
        return f"{type(exc).__name__}: {exc.message}"


def through_cli(name, spec_cls, values, monkeypatch):
    info, _ = declared(COMMANDS[name])
    module, fn = info["api"].split(":")
    seen = []

    class Stop(Exception):
        pass

    def recorder(*args, **kwargs):
        seen.append((args, kwargs))
        raise Stop

    monkeypatch.setattr(importlib.import_module(module), fn, recorder)
    argv = name.split()
    for f in spec_cls.field_infos():
        if f.name in values and f.meta.cli and f.name not in info["exclude"]:
            argv += cli_args(f, values[f.name])
    if name == "bench" and "history" not in values:
        argv.append("--no-history")  # the CLI records to a default history file, the API only when asked
    r = CliRunner().invoke(main, argv)
    if not seen:
        assert r.exit_code == 2 and "error:" in r.stderr, r.output
        return r.stderr.split("error:", 1)[1].strip().splitlines()[0]
    args, kwargs = seen[0]
    if "spec" in kwargs:
        return kwargs["spec"]
    positional = {"profile": ["model"], "devices check": [], "bench": [], "compare": []}[name]
    return spec_cls.from_dict({**dict(zip(positional, args)), **{k: v for k, v in kwargs.items()
                                                                 if k in spec_cls.keys()}})


@pytest.mark.parametrize("name", sorted(BASES))
def test_one_value_three_ways(name, monkeypatch):
    """Each CLI field set through the command line, the Python API and a recipe gives the same spec."""
    from edgekit.recipes import recipe_spec

    spec_cls, bases = BASES[name]
    info, _ = declared(COMMANDS[name])
    exercised, skipped = [], []
    for f in spec_cls.field_infos():
        if not f.meta.cli or f.name in info["exclude"] or f.name in bases[0] and f.meta.argument:
            continue
        for base, value in [(b, v) for b in bases for v in candidates(f)]:
            values = {**base, f.name: value}
            py = outcome(lambda: spec_cls.from_dict(values))
            if isinstance(py, str):
                continue
            assert getattr(py, f.name) == (tuple(value) if isinstance(value, tuple) else value)
            cli = through_cli(name, spec_cls, values, monkeypatch)
            monkeypatch.undo()
            assert cli == py, f"{f.name}={value!r}: the CLI built {cli!r}"
            if spec_cls in (ExportSpec, CompressSpec):
                recipe = yaml.safe_load(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v
                                                        for k, v in values.items()}))
                assert recipe_spec(recipe) == py, f"{f.name}={value!r}: the recipe built another spec"
            exercised.append(f.name)
            break
        else:
            skipped.append(f.name)
    assert skipped == [], f"no valid sample value for {skipped}"
    assert exercised


def test_a_bad_value_fails_the_same_way_everywhere(monkeypatch):
    from edgekit.recipes import recipe_spec

    values = {"model": "mobilenet_v1", "quantize": "int8", "calib_samples": 0}
    py = outcome(lambda: ExportSpec.from_dict(values))
    assert py.startswith("InvalidArgument: calib_samples=0 must be positive")
    assert through_cli("export", ExportSpec, values, monkeypatch) == py.split(": ", 1)[1]
    with pytest.raises(PipelineError, match="calib_samples=0 must be positive"):
        recipe_spec(values)


# -- the machinery -----------------------------------------------------------------------------------------------
def test_unknown_key_gets_a_did_you_mean():
    with pytest.raises(InvalidArgument) as info:
        ExportSpec.from_dict({"model": "m", "quantise": "int8"})
    assert "unknown key 'quantise'" in info.value.message and "did you mean 'quantize'" in info.value.hint
    with pytest.raises(InvalidArgument, match="did you mean 'calib_samples'"):
        from edgekit.exporters import export

        export("m", calib_sample=3)


@pytest.mark.parametrize("spec_cls, values, words, hint", [
    (CompressSpec, {"test_limit": "lots", "quantize": "int8"}, "test_limit must be int > 0; received 'lots'",
     "a whole number > 0"),
    (CompressSpec, {"prune": "half", "quantize": "int8"}, "prune: sparsity must be in (0, 1); received 'half'",
     "0.5 for half"),
    (CompressSpec, {"verify": "yes", "quantize": "int8"}, "verify must be true or false", "verify: true"),
    (TrainSpec, {"epochs": 2.5}, "epochs must be int >= 0; received 2.5", "epochs: 5"),
    (TrainSpec, {"lr": 0}, "lr must be > 0; received 0.0", None),
    (ClusterSpec, {"clusters": 300}, "cluster: clusters must be an integer in [2, 256]", None),
])
def test_values_are_type_checked_naming_the_key(spec_cls, values, words, hint):
    base = {"model": "mobilenet_v1", "data": "fashion-mnist"} if spec_cls is not ClusterSpec else {}
    with pytest.raises(InvalidArgument) as info:
        spec_cls.from_dict({**base, **values})
    assert words in info.value.message
    if hint:
        assert hint in info.value.hint


def test_registry_choices_accept_aliases_and_store_the_canonical_name():
    spec = ExportSpec(model="m", quantize="none", formats="litert,onnx")  # none: float32's documented alias
    assert spec.quantize == "float32" and spec.formats == ("tflite", "onnx")
    with pytest.raises(UnknownNameError) as info:
        ExportSpec(model="m", quantize="int9")
    assert info.value.kind == "precision" and "did you mean 'int8'" in info.value.hint
    with pytest.raises(InvalidArgument, match="did you mean 'adam'"):
        TrainSpec(model="m", data="d", optimizer="adma")  # optimizers are checked before any training
    with pytest.raises(InvalidArgument, match="unknown optimizer .lion."):
        DistillSpec(teacher="t.keras", optimizer="lion")  # Distill refuses it too (it fell back to Adam)


def test_specs_are_frozen_and_round_trip():
    spec = CompressSpec(model="mobilenet_v1", data="fashion-mnist", prune=0.5, prune_layers=["conv_pw_*"],
                        quantize="int8", formats="tflite")
    with pytest.raises(AttributeError):
        spec.prune = 0.6  # type: ignore[misc]
    assert CompressSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict(given_only=True) == {"model": "mobilenet_v1", "data": "fashion-mnist", "prune": 0.5,
                                             "prune_layers": ["conv_pw_*"], "quantize": "int8"}
    assert spec.replace(prune=0.7).prune == 0.7 and spec.prune == 0.5
    with pytest.raises(PipelineError, match="sparsity must be in"):
        spec.replace(prune=1.5)


def test_api_takes_a_spec_or_keywords_and_lists_every_field():
    from edgekit.compression import compress, train
    from edgekit.exporters import export

    for fn, spec_cls in ((export, ExportSpec), (train, TrainSpec), (compress, CompressSpec)):
        params = inspect.signature(fn).parameters
        assert set(spec_cls.keys()) <= set(params) and "spec" in params
        for f in spec_cls.field_infos():
            if f.default is not MISSING and params[f.name].kind is inspect.Parameter.KEYWORD_ONLY:
                assert params[f.name].default == f.default, f.name


def test_stage_specs_are_what_a_recipe_stage_takes():
    from edgekit.compression import Prune, make_stage

    stage = make_stage({"prune": {"sparsity": 0.25, "layers": "conv_pw_*"}})
    assert isinstance(stage, Prune) and stage.spec == PruneSpec(sparsity=0.25, layers=("conv_pw_*",))
    assert make_stage(PruneSpec(sparsity=0.25)).sparsity == 0.25
    assert Prune(0.5, epochs=1).spec == PruneSpec(sparsity=0.5, epochs=1)


def test_tables_follow_the_exporter_registry(tmp_path, monkeypatch):
    """A third format is one registration: spec choices, I/O types, file-name tokens, bench and inspect read it."""
    from edgekit.devices.artifacts import artifact_info
    from edgekit.exporters import EXPORTERS, Exporter, format_of, inspect, io_types, precision_tokens
    from edgekit.exporters.base import register_exporter

    class Fake(Exporter):
        name, suffix, runtime = "fake", ".fake", "litert"
        precisions = ("none", "int8")
        io_types = {"int8": ("float", "int4")}

    from edgekit.specs.formats import FORMATS

    for table in (EXPORTERS, FORMATS):
        monkeypatch.setattr(table, "_entries", dict(table._entries))
    register_exporter(Fake)
    assert ExportSpec(model="m", formats="fake", quantize="int8", io="int4").formats == ("fake",)
    assert Fake.precisions == ("float32", "int8")  # an alias in a class attribute is mapped to its name
    with pytest.raises(InvalidArgument, match="does not support quantize='float16'"):
        ExportSpec(model="m", formats="fake", quantize="fp16")
    assert "int4" in io_types() and ("int4", "int8") in precision_tokens()
    art = tmp_path / "net_int4.fake"
    art.write_bytes(b"\0" * 8)
    assert format_of(art) == "fake"
    info = artifact_info(art)
    assert (info.format, info.precision, info.model) == ("fake", "int8", "net")
    with pytest.raises(InvalidArgument, match=r"cannot inspect 'x.pb'.*\.fake"):
        (tmp_path / "x.pb").write_bytes(b"")
        inspect(tmp_path / "x.pb")


def test_array_data_is_a_value_like_any_other():
    """Python callers pass arrays as data/calib_data: a spec holds them (no elementwise == on them) and describes
    them in to_dict."""
    import numpy as np

    x, y = np.zeros((4, 32, 32, 1), np.float32), np.zeros(4, np.int64)
    spec = CompressSpec(model="mobilenet_v1", data=(x, y), prune=0.5, quantize="int8", calib_data=x)
    assert spec.data[0] is x and spec.to_dict(given_only=True)["data"] == ["<ndarray>", "<ndarray>"]
    assert CompressSpec(model="mobilenet_v1", data=x, prune=0.5).data is x
