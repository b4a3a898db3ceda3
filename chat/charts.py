"""Small server-side SVG charts (no JavaScript, no chart library to vendor)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe


def bar_chart(
    days: Sequence[date],
    series: Sequence[tuple[str, Sequence[int], str]],
    *,
    width: int = 720,
    height: int = 180,
    title: str = "",
) -> SafeString:
    """Stacked daily bars. `series` is (name, values, colour); a legend and y-axis max are drawn."""
    pad_left, pad_right, pad_bottom, pad_top = 34, 24, 22, 8
    n = max(1, len(days))
    totals = [sum(values[i] for _, values, _ in series) for i in range(n)]
    peak = max([*totals, 1])
    plot_h = height - pad_bottom - pad_top
    slot = (width - pad_left - pad_right) / n
    bar_w = max(2.0, slot * 0.7)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + 18}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{pad_left}" y1="{pad_top + plot_h}" x2="{width}" y2="{pad_top + plot_h}" stroke="#ccd2dd"/>',
        f'<text x="{pad_left - 6}" y="{pad_top + 10}" text-anchor="end" font-size="10" fill="#5d6677">{peak}</text>',
        f'<text x="{pad_left - 6}" y="{pad_top + plot_h}" text-anchor="end" font-size="10" fill="#5d6677">0</text>',
    ]
    for i in range(n):
        x = pad_left + i * slot + (slot - bar_w) / 2
        y: float = pad_top + plot_h
        tip = [f"{days[i]:%d %b}" if i < len(days) else ""]
        for name, values, colour in series:
            h = plot_h * values[i] / peak if peak else 0
            if h > 0:
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}"/>')
            tip.append(f"{name}: {values[i]}")
        parts.append(
            f'<rect x="{x:.1f}" y="{pad_top}" width="{bar_w:.1f}" height="{plot_h}" fill="transparent">'
            f"<title>{escape(' · '.join(tip))}</title></rect>"
        )
        if n <= 31 and (i % max(1, n // 6) == 0 or i == n - 1) and i < len(days):
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 6}" text-anchor="middle" font-size="10" '
                f'fill="#5d6677">{days[i]:%d %b}</text>'
            )
    legend_x = pad_left
    for name, _, colour in series:
        parts.append(f'<rect x="{legend_x}" y="{height + 6}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{height + 15}" font-size="11" fill="#1d2330">{escape(name)}</text>')
        legend_x += 24 + 7 * len(name)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above


def hbar_list(rows: Sequence[tuple[str, int]], *, colour: str = "#2457c5") -> SafeString:
    """Horizontal bars for ranked lists (most cited documents)."""
    if not rows:
        return mark_safe('<p class="muted">No data yet.</p>')
    peak = max(v for _, v in rows) or 1
    items = "".join(
        f'<div class="hbar"><span class="hbar-label">{escape(label)}</span>'
        f'<span class="hbar-track"><span class="hbar-fill" style="width:{100 * value / peak:.0f}%;background:{colour}">'
        f'</span></span><span class="hbar-value">{value}</span></div>'
        for label, value in rows
    )
    return mark_safe(items)  # noqa: S308 - labels escaped
