"""Small server-rendered SVG bar charts (no script, no inline style: safe under the strict CSP).

`bar_chart(values, ...)` draws one bar per bucket (oldest left), a baseline, the maximum as a label
and a `<title>` per bar for hover/long-press; colours are presentation attributes, which the
`style-src 'self'` policy allows (only `style=` attributes and `<style>` blocks are blocked).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape

WIDTH = 288
HEIGHT = 72
PAD_TOP = 12


def bar_chart(values: Sequence[int], *, title: str, colour: str, bucket_start: float, bucket_s: float) -> str:
    n = max(len(values), 1)
    peak = max(values, default=0)
    slot = WIDTH / n
    bar_w = max(slot - 2, 1)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT + 14}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" stroke="#9aa3ad" stroke-width="1"/>',
    ]
    for i, v in enumerate(values):
        h = 0.0 if peak == 0 else (HEIGHT - PAD_TOP) * v / peak
        x = i * slot + 1
        hour = time.strftime("%H:00", time.gmtime(bucket_start + i * bucket_s))
        parts.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - h:.1f}" width="{bar_w:.1f}" height="{max(h, 0.0):.1f}" '
            f'fill="{escape(colour)}"><title>{hour} UTC: {v}</title></rect>'
        )
    parts.append(f'<text x="2" y="10" font-size="10" fill="#555">max {peak}/h</text>')
    parts.append(f'<text x="0" y="{HEIGHT + 12}" font-size="9" fill="#555">-24 h</text>')
    parts.append(
        f'<text x="{WIDTH}" y="{HEIGHT + 12}" font-size="9" fill="#555" text-anchor="end">now</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
