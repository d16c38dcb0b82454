"""Render a Grafana dashboard's panels to a PNG from Prometheus's HTTP API, with matplotlib.

For places where Grafana cannot run: every panel's queries are sent to Prometheus exactly
as Grafana would send them (its $__rate_interval, $__range and template variables
substituted), time series through /api/v1/query_range and stat panels through
/api/v1/query, and drawn on the dashboard's own grid. It shows the data, not Grafana's
look. Needs the dev extras (matplotlib).

    python scripts/render_dashboard.py --prometheus http://127.0.0.1:9090 \\
        --start 1700000000 --end 1700000600 --out docs/dashboard-overview.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "overview.json"
ROW_HEIGHT_IN = 0.46  # inches per Grafana grid unit (30 px)


def get(prometheus: str, path: str, params: dict[str, str]) -> Any:
    url = f"{prometheus}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise SystemExit(f"Prometheus refused {params.get('query')}: {body}")
    return body["data"]


def substitute(expr: str, variables: dict[str, str], rate_interval: str, range_: str) -> str:
    out = expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
    for name, value in variables.items():
        out = out.replace("${" + name + "}", value).replace("$" + name, value)
    return out


def legend(template: str, labels: dict[str, str]) -> str:
    if not template or template == "__auto":
        return ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def scale(unit: str) -> tuple[float, str]:
    """(factor, suffix) to show a unit readably."""
    if unit == "percentunit":
        return 100.0, "%"
    if unit == "s":
        return 1.0, "s"
    if unit in ("bytes", "Bps"):
        return 1 / 1024, " KiB" + ("/s" if unit == "Bps" else "")
    if unit.startswith("suffix:"):
        return 1.0, unit.removeprefix("suffix:")
    return 1.0, {"reqps": " req/s", "short": ""}.get(unit, "")


def draw_timeseries(
    ax: Axes, panel: dict[str, Any], args: argparse.Namespace, variables: dict[str, str]
) -> None:
    factor, suffix = scale(panel["fieldConfig"]["defaults"]["unit"])
    step = max(1, int((args.end - args.start) / 240))
    rate_interval = f"{max(4 * args.scrape_interval, step)}s"
    drew = False
    for target in panel["targets"]:
        expr = substitute(target["expr"], variables, rate_interval, rate_interval)
        data = get(
            args.prometheus,
            "/api/v1/query_range",
            {"query": expr, "start": str(args.start), "end": str(args.end), "step": str(step)},
        )
        for series in data["result"]:
            times = [float(t) for t, _ in series["values"]]
            values = [float(v) * factor for _, v in series["values"]]
            ax.plot(
                times, values, linewidth=1.2, label=legend(target["legendFormat"], series["metric"])
            )
            drew = True
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: time.strftime("%H:%M", time.localtime(x)))
    )
    ax.tick_params(labelsize=7)
    ax.set_ylabel(suffix.strip(), fontsize=7)
    ax.grid(alpha=0.3)
    if drew:
        ax.legend(fontsize=6, loc="upper left", ncol=2, framealpha=0.6)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def draw_stat(
    ax: Axes, panel: dict[str, Any], args: argparse.Namespace, variables: dict[str, str]
) -> None:
    factor, suffix = scale(panel["fieldConfig"]["defaults"]["unit"])
    range_ = f"{int(args.end - args.start)}s"
    expr = substitute(panel["targets"][0]["expr"], variables, range_, range_)
    result = get(args.prometheus, "/api/v1/query", {"query": expr, "time": str(args.end)})["result"]
    text = "no data"
    if result:
        value = float(result[0]["value"][1]) * factor
        decimals = panel["fieldConfig"]["defaults"].get("decimals", 2)
        text = f"{value:.{decimals}f}{suffix}"
    ax.text(0.5, 0.45, text, ha="center", va="center", fontsize=20, weight="bold")
    ax.set_axis_off()


def render(args: argparse.Namespace) -> None:
    board = json.loads(Path(args.dashboard).read_text())
    variables = {"namespace": ".*", "instance": ".*", "queue": args.queue}
    panels = [p for p in board["panels"] if p["type"] != "row"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    fig = plt.figure(figsize=(18, rows * ROW_HEIGHT_IN + 1))
    top, bottom = 0.975, 0.01
    grid = fig.add_gridspec(
        rows, 24, hspace=2.4, wspace=1.2, top=top, bottom=bottom, left=0.04, right=0.99
    )
    for row in (p for p in board["panels"] if p["type"] == "row"):
        y = top - (row["gridPos"]["y"] / rows) * (top - bottom)
        fig.text(0.01, y, row["title"], fontsize=12, weight="bold", va="top")
    for panel in panels:
        pos = panel["gridPos"]
        ax = fig.add_subplot(grid[pos["y"] : pos["y"] + pos["h"], pos["x"] : pos["x"] + pos["w"]])
        ax.set_title(panel["title"], fontsize=9, loc="left")
        if panel["type"] == "stat":
            draw_stat(ax, panel, args, variables)
        else:
            draw_timeseries(ax, panel, args, variables)
    start = datetime.fromtimestamp(args.start).strftime("%Y-%m-%d %H:%M")
    end = datetime.fromtimestamp(args.end).strftime("%H:%M")
    fig.suptitle(
        f"{board['title']}, {start}-{end}: panels' queries evaluated by a real Prometheus, "
        "drawn with matplotlib (not a Grafana screenshot)",
        fontsize=11,
        y=0.995,
    )
    fig.savefig(args.out, dpi=args.dpi, bbox_inches="tight")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--dashboard", default=str(DEFAULT_DASHBOARD))
    parser.add_argument("--start", type=float, default=time.time() - 3600)
    parser.add_argument("--end", type=float, default=time.time())
    parser.add_argument("--queue", default="transcode", help="value of the $queue variable")
    parser.add_argument("--scrape-interval", type=int, default=5, help="seconds")
    parser.add_argument("--dpi", type=int, default=90)
    parser.add_argument("--out", default="dashboard.png")
    render(parser.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
