"""The search space of ``tk tune`` entry by entry: each test kills mutants of
``toolkit/tune/space.py`` (``make mutate MODULES=tune``; docs/testing.md lists the
few left as equivalent).

What a dimension draws is read back from a real optuna trial's distribution; what
a bad entry says is compared with the whole line (message and fix).
"""

from __future__ import annotations

import pytest

from toolkit.errors import UsageError
from toolkit.params import Param
from toolkit.tune.space import Dimension, _items, option_type, parse_space, split_entry

MODEL = [Param("hidden", int, 8), Param("act", str, "relu", choices=("relu", "tanh"))]
DATA = [Param("noise", float, 0.1), Param("flip_rate", float, 0.0)]
OWNERS = ("circle", "circles")


def _space(*entries: str) -> list[Dimension]:
    return parse_space(list(entries), MODEL, DATA, OWNERS)


def _refused(entry: str) -> tuple[str, str | None]:
    with pytest.raises(UsageError) as info:
        _space(entry)
    return info.value.message, info.value.hint


def _distribution(dim: Dimension):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study().ask()
    value = dim.suggest(trial)
    return value, trial.distributions[dim.name]


def test_each_kind_draws_from_its_own_optuna_distribution():
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    lr, epochs, hidden, wd, batch, noise = _space(
        "lr=log(1e-4,0.1)", "epochs=int(2,9)", "param.hidden=log(4,64)",
        "weight-decay=float(0,0.5)", "batch-size=choice(16,32)", "data.noise=float(0.1,0.3)",
    )  # fmt: skip
    assert _distribution(lr)[1] == FloatDistribution(1e-4, 0.1, log=True)
    assert _distribution(epochs)[1] == IntDistribution(2, 9, log=False)
    assert _distribution(hidden)[1] == IntDistribution(4, 64, log=True)
    assert _distribution(wd)[1] == FloatDistribution(0.0, 0.5, log=False)
    assert _distribution(batch)[1] == CategoricalDistribution([16, 32])
    assert _distribution(noise)[1] == FloatDistribution(0.1, 0.3, log=False)
    value, _ = _distribution(epochs)
    assert type(value) is int and 2 <= value <= 9


def test_dimensions_record_what_they_set_and_their_canonical_entry():
    lr, batch, hidden, flip, act = _space(
        " lr = LOG( 1e-4 , 0.1 ) ", "batch_size=int(8,64)", "param.hidden=choice(4,8)",
        "data.flip-rate=float(0,0.25)", "param.act=choice('relu','tanh')",
    )  # fmt: skip
    assert lr == Dimension("lr", "log", "option", "lr", float, (1e-4, 0.1))
    assert lr.entry == "lr=log(0.0001,0.1)"
    assert batch == Dimension("batch-size", "int", "option", "batch_size", int, (8, 64))
    assert hidden == Dimension("param.hidden", "choice", "param", "hidden", int, (4, 8))
    assert flip == Dimension("data.flip_rate", "float", "data", "flip_rate", float, (0.0, 0.25))
    assert act.values == ("relu", "tanh") and act.type is str
    assert type(lr.values[0]) is float and type(flip.values[0]) is float
    assert type(batch.values[0]) is int and type(hidden.values[0]) is int


def test_a_choice_holding_commas_is_quoted_in_its_entry():
    dim = Dimension("param.layers", "choice", "param", "layers", str, ("64,64", "128"))
    assert dim.entry == "param.layers=choice('64,64',128)"
    assert _items("'64,64', \"a,b\" ,c") == ["64,64", "a,b", "c"]
    assert _items("it's,x") == ["its,x"]  # an unclosed quote runs to the end


def test_grid_lists_choices_and_every_integer_of_a_range():
    epochs, batch, lr = _space("epochs=int(3,6)", "batch-size=choice(32,16)", "lr=float(0.1,1)")
    assert epochs.grid() == [3, 4, 5, 6]
    assert batch.grid() == [32, 16]
    with pytest.raises(UsageError) as info:
        lr.grid()
    assert info.value.message == (
        "--space lr=float(0.1,1.0): --sampler grid needs choice(...) or int(a,b) entries"
    )
    assert info.value.hint == "--space lr=choice(...), or --sampler tpe"


