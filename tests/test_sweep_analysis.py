"""Sweep building blocks without TensorFlow: grid parsing/expansion, Pareto front, pick, fits, CSV, plots."""
from __future__ import annotations

import csv
import io
import math

import pytest

from edgekit.errors import InvalidArgument, UnknownNameError
from edgekit.sweep import analysis, grid
from edgekit.sweep.results import SweepResult, SweepRow, to_csv


def row(point, acc, p50, device="local", mult_adds=1_000_000, precision="int8", status="ok", model="mobilenet_v1",
        **kw):
    return SweepRow(point=point, model=model, name=point, options=kw.pop("options", {"alpha": 0.5}),
                    precision=precision, format="tflite", device=device, status=status, accuracy=acc, p50_ms=p50,
                    p90_ms=None if p50 is None else p50 * 1.1, mult_adds=mult_adds, **kw)


# ------------------------------------------------------------------------------------------------ grid
def test_parse_grid_reads_yaml_scalars():
    g = grid.parse_grid(["alpha=0.25,0.5,1", "resolution=32,48", "model=mobilenet_v1", "depth-multiplier=1"])
    assert g == {"alpha": (0.25, 0.5, 1), "resolution": (32, 48), "model": ("mobilenet_v1",),
                 "depth_multiplier": (1,)}
    assert isinstance(g["resolution"][0], int) and isinstance(g["alpha"][0], float)
    assert grid.parse_grid({"alpha": [0.25, 0.5], "resolution": 32}) == {"alpha": (0.25, 0.5), "resolution": (32,)}


@pytest.mark.parametrize("items, words", [
    (["alpha"], "KEY=V1,V2"),
    (["alpha="], "empty value list"),
    (["=1,2"], "no key"),
    (["alpha=0.5,,1"], None),   # empty items between commas are dropped, not an error
    (["alpha=0.5", "alpha=1"], "given twice"),
    (["alpha=0.5,0.5"], "lists 0.5 twice"),
])
def test_parse_grid_rejects_bad_items(items, words):
    if words is None:
        assert grid.parse_grid(items) == {"alpha": (0.5, 1)}
        return
    with pytest.raises(InvalidArgument, match=words) as exc:
        grid.parse_grid(items)
    assert exc.value.hint


def test_expand_product_and_fixed_options():
    combos = grid.expand(["mobilenet_v1"], {"alpha": (0.25, 0.5), "resolution": (32, 48, 64)},
                         {"classes": 10, "input_channels": 1, "weights": "none", "dropout": None})
    assert len(combos) == 6
    first = combos[0].option_dict
    assert first == {"alpha": 0.25, "resolution": 32, "classes": 10, "input_channels": 1, "weights": "none"}
    assert combos[0].grid_dict == {"alpha": 0.25, "resolution": 32}


def test_expand_families_apply_keys_they_take():
    combos = grid.expand([], {"model": ("mobilenet_v1", "efficientnet_b0"), "alpha": (0.5, 1.0),
                              "resolution": (32, 64)}, {"classes": 10})
    fams = [c.model for c in combos]
    assert fams.count("mobilenet_v1") == 4 and fams.count("efficientnet_b0") == 2   # no alpha for B0
    b0 = [c for c in combos if c.model == "efficientnet_b0"][0]
    assert b0.skipped == ("alpha",) and "alpha" not in b0.option_dict
    assert b0.grid_dict["model"] == "efficientnet_b0"


@pytest.mark.parametrize("models, g, fixed, words", [
    (["mobilenet_v1"], {}, {}, "grid is empty"),
    (["mobilenet_v1"], {"alpah": (0.5,)}, {}, "did you mean 'alpha'"),
    (["mobilenet_v1"], {"weights": ("none",)}, {}, "cannot be a grid key"),
    (["mobilenet_v1"], {"alpha": (0.5,)}, {"alpha": 0.25}, "both fixed"),
    (["mobilenet_v1"], {"rho": (0.5,), "resolution": (32,)}, {}, "both rho and resolution"),
    (["mobilenet_v1"], {"rho": (0.5,)}, {"resolution": 32}, "--resolution is fixed"),
    (["mobilenet_v1"], {"model": ("mobilenet_v2",)}, {}, "MODEL is given"),
    (["my_model.keras"], {"alpha": (0.5,)}, {}, "not a zoo name"),
    (["resnet50"], {"alpha": (0.5,)}, {}, "no model of this sweep takes it"),
    (["mobilenet_v1"], {"alpha": (0.5,)}, {"blocks": 3}, "takes blocks"),
    ([], {"model": ("mobilenet_v1", "mobilenet")}, {}, "listed twice"),
])
def test_expand_rejects_bad_grids(models, g, fixed, words):
    with pytest.raises(InvalidArgument, match=words) as exc:
        grid.expand(models, g, fixed)
    assert exc.value.hint


def test_expand_unknown_family_has_did_you_mean():
    with pytest.raises(UnknownNameError, match="mobilenet_v9") as exc:
        grid.expand([], {"model": ("mobilenet_v9",), "alpha": (0.5,)}, {})
    assert "mobilenet" in exc.value.hint


