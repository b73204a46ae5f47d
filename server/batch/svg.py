"""Small inline SVG charts for the batch report (no plotting library needed)."""

from __future__ import annotations

from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")
_W, _H, _PAD_L, _PAD_B, _PAD_T, _PAD_R = 640, 300, 56, 40, 16, 150


def _frame(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
            f'font-family="sans-serif" font-size="12">' + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {extra}>'
            f"{escape(text)}</text>")


def line_chart(xs: list[int], series: dict[str, list[float]], title: str,
               y_label: str = "") -> str:
    """Lines over integer x values; y in [0, 1] (shares)."""
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B

    def px(x: int) -> float:
        span = max(xs[-1] - xs[0], 1)
        return _PAD_L + (x - xs[0]) / span * plot_w

    def py(y: float) -> float:
        return _PAD_T + (1 - y) * plot_h

    body = [_axes(plot_w, plot_h)]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        body.append(_text(_PAD_L - 6, py(tick) + 4, f"{tick:.0%}", "end"))
        body.append(f'<line x1="{_PAD_L}" x2="{_PAD_L + plot_w}" y1="{py(tick):.1f}" '
                    f'y2="{py(tick):.1f}" stroke="#eee"/>')
    for x in xs:
        body.append(_text(px(x), _H - _PAD_B + 16, str(x), "middle"))
    body.append(_text(_PAD_L + plot_w / 2, _H - 6, "turn", "middle"))
    body.append(_text(12, _PAD_T + plot_h / 2, y_label, "middle",
                      f'transform="rotate(-90 12 {_PAD_T + plot_h / 2:.1f})"'))
    for i, (name, ys) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
        body.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                    f'stroke-width="2"/>')
        body += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>'
                 for x, y in zip(xs, ys, strict=True)]
        legend_y = _PAD_T + 14 + 18 * i
        body.append(f'<rect x="{_W - _PAD_R + 12}" y="{legend_y - 9}" width="12" height="12" '
                    f'fill="{colour}"/>')
        body.append(_text(_W - _PAD_R + 30, legend_y + 1, name))
    return _frame(_W, _H, body, title)


def _axes(plot_w: float, plot_h: float) -> str:
    x0, y0 = _PAD_L, _PAD_T + plot_h
    return (f'<line x1="{x0}" y1="{_PAD_T}" x2="{x0}" y2="{y0}" stroke="#333"/>'
            f'<line x1="{x0}" y1="{y0}" x2="{x0 + plot_w}" y2="{y0}" stroke="#333"/>')


def bar_chart(labels: list[str], values: list[float | None], title: str,
              reference: float | None = None, unit: str = "", counts: bool = False) -> str:
    """Horizontal bars, one per label; None is drawn as `n/a`; `counts` labels integers."""
    row, label_w, value_w = 20, 220, 70
    width = 640
    plot_w = width - label_w - value_w
    height = max(row * len(labels) + 30, 60)
    top = max([v for v in values if v is not None] + [reference or 0, 1e-9])
    body = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 10 + i * row
        body.append(_text(label_w - 6, y + 13, label, "end"))
        if value is None:
            body.append(_text(label_w + 4, y + 13, "n/a", extra='fill="#888"'))
            continue
        bar = value / top * plot_w
        colour = PALETTE[0] if reference is None or value >= reference else PALETTE[2]
        body.append(f'<rect x="{label_w}" y="{y + 2}" width="{bar:.1f}" height="{row - 6}" '
                    f'fill="{colour}"/>')
        shown = f"{value:.0f}" if counts else f"{value:.2f}"
        body.append(_text(label_w + bar + 4, y + 13, f"{shown}{unit}"))
    if reference is not None:
        x = label_w + reference / top * plot_w
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="4" y2="{height - 20}" '
                    f'stroke="#333" stroke-dasharray="4 3"/>')
        body.append(_text(x, height - 6, f"{reference:g}{unit}", "middle"))
    return _frame(width, height, body, title)
