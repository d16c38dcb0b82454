"""docs/PERFORMANCE.md's plots: cost against input duration, throughput against workers."""

from __future__ import annotations

from pathlib import Path

from bench.results import Results

DOCS = Path(__file__).resolve().parent.parent / "docs"


def plots(results: Results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if results.growth:
        xs = [g["input_s"] for g in results.growth]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        ax1.loglog(xs, [g["e2e_s"] for g in results.growth], "o-", label="video2mp3 end to end")
        ax1.loglog(
            xs, [g["bare_s"] for g in results.growth], "s--", label="bare ffmpeg, local file"
        )
        ax1.set_xlabel("input duration (s)")
        ax1.set_ylabel("time (s)")
        ax1.set_title("Time grows with the audio, not the overhead")
        ax1.grid(True, which="both", alpha=0.3)
        ax1.legend()
        ax2.semilogx(xs, [g["worker_peak_mb"] for g in results.growth], "o-", label="worker")
        ax2.semilogx(xs, [g["ffmpeg_peak_mb"] for g in results.growth], "^-", label="its ffmpeg")
        ax2.semilogx(xs, [g["sum_peak_mb"] for g in results.growth], "s-", label="worker + ffmpeg")
        ax2.semilogx(
            xs, [g["bare_ffmpeg_peak_mb"] for g in results.growth], "x--", label="bare ffmpeg"
        )
        ax2.set_ylim(bottom=0)
        ax2.set_xlabel("input duration (s)")
        ax2.set_ylabel("peak RSS (MiB)")
        ax2.set_title("Memory stays flat")
        ax2.grid(True, which="both", alpha=0.3)
        ax2.legend()
        for g in results.growth:
            if "audio" in g["kind"]:
                ax1.annotate(
                    "audio only",
                    (g["input_s"], g["e2e_s"]),
                    textcoords="offset points",
                    xytext=(-40, 8),
                )
        fig.tight_layout()
        fig.savefig(DOCS / "perf-cost-vs-duration.png", dpi=110)
        plt.close(fig)
    single = [s for s in results.scaling if s["concurrency"] == 1]
    if single:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        ax.plot(
            [s["workers"] for s in single],
            [s["jobs_per_s"] for s in single],
            "o-",
            label="video2mp3 workers",
        )
        seq = single[0]["bare_sequential_jobs_per_s"]
        par = single[0]["bare_two_at_a_time_jobs_per_s"]
        ax.axhline(seq, ls="--", color="grey", label="bare ffmpeg, one at a time")
        ax.axhline(par, ls=":", color="black", label="bare ffmpeg, two at a time")
        for s in results.scaling:
            if s["concurrency"] > 1:
                ax.plot(
                    [s["workers"]],
                    [s["jobs_per_s"]],
                    "D",
                    label=f"1 worker, {s['concurrency']} jobs at once",
                )
        ax.set_xlabel(f"worker processes ({results.machine['cores']} cores)")
        ax.set_ylabel("jobs/s (5 s clips)")
        ax.set_xticks([s["workers"] for s in single])
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.set_title("Throughput against workers")
        fig.tight_layout()
        fig.savefig(DOCS / "perf-throughput-vs-workers.png", dpi=110)
        plt.close(fig)
    if results.split:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for row in results.split:
            counts = sorted(int(n) for n in row["split_s"])
            line = ax.plot(
                counts,
                [
                    row["split_s"][n] if n in row["split_s"] else row["split_s"][str(n)]
                    for n in counts
                ],
                "o-",
                label=f"{row['input_s']} s input, split",
            )[0]
            ax.plot(
                [1],
                [row["unsplit_1_s"]],
                "x",
                color=line.get_color(),
                label=f"{row['input_s']} s, converted whole",
            )
            ax.axhline(
                row["bare_s"],
                ls="--",
                color=line.get_color(),
                label=f"{row['input_s']} s, bare ffmpeg",
            )
        ax.set_xlabel(f"worker processes ({results.machine['cores']} cores)")
        ax.set_ylabel("end-to-end time (s)")
        ax.set_xticks(sorted({int(n) for row in results.split for n in row["split_s"]}))
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.set_title("A long job against workers")
        fig.tight_layout()
        fig.savefig(DOCS / "perf-split-vs-workers.png", dpi=110)
        plt.close(fig)