# ------------------------------------------------------------------------------------------------ Pareto and pick
def test_pareto_front_and_pick():
    rows = [row("a", 0.80, 1.0), row("b", 0.85, 2.0), row("c", 0.84, 3.0),     # c dominated by b
            row("d", 0.90, 5.0), row("e", 0.95, None, status="timeout"),       # e failed: never on the front
            row("f", 0.80, 1.0)]                                               # f ties a: both on the front
    assert [r.point for r in analysis.pareto_front(rows)] == ["a", "f", "b", "d"]
    p = analysis.pick(rows, 2.5)
    assert p.fits and p.point == "b" and p.latency_ms == 2.0 and "most accurate" in p.statement
    assert [r.point for r in rows if r.pick] == ["b"]
    p = analysis.pick(rows, 0.5)
    assert not p.fits and p.point in ("a", "f") and "NO point fits" in p.statement and "fastest" in p.statement
    assert not any(r.pick for r in rows)
    # p90 changes the metric, not the logic
    assert analysis.pick(rows, 2.1, metric="p90").point == "a"


def test_pick_prefers_faster_on_equal_accuracy_and_names_emulation():
    rows = [row("slow", 0.9, 3.0, device="pi"), row("fast", 0.9, 2.0, device="pi")]
    p = analysis.pick(rows, 5, emulated=True)
    assert p.point == "fast" and p.statement.startswith("pi (emulated)")
    assert not analysis.pick([row("x", None, None, status="connect_error")], 5).fits


def test_fronts_are_per_device():
    rows = [row("a", 0.8, 1.0, device="d1"), row("b", 0.9, 2.0, device="d1"),
            row("a", 0.8, 3.0, device="d2"), row("b", 0.9, 2.0, device="d2")]
    fronts = analysis.mark_fronts(rows)
    assert fronts == {"d1": ["a", "b"], "d2": ["b"]}
    assert [r.pareto for r in rows] == [True, True, False, True]


# ------------------------------------------------------------------------------------------------ fits
def test_accuracy_fit_is_exact_on_log_linear_data_and_counts_points_once():
    rows = []
    for i, ma in enumerate([1e6, 1e7, 1e8, 1e9]):
        acc = 0.5 + 0.1 * math.log10(ma / 1e6)
        rows += [row(f"p{i}", acc, 1.0, device=d, mult_adds=int(ma)) for d in ("d1", "d2")]
    (fit,) = analysis.accuracy_fits(rows)
    assert fit.n == 4 and fit.slope == pytest.approx(0.1) and fit.r2 == pytest.approx(1.0)
    assert fit.predict(1e7) == pytest.approx(0.6)
    noisy = [row("q0", 0.5, 1, mult_adds=10 ** 6), row("q1", 0.7, 1, mult_adds=10 ** 7),
             row("q2", 0.6, 1, mult_adds=10 ** 8)]
    (fit,) = analysis.accuracy_fits(noisy)
    assert 0 < fit.r2 < 1


def test_accuracy_fit_needs_three_points_and_splits_precisions():
    rows = [row("a", 0.5, 1, mult_adds=10 ** 6), row("b", 0.6, 1, mult_adds=10 ** 7),
            row("c", 0.6, 1, mult_adds=10 ** 7, precision="float32")]
    fits = {f.precision: f for f in analysis.accuracy_fits(rows)}
    assert set(fits) == {"int8", "float32"} and fits["int8"].r2 is None and "needs 3" in fits["int8"].note


def test_latency_model_recovers_overhead_and_throughput_and_flags_outlier():
    # 0.05 ms overhead + 1 GMAC/s; one point runs 4x slower than its mult-adds predict
    mas = [1e6, 4e6, 1.6e7, 6.4e7, 2.56e8]
    rows = [row(f"p{i}", 0.8, 0.05 + ma / 1e6, mult_adds=int(ma)) for i, ma in enumerate(mas)]
    fit = analysis.latency_fit(rows)
    assert fit.overhead_ms == pytest.approx(0.05, rel=1e-6) and fit.gmacs == pytest.approx(1.0, rel=1e-6)
    assert fit.r2_log == pytest.approx(1.0) and fit.outliers == []
    bad = row("slow", 0.8, 4 * (0.05 + 16.0), mult_adds=int(1.6e7), precision="float16")
    fit = analysis.latency_fit(rows + [bad])
    assert fit.outliers == ["slow"] and bad.latency_outlier and bad.latency_ratio > 2
    assert not any(r.latency_outlier for r in rows)
    assert "needs 3" in analysis.latency_fit(rows[:2]).note


def test_latency_fit_constraints_never_give_negative_overhead():
    # latency proportional to mult-adds with noise that would make an unconstrained intercept negative
    rows = [row(f"p{i}", 0.8, t, mult_adds=int(ma)) for i, (ma, t) in
            enumerate([(1e6, 0.9), (1e7, 10.5), (1e8, 101.0)])]
    fit = analysis.latency_fit(rows)
    assert fit.overhead_ms >= 0 and fit.gmacs > 0


