"""Charts drawn on the server as inline SVG: no script, no CDN, readable without network.

Each function returns SVG markup (Markup: its labels are escaped here) with a <title> per
mark, so a supervisor hovering a bar reads its number; the colours are a fixed palette.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#d53f8c", "#805ad5", "#718096", "#c53030", "#2c7a7b"]
W, H, PAD_L, PAD_B, PAD_T = 640, 260, 48, 36, 16


def _frame(body: list[str], legend: Sequence[str], label: str) -> Markup:
    items = "".join(
        f'<rect x="{PAD_L + i * 110}" y="{H + 4}" width="10" height="10" '
        f'fill="{PALETTE[i % len(PALETTE)]}"/><text x="{PAD_L + 14 + i * 110}" y="{H + 13}" '
        f'font-size="11">{escape(name)}</text>'
        for i, name in enumerate(legend)
    )
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {W} {H + 24}" class="chart">{"".join(body)}{items}</svg>'
    )


def _axes(top_label: str) -> list[str]:
    return [
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#999"/>',
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - 8}" y2="{H - PAD_B}" stroke="#999"/>',
        f'<text x="{PAD_L - 4}" y="{PAD_T + 4}" font-size="10" text-anchor="end">'
        f"{escape(top_label)}</text>",
        f'<text x="{PAD_L - 4}" y="{H - PAD_B}" font-size="10" text-anchor="end">0</text>',
    ]


def stacked_bars(labels: Sequence[str], series: dict[str, Sequence[int]], label: str) -> Markup:
    """One bar per label, stacked by series (the bucket flow: cases per bucket per month)."""
    totals = [sum(s[i] for s in series.values()) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    plot_h, slot = H - PAD_B - PAD_T, (W - PAD_L - 8) / max(1, len(labels))
    body = _axes(str(top))
    for i, name in enumerate(labels):
        y = H - PAD_B
        for k, (s_name, values) in enumerate(series.items()):
            h = values[i] / top * plot_h
            if values[i]:
                y -= h
                body.append(
                    f'<rect class="bar" x="{PAD_L + i * slot + slot * 0.15:.1f}" y="{y:.1f}" '
                    f'width="{slot * 0.7:.1f}" height="{h:.1f}" '
                    f'fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(name)} '
                    f"{escape(s_name)}: {values[i]}</title></rect>"
                )
        body.append(
            f'<text x="{PAD_L + (i + 0.5) * slot:.1f}" y="{H - PAD_B + 14}" font-size="10" '
            f'text-anchor="middle">{escape(name)}</text>'
        )
    return _frame(body, list(series), label)


def lines(labels: Sequence[str], series: dict[str, Sequence[float]], label: str) -> Markup:
    """One line per series over the labels, values 0..1 shown as percentages."""
    plot_h = H - PAD_B - PAD_T
    step = (W - PAD_L - 24) / max(1, len(labels) - 1)
    body = _axes("100%")
    for k, (s_name, values) in enumerate(series.items()):
        points = [
            (PAD_L + 8 + i * step, H - PAD_B - min(1.0, v) * plot_h) for i, v in enumerate(values)
        ]
        colour = PALETTE[k % len(PALETTE)]
        body.append(
            f'<polyline class="line" fill="none" stroke="{colour}" stroke-width="2" points="'
            + " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            + '"/>'
        )
        body += [
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{escape(s_name)} '
            f"{escape(labels[i])}: {values[i] * 100:.1f}%</title></circle>"
            for i, (x, y) in enumerate(points)
        ]
    for i, name in enumerate(labels):
        body.append(
            f'<text x="{PAD_L + 8 + i * step:.1f}" y="{H - PAD_B + 14}" font-size="10" '
            f'text-anchor="middle">{escape(name)}</text>'
        )
    return _frame(body, list(series), label)


def hbars(values: dict[str, int], label: str) -> Markup:
    """One horizontal bar per name (collector workload: visits)."""
    top = max(values.values(), default=0) or 1
    row = min(28.0, (H - PAD_T - PAD_B) / max(1, len(values)))
    body = []
    for i, (name, v) in enumerate(values.items()):
        width = v / top * (W - 160)
        y = PAD_T + i * row
        body.append(
            f'<text x="110" y="{y + row * 0.65:.1f}" font-size="11" text-anchor="end">'
            f"{escape(name)}</text>"
            f'<rect class="bar" x="116" y="{y + 3:.1f}" width="{width:.1f}" '
            f'height="{row - 6:.1f}" fill="{PALETTE[0]}"><title>{escape(name)}: {v}</title></rect>'
            f'<text x="{120 + width:.1f}" y="{y + row * 0.65:.1f}" font-size="11">{v}</text>'
        )
    return _frame(body, [], label)
