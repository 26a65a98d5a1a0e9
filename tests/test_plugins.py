"""Plugin discovery with really installed distributions, and registry rules in-process."""

from __future__ import annotations

import json
import types

import pytest
from conftest import pythonpath

from toolkit import InputSpec, ModelSpec, Param, hookimpl
from toolkit.errors import PluginError, UsageError
from toolkit.plugins import PluginInfo, new_manager, register_plugin
from toolkit.registry import Registry


def test_broken_import_plugin_is_isolated(tk, plugin_site):
    env = pythonpath(plugin_site["broken-import"], plugin_site["good"])
    res = tk("list", "models", env=env)
    assert res.code == 0
    names = {line.split()[0] for line in res.out.splitlines()[1:]}
    assert {"circle", "wide-linear", "five-way"} <= names
    warnings = [line for line in res.err.splitlines() if line.startswith("tk: warning")]
    assert len(warnings) == 1
    assert "'broken'" in warnings[0] and "tk-test-broken-import 0.3.1" in warnings[0]
    assert "RuntimeError: boom at import" in warnings[0]

    plugins = {p["entry_point"]: p for p in json.loads(tk("plugins", "--json", env=env).out)}
    assert plugins["broken"]["status"] == "failed"
    assert plugins["broken"]["error"] == "RuntimeError: boom at import"
    assert plugins["good"]["status"] == "ok"


def test_strict_mode_turns_a_broken_plugin_into_an_error(tk, plugin_site):
    env = {**pythonpath(plugin_site["broken-import"]), "TK_STRICT_PLUGINS": "1"}
    res = tk("list", "models", env=env)
    assert res.code == 1
    assert "Traceback" in res.err
    assert (
        res.err.strip()
        .splitlines()[-1]
        .startswith(
            "tk: error: plugin 'broken' from tk-test-broken-import 0.3.1 failed: RuntimeError"
        )
    )


def test_hook_that_raises_is_isolated(tk, plugin_site):
    env = pythonpath(plugin_site["broken-hook"])
    res = tk("plugins", env=env)
    assert res.code == 0
    row = next(line for line in res.out.splitlines() if line.startswith("brokenhook"))
    assert "failed: ValueError: hook exploded" in row
    assert "tk-test-broken-hook" in res.err
    assert tk("list", "models", env=env).code == 0


def test_duplicate_name_names_both_distributions(tk, plugin_site):
    env = pythonpath(plugin_site["duplicate"])
    res = tk("list", "models", env=env)
    assert res.code == 0
    assert "model 'circle' is registered by both tk-torch and tk-test-duplicate" in res.err
    circle = next(line for line in res.out.splitlines() if line.startswith("circle "))
    assert "tk-torch" in circle  # the built-in keeps its name, in any install order


def test_load_plugins_selects_distributions(tk, plugin_site):
    env = pythonpath(plugin_site["good"])
    only_good = tk("list", "models", env={**env, "TK_LOAD_PLUGINS": "tk-test-good"})
    names = {line.split()[0] for line in only_good.out.splitlines()[1:]}
    assert names == {"wide-linear", "five-way", "nan-bomb"}
    none = tk("plugins", env={**env, "TK_LOAD_PLUGINS": ""})
    assert none.code == 0 and "no plugins loaded" in none.out
    empty = tk("list", "models", "--json", env={**env, "TK_LOAD_PLUGINS": ""})
    assert json.loads(empty.out) == []


# ----------------------------------------------------------------- in-process
def _build():
    raise AssertionError("listing must never build a model")


def _spec(name="m", **kw):
    return ModelSpec(name=name, build=_build, input=InputSpec((2,)), task="binary", **kw)


def _plugin(models=(), fail=False):
    ns = types.SimpleNamespace()

    @hookimpl
    def tk_register_models(register):
        for m in models:
            register(m)
        if fail:
            raise RuntimeError("half-way")

    ns.tk_register_models = tk_register_models
    return ns


def _info(dist):
    return PluginInfo(entry_point=dist, module=dist, distribution=dist, version="1.0")


def test_hook_failure_half_way_registers_nothing():
    reg, pm = Registry(), new_manager()
    with pytest.raises(RuntimeError):
        register_plugin(reg, pm, _plugin([_spec("a")], fail=True), _info("x"))
    assert reg.models == {}
    register_plugin(reg, pm, _plugin([_spec("b")]), _info("y"))
    assert list(reg.models) == ["b"]


def test_duplicate_in_process_is_refused_and_first_stays():
    reg, pm = Registry(), new_manager()
    register_plugin(reg, pm, _plugin([_spec("a")]), _info("first-dist"))
    with pytest.raises(PluginError, match="registered by both first-dist and second-dist"):
        register_plugin(reg, pm, _plugin([_spec("a"), _spec("z")]), _info("second-dist"))
    assert list(reg.models) == ["a"]
    assert reg.source("model", "a").distribution == "first-dist"


def test_param_parsing_and_unknown_keys():
    spec = _spec(
        params=[Param("hidden", int, 10), Param("p", float, 0.5), Param("on", bool, False)]
    )
    assert spec.resolve_params({}) == {"hidden": 10, "p": 0.5, "on": False}
    assert spec.resolve_params({"hidden": "16", "p": "1e-3", "on": "yes"}) == {
        "hidden": 16,
        "p": 0.001,
        "on": True,
    }
    with pytest.raises(UsageError, match=r"parameter 'hidden' expects int, got '1.5'"):
        spec.resolve_params({"hidden": "1.5"})
    with pytest.raises(UsageError, match=r"unknown parameter 'width'; allowed: hidden, on, p"):
        spec.resolve_params({"width": "3"})


def test_invalid_task_is_a_plugin_error():
    with pytest.raises(PluginError, match="task must be one of binary, multiclass, regression"):
        ModelSpec(name="x", build=_build, input=InputSpec((1,)), task="ranking")


def test_tk_s_own_formats_load_once_from_the_core_entry_point():
    """The ``formats`` entry point of tk-torch, never twice (an editable install made
    before it existed gets it added; a current one has it in its metadata)."""
    from importlib import metadata

    from toolkit.plugins import BUILTIN_FORMATS, installed_entry_points, load_plugins

    core = [ep for ep, dist, _ in installed_entry_points() if dist == "tk-torch"]
    assert [ep.value for ep in core].count(BUILTIN_FORMATS) == 1
    declared = [ep.value for ep in metadata.distribution("tk-torch").entry_points]
    assert BUILTIN_FORMATS in declared  # pyproject.toml's entry point, installed
    loaded = load_plugins(warn=False)
    assert list(loaded.registry.formats)[:3] == ["onnx", "torchscript", "pt2"]
    assert {loaded.registry.source("format", f).entry_point for f in ("onnx", "pt2")} == {"formats"}