# ------------------------------------------------------------------------------------------------ output
def test_csv_has_a_column_per_grid_key():
    rows = [row("a", 0.8, 1.0, options={"alpha": 0.5, "resolution": 32}, resolution=32),
            row("b", 0.9, 2.0, options={"model": "mobilenet_v2", "rho": 0.5}, model="mobilenet_v2", resolution=112)]
    table = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert list(table[0])[:3] == ["point", "alpha", "rho"]          # model/resolution are row columns already
    assert table[0]["alpha"] == "0.5" and table[0]["rho"] == "" and table[0]["resolution"] == "32"
    assert table[1]["model"] == "mobilenet_v2" and table[1]["rho"] == "0.5" and table[1]["resolution"] == "112"
    assert table[0]["p50_ms"] == "1.0" and table[0]["status"] == "ok" and table[0]["error"] == ""


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    from edgekit.sweep import plots

    rows = [row(f"p{i}", 0.6 + 0.05 * i, 0.1 * 2 ** i, device=d, mult_adds=10 ** (6 + i), precision=p,
                emulated=d == "pi", options={"alpha": 0.25 * (i + 1)})
            for i in range(4) for d in ("local", "pi") for p in ("int8", "float32")]
    rows.append(row("broken", None, None, status="export_failed"))
    res = SweepResult(out=str(tmp_path), metric="p50", budget_ms=0.5, rows=rows)
    res.fronts, res.picks, res.accuracy_fits, res.latency_fits = analysis.analyze(rows, "p50", 0.5)
    paths = plots.write_plots(res, tmp_path / "plots")
    assert set(paths) == {"accuracy_vs_latency", "accuracy_vs_mult_adds", "latency_vs_mult_adds"}
    for p in paths.values():
        data = open(p, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert not list((tmp_path / "plots").glob(".*part"))


# ------------------------------------------------------------------------------------------------ chance
def _chance(r, above):
    r.chance, r.test_samples, r.above_chance, r.min_accuracy = 0.1, 1000, above, 0.124
    return r


def test_rows_at_chance_stay_out_of_fronts_fits_and_picks():
    rows = [_chance(row("a", 0.11, 0.5, mult_adds=10 ** 6), False),    # fastest, at chance
            _chance(row("b", 0.70, 1.0, mult_adds=10 ** 7), True),
            _chance(row("c", 0.80, 2.0, mult_adds=10 ** 8), True),
            _chance(row("d", 0.85, 3.0, mult_adds=10 ** 9), True)]
    assert [r.point for r in analysis.pareto_front(rows)] == ["b", "c", "d"]
    p = analysis.pick(rows, 0.7)   # only the at-chance point fits the budget: nothing is picked inside it
    assert not p.fits and p.point == "b" and p.at_chance == 1 and "at chance left out" in p.statement
    assert not rows[0].pick
    (fit,) = analysis.accuracy_fits(rows)
    assert fit.n == 3 and [a for _, a in fit.points] == [0.70, 0.80, 0.85] and "1 point(s) at chance" in fit.note
    s = analysis.chance_summary(rows)
    assert s.points == 4 and s.above == 3 and s.at_chance == ["a"] and "1 of 4 points" in s.statement
    # the latency model keeps them: their latency is real
    assert analysis.latency_fit(rows).n == 4


def test_a_sweep_with_no_point_above_chance_picks_nothing_and_says_what_to_change():
    rows = [_chance(row(f"p{i}", acc, 0.01 * (i + 1), mult_adds=10 ** (6 + i)), False)
            for i, acc in enumerate([0.083, 0.098, 0.112])]
    fronts, picks, fits, _ = analysis.analyze(rows, budget_ms=0.05)
    assert fronts == {"local": []} and not any(r.pareto or r.pick for r in rows)
    (p,) = picks
    assert not p.fits and p.point is None and p.at_chance == 3
    assert "NO point is significantly above chance" in p.statement and "--epochs" in p.statement
    assert "chance 10.00%, best 11.20%" in p.statement and "12.40%" in p.statement
    (fit,) = fits
    assert fit.r2 is None and "0 point(s) above chance" in fit.note
    s = analysis.chance_summary(rows)
    assert s.above == 0 and "NO point is significantly above chance" in s.statement and "--lr" in s.statement
    # the result says the budget is not met, and require_budget's error says why
    from edgekit.sweep.api import budget_not_met

    res = SweepResult(out="x", metric="p50", budget_ms=0.05, rows=rows, picks=picks)
    assert res.budget_met is False
    exc = budget_not_met(res)
    assert "above chance" in exc.message and "--epochs" in exc.hint


def test_rows_without_a_chance_test_are_kept():
    rows = [row("a", 0.5, 1.0), row("b", 0.6, 2.0)]   # above_chance None: not tested (e.g. an older results.json)
    assert len(analysis.pareto_front(rows)) == 2 and analysis.chance_summary(rows) is None
