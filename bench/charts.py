"""Latency histograms as PNG (matplotlib, no display needed), for `make bench` and the demo's
report. No Django here: bench/run.py draws its charts outside any Django process."""

from pathlib import Path

from bench.stats import quantile

COLOURS = ("#2980b9", "#c0392b", "#27ae60", "#8e44ad")


def latency_chart(
    panels: list[tuple[str, dict[str, list[float]]]], path: Path, *, title: str
) -> None:
    """One panel per path, each with a histogram per series (e.g. Aegis and the review's
    baseline) on a shared log-scaled axis of milliseconds, p50 (solid) and p99 (dashed) marked.
    Series without values are left out; a panel without any is not drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [(name, {k: v for k, v in series.items() if v}) for name, series in panels]
    panels = [(name, series) for name, series in panels if series]
    fig, axes = plt.subplots(
        max(1, len(panels)), 1, squeeze=False, figsize=(9, 2.2 * max(1, len(panels)))
    )
    for ax, (name, series) in zip(axes[:, 0], panels):
        every = [v for values in series.values() for v in values]
        low, high = max(min(every), 0.01), max(max(every), 0.02)
        bins = np.logspace(np.log10(low * 0.9), np.log10(high * 1.1), 50)
        notes = []
        for colour, (label, values) in zip(COLOURS, series.items()):
            ax.hist(values, bins=bins, color=colour, alpha=0.6, label=label)
            p50, p99 = quantile(values, 50), quantile(values, 99)
            ax.axvline(p50, color=colour, lw=1)
            ax.axvline(p99, color=colour, lw=1, ls="--")
            notes.append(f"{label} p50 {p50:,.1f} · p99 {p99:,.1f} ms (n {len(values):,})")
        ax.set_xscale("log")
        ax.set_title(f"{name}: " + "; ".join(notes), fontsize=8)
        ax.tick_params(labelsize=7)
        if len(series) > 1:
            ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("milliseconds, log scale (solid: p50, dashed: p99)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
