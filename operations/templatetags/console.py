"""How the console writes its figures: numbers with separators, rates, latencies, ages."""

from __future__ import annotations

from django import template

from operations import charts

register = template.Library()

NONE = "—"


@register.filter
def num(value) -> str:
    return NONE if value is None else f"{value:,}"


@register.filter
def pct(value) -> str:
    """A fraction as a percentage with one decimal."""
    return NONE if value is None else f"{value * 100:.1f} %"


@register.filter
def width(value) -> str:
    """A fraction as a CSS width, for a progress bar."""
    return "0%" if value is None else f"{max(0.0, min(1.0, value)) * 100:.1f}%"


@register.filter
def ms(value) -> str:
    if value is None:
        return NONE
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


@register.filter
def age(seconds) -> str:
    """Seconds as "42 s", "5 min 3 s", "2 h 10 min"."""
    if seconds is None:
        return NONE
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@register.filter
def sparkline(values):
    return charts.sparkline(values)


@register.simple_tag
def minute_chart(values):
    """Attempts per minute of the last hour."""
    return charts.bar_chart(
        values, label="{ago} min ago: {value} attempts", axis=("60 min ago", "now")
    )
