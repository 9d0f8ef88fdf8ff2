"""Plotly Express figures of a table: a benchmark run's (`runs.frame`), a tuning's candidates, a
confusion matrix. The Benchmark, Tune and Train pages and the CLI's reports draw them."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from core.measure import runs
from core.measure.charts import FAMILIES
from core.model.tuned import Tuning
from core.settings import SETUPS, BASELINE

# The settings shown on every point's hover: those that change a result (see runs.CellSettings).
SETTINGS = ["precision", "hint", "streams", "requests", "threads", "pinning", "shape", "mode"]


def _hover(df: pd.DataFrame) -> dict:
    return {c: True for c in ["backend", *SETTINGS, "batch", "repeats"] if c in df.columns}


def family_colours(df: pd.DataFrame) -> dict[str, str]:
    """A colour for every backend label (the legend's human name), shades of its runtime's hue."""
    colours = {}
    for runtime, group in df.groupby("runtime", sort=False):
        labels = list(dict.fromkeys(group["label"]))
        palette = FAMILIES.get(str(runtime), px.colors.sequential.Greys)[3:]
        step = max(1, len(palette) // max(1, len(labels)))
        colours |= {label: palette[min(len(palette) - 1, 1 + i * step)] for i, label in enumerate(labels)}
    return colours


def by_size(df: pd.DataFrame, y: str, kind: str, title: str, y_title: str) -> go.Figure:
    """The original study's four charts: a metric vs test size per backend, as bars or a trend line."""
    df = df.sort_values(["backend", "batch", "size"])
    facet = "batch" if df["batch"].nunique() > 1 else None
    common = dict(x="size", y=y, color="label", facet_col=facet, hover_data=_hover(df), title=title,
                  color_discrete_map=family_colours(df),
                  labels={"size": "test size (images)", y: y_title, "batch": "batch", "label": "backend"})
    if kind == "bar":
        err = {}
        if y == "total_s_median":
            err = dict(error_y=df["total_s_max"] - df["total_s_median"],
                       error_y_minus=df["total_s_median"] - df["total_s_min"])
        fig = px.bar(df, barmode="group", **common, **err)
    else:
        fig = px.line(df, markers=True, **common)
    fig.update_yaxes(matches=None, showticklabels=True)
    return fig.update_layout(legend_title_text="backend", margin=dict(t=60))


def _largest(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["size"] == df["size"].max()]


def throughput(df: pd.DataFrame) -> go.Figure:
    d = _largest(df).sort_values("throughput_ips")
    return px.bar(d, x="throughput_ips", y="label", color=d["batch"].astype(str), barmode="group",
                  orientation="h", hover_data=_hover(d), title=f"Throughput at {int(d['size'].max())} images",
                  labels={"throughput_ips": "images / s", "color": "batch", "label": "backend"})


def latency_percentiles(df: pd.DataFrame) -> go.Figure:
    d = _largest(df).melt(
        id_vars=["backend", "label", "batch", *[c for c in SETTINGS if c in df.columns]],
        value_vars=["batch_latency_ms_p50", "batch_latency_ms_p90", "batch_latency_ms_p99"],
        var_name="percentile", value_name="ms")
    d["percentile"] = d["percentile"].str.removeprefix("batch_latency_ms_")
    fig = px.bar(d, x="label", y="ms", color="percentile", barmode="group", facet_col="batch",
                 hover_data=_hover(d), title="Latency of one batch call (p50 / p90 / p99)", log_y=True,
                 labels={"label": "backend"})
    return fig.update_yaxes(matches=None, showticklabels=True)


def speedup(sp: pd.DataFrame, baseline_label: str) -> go.Figure:
    fig = px.line(sp.sort_values(["backend", "batch", "size"]), x="size", y="speedup", color="label",
                  facet_col="batch", markers=True, hover_data=_hover(sp), color_discrete_map=family_colours(sp),
                  title=f"Speed-up over {baseline_label} (median time ratio, same batch and size)",
                  labels={"size": "test size (images)", "speedup": "× faster", "label": "backend"})
    fig.add_hline(y=1, line_dash="dot", line_color="grey")
    return fig.update_yaxes(matches=None, showticklabels=True)


def throughput_vs_latency(df: pd.DataFrame) -> go.Figure:
    d = _largest(df)
    return px.scatter(d, x="batch_latency_ms_p50", y="throughput_ips", color="label",
                      symbol=d["batch"].astype(str), hover_data=_hover(d), log_x=True, size_max=12,
                      color_discrete_map=family_colours(d),
                      title="Throughput vs latency (up and left is better)",
                      labels={"batch_latency_ms_p50": "p50 latency of a batch call (ms)",
                              "throughput_ips": "images / s", "symbol": "batch", "label": "backend"})


def benchmark_figures(df: pd.DataFrame, sp: pd.DataFrame | None, baseline_label: str) -> dict[str, go.Figure]:
    """Every chart of a run, by title, in display order."""
    figs = {
        "Time (bar)": by_size(df, "total_s_median", "bar", "Time to classify N images (median, min–max bars)", "seconds"),
        "Time trend": by_size(df, "total_s_median", "line", "Time vs test size", "seconds"),
        "Memory (bar)": by_size(df, "rss_peak_mb", "bar", "Peak memory of the backend's process", "MB (RSS)"),
        "Memory trend": by_size(df, "rss_peak_mb", "line", "Peak memory vs test size", "MB (RSS)"),
        "Throughput": throughput(df),
        "Latency percentiles": latency_percentiles(df),
        "Throughput vs latency": throughput_vs_latency(df),
    }
    if sp is not None and not sp.empty:
        figs["Speed-up"] = speedup(sp, baseline_label)
    return figs


def png_export_available() -> bool:
    """kaleido draws PNGs with a Chrome or Chromium it finds on the machine (Community Cloud has
    none, and one would cost hundreds of MB beside a training job: there, HTML is the export)."""
    try:
        from choreographer.browsers.chromium import Chromium
    except ImportError:
        return False
    return Chromium.find_browser(skip_local=False) is not None


def figure_png(fig: go.Figure, width: int = 1100, height: int = 500) -> bytes:
    """PNG bytes through kaleido, which needs a Chrome or Chromium on the machine."""
    try:
        return fig.to_image(format="png", width=width, height=height)
    except Exception as exc:  # kaleido missing, or no browser for it to drive
        raise RuntimeError(f"PNG export is unavailable here ({exc}); the HTML export always works") from exc


def run_figures(df: pd.DataFrame) -> dict[str, go.Figure]:
    """All charts of a benchmark table (`runs.frame`); the page and the CLI draw the same ones."""
    has_baseline = BASELINE in set(df["backend"])
    sp = runs.speedups(df) if has_baseline else None
    return benchmark_figures(df, sp, SETUPS[BASELINE].label if has_baseline else "")


def tune_scatter(tuning: Tuning) -> go.Figure:
    """Every measured setup of a tuning: p50 latency vs throughput; the Pareto front of the eligible
    ones as a line; ineligible setups grey, their reason on hover."""
    df = tuned_frame(tuning)
    df["group"] = [r if e else "ineligible" for r, e in zip(df["runtime"], df["eligible"])]
    fig = px.scatter(df, x="p50_ms", y="throughput_ips", color="group", symbol="objective", log_x=True,
                     hover_data={"label": True, "batch": True, "reason": True, "accuracy": ":.3f",
                                 "agreement_with_tf": ":.3f", "p99_ms": ":.2f", "shape": True},
                     color_discrete_map={runtime: palette[6] for runtime, palette in FAMILIES.items()}
                     | {"ineligible": "#c7c7c7"},
                     title="Setups tried: latency vs throughput (up and left is better)",
                     labels={"p50_ms": "p50 latency of a call (ms)", "throughput_ips": "images / s",
                             "group": "runtime"})
    front = tuning.pareto()
    if front:
        fig.add_scatter(x=[c.p50_ms for c in front], y=[c.throughput_ips for c in front], mode="lines",
                        name="Pareto front", line=dict(color="black", dash="dot"))
    return fig


def tuned_frame(tuning: Tuning) -> pd.DataFrame:
    """A tuning's candidates as a table, one row each, its setup and what the runtime reported as columns."""
    return pd.DataFrame([
        {"objective": c.objective, "label": c.label, "runtime": c.runtime, "variant": c.setup.variant,
         "precision": c.setup.precision, "batch": c.batch, "shape": "static" if c.setup.static else "dynamic",
         "streams": c.reported.streams, "requests": c.reported.requests, "threads": c.reported.threads,
         "p50_ms": c.p50_ms, "p99_ms": c.p99_ms, "throughput_ips": c.throughput_ips, "photos": c.photos,
         "repeats": c.repeats, "accuracy": c.accuracy, "agreement_with_tf": c.agreement_with_tf,
         "eligible": c.eligible, "reason": c.reason}
        for c in tuning.candidates])


def confusion_matrix(matrix: list[list[int]], classes: tuple[str, ...], title: str) -> go.Figure:
    """Counts of true (rows) vs predicted (columns) classes, each row's share as the colour."""
    counts = pd.DataFrame(matrix, index=list(classes), columns=list(classes))
    shares = counts.div(counts.sum(axis=1).replace(0, 1), axis=0)
    fig = px.imshow(shares, text_auto=False, color_continuous_scale="Blues", zmin=0, zmax=1, title=title,
                    labels={"x": "predicted", "y": "true", "color": "share of the row"})
    fig.update_traces(text=counts.values, texttemplate="%{text}",
                      hovertemplate="true %{y}, predicted %{x}: %{text} photos (%{z:.0%} of the row)<extra></extra>")
    return fig
