"""Draw the benchmark chart (docs/img/benchmarks.png) from a results file.

    hatch run bench-chart [--json benchmarks/results/latest.json] [--chart PATH]

Three panels: throughput as the paired ratio to the Uvicorn with the same parser
and loop, server CPU time per request, and memory per idle connection.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "latest.json"
CHART = BENCH_DIR.parent / "docs" / "img" / "benchmarks.png"
COLORS = {
    "ketch": "#1f77b4",
    "ketch-h11": "#6baed6",
    "uvicorn": "#d62728",
    "uvicorn-h11": "#ff9896",
    "granian": "#2ca02c",
    "hypercorn": "#9467bd",
}


def _bars(ax: Any, groups: list[str], series: dict[str, list[float | None]]) -> None:
    """Grouped bars: one group per scenario, one bar per server."""
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [v if v is not None else 0.0 for v in values]
        ax.bar(xs, heights, width, label=name, color=COLORS.get(name))
    ax.set_xticks(range(len(groups)), groups)
    ax.grid(axis="y", alpha=0.3)


def _legend(ax: Any) -> None:
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    servers = list(results["servers"])
    scenarios = results["scenarios"]
    load = [s for s, d in scenarios.items() if d["summary"] and s != "idle"]
    has_idle = "idle" in scenarios
    panels = 2 + has_idle
    fig, axes = plt.subplots(panels, 1, figsize=(11, 3.4 * panels))

    ax = axes[0]
    compared = [n for n in servers if results["servers"][n]["baseline"] != n]
    _bars(
        ax,
        load,
        {n: [scenarios[s]["summary"][n].get("paired_ratio") for s in load] for n in compared},
    )
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("throughput ÷ Uvicorn\n(paired, same parser+loop)")
    _legend(ax)

    ax = axes[1]
    _bars(
        ax,
        load,
        {n: [scenarios[s]["summary"][n].get("cpu_us_per_req") for s in load] for n in servers},
    )
    ax.set_yscale("log")
    ax.set_ylabel("server CPU µs per request\n(lower is better)")
    _legend(ax)

    if has_idle:
        ax = axes[2]
        idle = scenarios["idle"]["summary"]
        kinds = {"HTTP keep-alive": "http_rss_kib_per_conn", "WebSocket": "ws_rss_kib_per_conn"}
        _bars(ax, list(kinds), {n: [idle[n].get(k) for k in kinds.values()] for n in servers})
        ax.set_ylabel("server RSS KiB per\nidle connection")
        _legend(ax)

    machine = results["machine"]
    fig.suptitle(
        f"ketch benchmarks, {results['date'][:10]}: {machine['cpus']} CPUs, "
        f"Python {machine['python']}, "
        f"medians of {results['settings']['rounds']} interleaved round(s)",
        fontsize="medium",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file")
    parser.add_argument("--chart", type=Path, default=CHART, help="the image to write")
    args = parser.parse_args()
    draw(json.loads(args.json.read_text()), args.chart)
    print(f"chart: {args.chart}")


if __name__ == "__main__":
    main()
