"""The report's PNG plots, drawn on explicit Agg canvases (no pyplot: no global backend switch and no GUI in
whatever process calls us). Every function takes one series per system, keyed by its display label."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_accuracy_by_type(per_type: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """Grouped bars: accuracy per question type, one bar per system (the first system's types, in order)."""
    systems = list(per_type)
    first = per_type[systems[0]]
    kinds = list(first)
    figure = _figure(max(6.0, 0.9 * len(kinds) * max(1, len(systems) / 2) + 2), 4)
    axes = figure.add_subplot()
    width = 0.8 / len(systems)
    for s, system in enumerate(systems):
        offset = (s - (len(systems) - 1) / 2) * width
        values = [100 * per_type[system].get(kind, {}).get("accuracy", 0.0) for kind in kinds]
        bars = axes.bar([p + offset for p in range(len(kinds))], values, width, label=system)
        # the value on each bar: a bar at 0 % is otherwise indistinguishable from a missing one
        axes.bar_label(bars, [f"{v:.0f}" for v in values], fontsize=7, padding=1)
    axes.set_xticks(list(range(len(kinds))), [f"{t}\n(n={first[t]['questions']})" for t in kinds], fontsize=8)
    axes.set_ylim(0, 115)  # headroom above 100% keeps the legend off the bars
    axes.set_yticks(range(0, 101, 20))
    axes.set_ylabel("accuracy (%)")
    axes.set_title("Accuracy by question type\n(alias in answer; abstained when unanswerable)", fontsize=10)
    axes.legend(loc="upper right", ncol=len(systems), fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def plot_latency(latencies: dict[str, Sequence[float]], path: Path) -> None:
    """Histograms of per-question latency on log-spaced bins, one per system."""
    figure = _figure(7, 4)
    axes = figure.add_subplot()
    values = [v for vs in latencies.values() for v in vs if v > 0]
    if values:
        # Log-spaced bins: the systems' latencies differ by orders of magnitude.
        low, high = math.log10(min(values)), math.log10(max(values))
        high = max(high, low + 0.1)
        bins = [10 ** (low + (high - low) * i / 30) for i in range(31)]
        for label, data in latencies.items():
            axes.hist([v for v in data if v > 0], bins=bins, alpha=0.6, label=label)
        axes.set_xscale("log")
        # Plain numbers at 1-2-5 steps: matplotlib's minor labels ("3x10^1 4x10^1") overlapped over a decade or so.
        from matplotlib.ticker import FixedLocator, MaxNLocator, NullFormatter, ScalarFormatter

        steps = [m * 10 ** e for e in range(math.floor(low) - 1, math.ceil(high) + 2) for m in (1, 2, 5)]
        axes.xaxis.set_major_locator(FixedLocator([t for t in steps if 10 ** low / 1.5 <= t <= 10 ** high * 1.5]))
        axes.xaxis.set_major_formatter(ScalarFormatter())
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # question counts: no 0.25 or 1.75
    axes.set_xlabel("latency per question (ms, log scale)")
    axes.set_ylabel("questions")
    axes.set_title("Latency per question")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def plot_reliability(calibration: dict[str, dict[str, Any]], path: Path) -> None:
    """Reliability diagram: accuracy against mean confidence per bin (marker area ~ questions in the bin),
    the diagonal being perfect calibration; ECE in the legend."""
    figure = _figure(5.5, 5)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    for label, cal in calibration.items():
        bins = [b for b in cal["bins"] if b["count"]]
        total = sum(b["count"] for b in bins) or 1
        xs = [b["mean_confidence"] for b in bins]
        ys = [b["accuracy"] for b in bins]
        line = axes.plot(xs, ys, marker=None, label=f"{label} (ECE {cal['ece']:.3f}, n={cal['questions']})")[0]
        axes.scatter(xs, ys, s=[20 + 400 * b["count"] / total for b in bins], color=line.get_color(), alpha=0.7)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("mean confidence in bin")
    axes.set_ylabel("accuracy in bin")
    axes.set_title("Reliability diagram (10 equal-width bins)")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def plot_accuracy_coverage(calibration: dict[str, dict[str, Any]], path: Path) -> None:
    """Accuracy of the n most confident answers against coverage n / N."""
    figure = _figure(6, 4)
    axes = figure.add_subplot()
    for label, cal in calibration.items():
        curve = cal["curve"]
        axes.plot([c for c, _ in curve], [100 * a for _, a in curve], label=label)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 105)
    axes.set_xlabel("coverage (share of questions, most confident responses first)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title("Accuracy against coverage")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