def test_option_types_come_from_the_annotations():
    # float before int before str before bool; a table or list is text
    assert option_type("lr") is float and option_type("grad_clip") is float
    assert option_type("epochs") is int and option_type("batch_size") is int  # int | str
    assert option_type("optimizer") is str and option_type("device") is str
    assert option_type("overwrite") is bool and option_type("compile") is bool
    assert option_type("params") is str


def test_split_entry_reads_name_kind_and_items():
    assert split_entry("lr=log(1e-4, 0.1)") == ("lr", "log", ["1e-4", "0.1"])
    assert split_entry("x=Choice(a)") == ("x", "choice", ["a"])
    assert split_entry("x=choice(a,\nb)") == ("x", "choice", ["a", "b"])  # DOTALL
    hint = "--space 'lr=log(1e-4,1e-1)' (SPEC: log(a,b), float(a,b), int(a,b), choice(x,y))"
    for bad in ("lr", "=log(1,2)", " =log(1,2)", "lr=log", "lr=log(1,2)x"):
        with pytest.raises(UsageError) as info:
            split_entry(bad)
        assert (info.value.message, info.value.hint) == (
            f"--space {bad!r} is not NAME=SPEC",
            hint,
        )
    with pytest.raises(UsageError) as info:
        split_entry("lr=Uniform(0,1)")
    assert (info.value.message, info.value.hint) == (
        "--space lr=Uniform(0,1): unknown kind 'Uniform'; choose log, float, int, choice",
        "--space 'lr=log(1e-4,1e-1)'",
    )


@pytest.mark.parametrize(
    ("entry", "message", "hint"),
    [
        ("lr=choice()", "--space lr=choice(): choice needs values, e.g. choice(8,16,32)", None),
        ("lr=choice(0.1,)", "--space lr=choice(0.1,): choice needs values, e.g. choice(8,16,32)",
         None),
        ("lr=log(0.1)", "--space lr=log(0.1): log takes two bounds, log(a,b)", None),
        ("lr=float(1,2,3)", "--space lr=float(1,2,3): float takes two bounds, float(a,b)", None),
        ("epochs=float(1,5)",
         "--space epochs=float(1,5): float(a,b) does not fit; this one takes whole numbers",
         "int(a,b), log(a,b) or choice(...)"),
        ("lr=int(1,5)",
         "--space lr=int(1,5): int(a,b) does not fit; this one takes float values",
         "float(a,b), log(a,b) or choice(...)"),
        ("optimizer=log(1,2)",
         "--space optimizer=log(1,2): log(a,b) does not fit; this one takes str values",
         "choice(...)"),
        ("epochs=int(1,5.5)",
         "--space epochs=int(1,5.5): bounds must be whole numbers, got 1, 5.5", None),
        ("epochs=log(1.5,5)",
         "--space epochs=log(1.5,5): bounds must be whole numbers, got 1.5, 5", None),
        ("lr=float(0.2,0.2)", "--space lr=float(0.2,0.2): needs a < b, got a=0.2, b=0.2", None),
        ("lr=float(0.3,0.2)", "--space lr=float(0.3,0.2): needs a < b, got a=0.3, b=0.2", None),
        ("lr=log(-1,1)", "--space lr=log(-1,1): log(a,b) needs 0 < a < b, got a=-1", None),
        ("lr=log(0,1)", "--space lr=log(0,1): log(a,b) needs 0 < a < b, got a=0", None),
        ("lr=float(x,1)", "--space lr=float(x,1): bound 'x' is not a finite number", None),
        ("lr=float(0,inf)", "--space lr=float(0,inf): bound 'inf' is not a finite number", None),
        ("lr=float(nan,1)", "--space lr=float(nan,1): bound 'nan' is not a finite number", None),
        ("lr=choice(0.1,0.2)\n", None, None),  # accepted: the control of this table
    ],
)  # fmt: skip
def test_bad_bounds_and_choices_say_what_is_wrong(entry, message, hint):
    if message is None:
        assert _space(entry)[0].values == (0.1, 0.2)
        return
    assert _refused(entry) == (message, hint)


def test_choices_are_numbers_only_for_numeric_targets():
    lr, opt, _ = _space("lr=choice(1,0.5,1e-2)", "optimizer=choice(sgd,adam)",
                          "param.act=choice(relu,tanh)")  # fmt: skip
    assert lr.values == (1.0, 0.5, 0.01) and all(type(v) is float for v in lr.values)
    assert opt.values == ("sgd", "adam")
    (inf,) = _space("data.noise=choice(0.1,inf)")
    assert inf.values == (0.1, float("inf"))  # a choice may hold inf: the Param decides


