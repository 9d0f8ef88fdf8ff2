"""Plotly figures for the pages (and for exported reports)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

if TYPE_CHECKING:
    from core.predict import VariantResult


def topk_bars(results: dict[str, VariantResult], k: int) -> go.Figure:
    """Grouped horizontal bars: the top-k classes (by the first backend) for every backend."""
    first = next(iter(results.values()))
    classes = [c for c, _ in first.top_k(k)]
    fig = go.Figure()
    for variant, res in results.items():
        probs = [res.probabilities[c] for c in classes]
        fig.add_bar(
            name=variant, y=classes, x=probs, orientation="h",
            text=[f"{p:.1%}" for p in probs], textposition="auto",
            hovertemplate=f"{variant}<br>%{{y}}: %{{x:.4f}}<extra>{res.latency_ms:.1f} ms</extra>",
        )
    fig.update_layout(
        barmode="group", height=120 + 45 * k * max(1, len(results)) // 2, margin=dict(l=0, r=0, t=10, b=0),
        xaxis=dict(range=[0, 1], tickformat=".0%", title="probability"), yaxis=dict(autorange="reversed"),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig
