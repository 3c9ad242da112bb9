"""The self-contained HTML report: PNGs embedded as data URIs, no network to view it.

Every value from the database (campaign name, arm labels, errors) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.report.data import ReportData
from app.report.estimates import counterfactuals
from app.report.plots import PLOTS, plot_names, png
from app.report.summary import summary

LABELS = {
    "success_rate": "success rate",
    "mean_cost": "mean cost",
    "speedup_over_baseline": "estimated speed-up over the baseline",
    "speedup_interval": "speed-up, 95% interval",
}

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
figure{margin:1.5em 0}img{max-width:100%}figcaption{color:#555;font-size:90%}"""


def fmt(v: Any) -> str:
    """A value as the report and the dashboard show it (4 significant digits, times to the
    second in UTC)."""
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return "" if v is None else str(v)


#: summary values that are None when the data does not support them (the notes say why)
ESTIMATES = frozenset(
    {"baseline_mean_cost", "speedup_over_baseline", "best_fixed_arm", "best_fixed_mean_cost"}
)


def shown(key: str, v: Any) -> str:
    """A summary value as displayed: "not enough data" for an estimate the data does not
    support, notes one per line."""
    if v is None and key in ESTIMATES:
        return "not enough data (see notes)"
    if key == "notes":
        return "\n".join(str(n) for n in v) if v else "none"
    return fmt(v)


def summary_rows(summ: dict[str, Any]) -> str:
    return "\n".join(
        f"<tr><th>{html.escape(LABELS.get(k, k.replace('_', ' ')))}</th>"
        f'<td data-key="{html.escape(k)}">{html.escape(shown(k, v))}</td></tr>'
        for k, v in summ.items()
    )


ERROR_COLUMNS = ("at", "instance", "arm", "worker", "error")


def error_cells(data: ReportData) -> list[dict[str, str]]:
    """The recent failures as displayed strings (not escaped: the caller escapes them)."""
    labels = data.arm_labels
    out = []
    for e in data.errors:
        arm = e["arm"]
        out.append(
            {
                "at": fmt(e["at"]),
                "instance": fmt(e["instance"]),
                "arm": labels[arm] if isinstance(arm, int) and 0 <= arm < len(labels) else fmt(arm),
                "worker": fmt(e["worker"]),
                "error": fmt(e["error"]),
            }
        )
    return out


def error_rows(data: ReportData) -> str:
    """The recent failures table (escaped)."""
    head = "".join(f"<th>{c}</th>" for c in ERROR_COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in ERROR_COLUMNS) + "</tr>"
        for r in error_cells(data)
    )
    return f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"


def render(data: ReportData, plots: dict[str, bytes] | None = None) -> str:
    """The report as one HTML document; ``plots`` (name -> PNG) when already drawn."""
    cf = counterfactuals(data)
    if plots is None:
        plots = {k: png(PLOTS[k](data, cf)) for k in plot_names(data)}
    figs = "\n".join(
        f'<figure><img alt="{html.escape(k)}" data-plot="{html.escape(k)}" '
        f'src="data:image/png;base64,{base64.b64encode(v).decode()}">'
        f"<figcaption>{html.escape((PLOTS[k].__doc__ or '').strip())}</figcaption></figure>"
        for k, v in plots.items()
    )
    name = html.escape(data.name)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>banditq report: {name}</title>"
        f"<style>{CSS}</style></head><body><h1>banditq report: {name}</h1>"
        f"<p>read at {data.read_at.isoformat(timespec='seconds')}</p>"
        f"<table id='summary'>{summary_rows(summary(data, cf))}</table>{figs}"
        f"<h2>Recent failures</h2><table id='errors'>{error_rows(data)}</table></body></html>"
    )


def write_report(
    data: ReportData, path: str | Path | None, png_dir: str | Path | None = None
) -> dict[str, Path]:
    """Write the HTML (when ``path``) and one PNG per plot (when ``png_dir``); returns what
    was written, by name."""
    cf = counterfactuals(data)
    plots = {k: png(PLOTS[k](data, cf)) for k in plot_names(data)}
    out: dict[str, Path] = {}
    if png_dir is not None:
        folder = Path(png_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for k, v in plots.items():
            (folder / f"{k}.png").write_bytes(v)
            out[k] = folder / f"{k}.png"
    if path is not None:
        Path(path).write_text(render(data, plots), encoding="utf-8")
        out["html"] = Path(path)
    return out