def test_names_are_checked_against_options_and_declared_parameters():
    searchable = (
        "searchable: epochs, batch-size, lr, optimizer, momentum, weight-decay, grad-clip, "
        "scheduler, warmup-epochs, early-stop, min-delta, param.NAME, data.NAME"
    )
    assert _refused("val-fraction=float(0.1,0.3)") == (
        "--space val-fraction=float(0.1,0.3): 'val-fraction' is not searched (it changes "
        f"what trials measure or where they go); {searchable}",
        None,
    )
    assert _refused("lrr=log(1e-4,1)") == (
        f"--space lrr=log(1e-4,1): unknown name 'lrr' (did you mean 'lr'?); {searchable}",
        None,
    )
    assert _refused("zzzz=log(1e-4,1)")[0] == (
        f"--space zzzz=log(1e-4,1): unknown name 'zzzz'; {searchable}"
    )
    assert _refused("param.width=int(4,8)") == (
        "--space param.width=int(4,8): unknown model parameter 'width'; "
        "allowed: param.act, param.hidden",
        "tk info MODEL",
    )
    assert _refused("data.flip-rates=float(0,1)")[0] == (
        "--space data.flip-rates=float(0,1): unknown dataset parameter 'flip-rates'; "
        "allowed: data.flip_rate, data.noise"
    )
    with pytest.raises(UsageError) as info:
        parse_space(["param.x=int(1,2)"], [], DATA, OWNERS)
    assert info.value.message.endswith("unknown model parameter 'x'; allowed: (none)")
    # a prefix other than param/data is an option name
    assert _refused("model.hidden=int(1,2)")[0].startswith(
        "--space model.hidden=int(1,2): unknown name 'model.hidden'"
    )


def test_values_are_checked_by_what_they_set_with_the_entry_named():
    assert _refused("epochs=int(0,5)") == (
        "--space epochs=int(0,5): --epochs must be at least 1, got 0",
        None,
    )
    assert _refused("param.act=choice(relu,gelu)")[0].startswith(
        "--space param.act=choice(relu,gelu): circle: parameter 'act'"
    )
    assert _refused("data.noise=choice(0.1,lots)")[0] == (
        "--space data.noise=choice(0.1,lots): circles: parameter 'noise' expects float, got 'lots'"
    )
    assert _refused("param.hidden=choice(8,x)")[0].startswith(
        "--space param.hidden=choice(8,x): circle: parameter 'hidden' expects int"
    )


def test_a_name_searched_twice_is_refused():
    with pytest.raises(UsageError) as info:
        _space("lr=log(1e-3,1)", "batch-size=choice(8)", "lr=float(0.1,0.2)")
    assert (info.value.message, info.value.hint) == (
        "--space lr=float(0.1,0.2): lr is searched twice",
        "one --space each",
    )
    with pytest.raises(UsageError, match="batch-size is searched twice"):
        _space("batch-size=choice(8)", "batch_size=choice(16)")
    assert [d.name for d in _space("param.hidden=choice(4)", "data.noise=choice(0.1)")] == [
        "param.hidden",
        "data.noise",
    ]


def test_edge_names_and_values():
    # a parameter's error keeps its fix; an '=' or an 'X' inside the spec is a value
    assert _refused("param.act=choice(relu,gelu)") == (
        "--space param.act=choice(relu,gelu): circle: parameter 'act' must be one of "
        "relu, tanh, got 'gelu'",
        "tk info circle",
    )
    assert split_entry("param.act=choice(a=1,b)") == ("param.act", "choice", ["a=1", "b"])
    assert _items("XL,M") == ["XL", "M"]
    # only the first dot splits: param.hidden.x is a model parameter named hidden.x
    assert _refused("param.hidden.x=int(1,2)")[0].startswith(
        "--space param.hidden.x=int(1,2): unknown model parameter 'hidden.x'"
    )
    # a declared name is taken as written before '-' is read as '_'
    (dim,) = parse_space(["param.lr-mult=float(1,2)"], [Param("lr-mult", float, 1.0)], [], OWNERS)
    assert (dim.name, dim.key) == ("param.lr-mult", "lr-mult")
    # a text parameter's choices stay text, exactly as written
    (dim,) = parse_space(["param.tag=choice(007,1e-3)"], [Param("tag", str, "")], [], OWNERS)
    assert dim.values == ("007", "1e-3")
