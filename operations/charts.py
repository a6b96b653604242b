"""Charts drawn on the server as inline SVG: no JavaScript library, nothing from a CDN."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe


def bar_chart(
    values: Sequence[int],
    *,
    width: int = 600,
    height: int = 120,
    label: str = "",
    axis: tuple[str, str] = ("", ""),
) -> SafeString:
    """A bar per value, left to right, scaled to the largest; the largest value written at
    the top left, `axis` (first, last) under the first and last bars, and a title per bar
    (`label` formatted with the bar's index from the end, and its value) shown on hover."""
    top, bottom = 14, 14 if any(axis) else 2
    plot = height - top - bottom
    peak = max(values, default=0)
    step = width / max(len(values), 1)
    bars = []
    for index, value in enumerate(values):
        bar = round(plot * value / peak, 1) if peak else 0
        title = label.format(ago=len(values) - 1 - index, value=value) if label else str(value)
        bars.append(
            format_html(
                '<rect x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>',
                round(index * step + 0.5, 1),
                round(top + plot - bar, 1),
                max(round(step - 1, 1), 0.5),
                bar,
                title,
            )
        )
    texts = [format_html('<text x="0" y="10">{}</text>', f"max {peak:,}")]
    if any(axis):
        texts.append(format_html('<text x="0" y="{}">{}</text>', height - 2, axis[0]))
        texts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="end">{}</text>', width, height - 2, axis[1]
            )
        )
    return mark_safe(  # noqa: S308 (every value above is escaped by format_html)
        f'<svg class="console-chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(label or "chart")}">'
        f'<g class="bars">{"".join(bars)}</g><g class="labels">{"".join(texts)}</g></svg>'
    )


def sparkline(values: Sequence[int], *, width: int = 120, height: int = 24) -> SafeString:
    """A small bar chart without labels, for a table cell."""
    peak = max(values, default=0)
    step = width / max(len(values), 1)
    bars = "".join(
        format_html(
            '<rect x="{}" y="{}" width="{}" height="{}"/>',
            round(index * step, 1),
            round(height - (height * value / peak if peak else 0), 1),
            max(round(step - 0.5, 1), 0.5),
            round(height * value / peak, 1) if peak else 0,
        )
        for index, value in enumerate(values)
    )
    return mark_safe(  # noqa: S308 (the bars are built by format_html)
        f'<svg class="console-spark" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" aria-hidden="true">{bars}</svg>'
    )
