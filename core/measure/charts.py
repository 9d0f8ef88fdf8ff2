"""Plotly figures drawn from plain values: Home's headline and the model's calibration, and the
colours every chart gives a runtime. Home's first screen imports only this (pandas and Plotly
Express, which the benchmark and tuning charts need, took about 0.5 s of a cold server's first
visit: core/measure/run_charts.py has those)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly import colors

from core.variants import RUNTIMES

if TYPE_CHECKING:
    from core.measure.headline import Headline


# On a phone Plotly's toolbar sits over a small chart's bars; these charts need no zoom or pan.
STATIC_CHART = {"displayModeBar": False}

# One hue family per runtime, so that every OpenVINO setup reads as OpenVINO at a glance.
# Each runtime in its own hue (core.variants), its backends in shades of it.
FAMILIES = {name: getattr(colors.sequential, runtime.hue) for name, runtime in RUNTIMES.items()}



def headline(h: Headline) -> go.Figure:
    """Home's comparison: time per photo and process memory, TensorFlow against OpenVINO."""
    from plotly.subplots import make_subplots

    fig = make_subplots(1, 2, subplot_titles=("ms per photo", "memory, MB"),
                        horizontal_spacing=0.12)
    sides = [("TensorFlow", h.tensorflow, FAMILIES["tensorflow"][6]), ("OpenVINO", h.openvino, FAMILIES["openvino"][6])]
    for name, side, colour in sides:
        fig.add_bar(y=[name], x=[side.latency_ms], orientation="h", marker_color=colour, row=1, col=1,
                    error_x={"type": "data", "symmetric": False, "array": [side.latency_p90_ms - side.latency_ms],
                             "arrayminus": [0]},
                    text=[f"{side.latency_ms:.1f} ms"], textposition="auto", name=name, showlegend=False,
                    hovertemplate=f"{side.label}<br>median %{{x:.2f}} ms, p90 {side.latency_p90_ms:.2f} ms<extra></extra>")
        fig.add_bar(y=[name], x=[side.memory_mb], orientation="h", marker_color=colour, row=1, col=2,
                    text=[f"{side.memory_mb:.0f} MB"], textposition="auto", showlegend=False,
                    hovertemplate=f"{side.label}<br>peak %{{x:.0f}} MB<extra></extra>")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=220, margin={"l": 10, "r": 10, "t": 40, "b": 10}, bargap=0.35)
    return fig


def reliability_diagram(measured: dict, temperature: float) -> go.Figure:
    """Accuracy against stated confidence on the held-out split, before and after temperature
    scaling; a calibrated model lies on the diagonal."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated", line=dict(color="grey", dash="dot"))
    for key, name in (("reliability_before", "as trained"), ("reliability_after", f"temperature {temperature:.2f}")):
        points = measured.get(key, [])
        fig.add_scatter(x=[b["confidence"] for b in points], y=[b["accuracy"] for b in points], mode="lines+markers",
                        name=name, text=[f"{b['photos']} photos" for b in points],
                        hovertemplate="confidence %{x:.0%}: right %{y:.0%} (%{text})<extra></extra>")
    fig.update_layout(title="Is the stated confidence right? (held-out split)", height=360,
                      xaxis=dict(title="stated confidence", tickformat=".0%", range=[0, 1]),
                      yaxis=dict(title="share right", tickformat=".0%", range=[0, 1.02]),
                      legend=dict(orientation="h", y=-0.3))
    return fig
