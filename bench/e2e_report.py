"""What `bench e2e` writes besides its JSON: the machine record, Markdown, PNG plots, comparisons, progress."""
from __future__ import annotations

import json
import os
import platform
import sys

GOVERNOR = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").strip("\x00\n ")
    except OSError:
        return None


def board() -> str:
    """The device tree's model on a Pi (``Raspberry Pi 4 Model B Rev 1.4``), else the CPU model."""
    model = _read("/proc/device-tree/model")
    if model:
        return model
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.lower().startswith(("model name", "hardware")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(accelerator: str) -> dict:
    """The record every result carries: board, governor, interpreter, accelerator, versions."""
    from importlib.metadata import PackageNotFoundError, version

    from firmware_py.inference.backend import CANDIDATES, NoInterpreterError, find_backend

    try:
        b = find_backend(CANDIDATES)
        interpreter = {"package": b.name.split(".")[0], "version": b.version}
    except NoInterpreterError:
        interpreter = {"package": None, "version": None}
    try:
        project = version("firmware-py")
    except PackageNotFoundError:
        from firmware_py import __version__ as project
    governor = _read(GOVERNOR)
    warnings = []
    if governor != "performance":
        warnings.append(f"CPU governor is {governor or 'not exposed (' + GOVERNOR + ' absent)'}, not performance: "
                        "clock scaling moves latency figures; set it with cpupower frequency-set -g performance")
    return {"board": board(), "machine": platform.machine(), "cpus": os.cpu_count(), "governor": governor,
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "interpreter": interpreter, "accelerator": accelerator, "firmware_py": project, "warnings": warnings}


class Progress:
    """One bar on stderr, rewritten in place on a terminal, a line per step otherwise."""

    def __init__(self, total_s: float, stream=sys.stderr):
        self.total_s, self.done_s, self.stream = max(total_s, 1e-9), 0.0, stream
        self.tty = stream.isatty()

    def show(self, label: str, step_elapsed_s: float) -> None:
        if not self.tty:
            return
        frac = min(1.0, (self.done_s + step_elapsed_s) / self.total_s)
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        self.stream.write(f"\r[{bar}] {100 * frac:3.0f}% {label}\x1b[K")
        self.stream.flush()

    def step_done(self, step_s: float, summary: str) -> None:
        self.done_s += step_s
        self.stream.write(("\r\x1b[K" if self.tty else "") + summary + "\n")
        self.stream.flush()


# -- Markdown -------------------------------------------------------------------------------------

def _cell(v) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def markdown(res: dict) -> str:
    m = res["machine"]
    lat = res["latency_ms"]
    out = [f"# bench e2e: {res['config']['frames']}, {res['reference']['tier']} at "
           f"{res['reference']['offered_fps']:g} fps", "",
           f"Board {m['board']} ({m['cpus']} CPUs, governor {m['governor'] or 'not exposed'}), load average at start "
           f"{m['loadavg_at_start']}; {m['interpreter']['package']} {m['interpreter']['version']}; accelerator "
           f"{m['accelerator']}; firmware-py {m['firmware_py']}.", ""]
    out += [f"**Warning:** {w}" for w in m["warnings"] + res.get("warnings", [])]
    out += ["", f"Command: `{res['command']}`", "",
            "| sent | processed | dropped | corrupt | exact | p50 | p95 | p99 | max | model p99 | fps sustained | "
            "CPU % | RSS MB | mJ/frame |", "|" + "---|" * 14,
            "| " + " | ".join(_cell(v) for v in (
                res["sent"], res["processed"], res["dropped"], res["corrupt"], res["accounting_exact"], lat["p50"],
                lat["p95"], lat["p99"], lat["max"], res["model_p99_ms"], res["fps_sustained"], res["cpu_percent"],
                res["rss_mb_max"], res["energy"]["board_mj_per_frame"])) + " |", ""]
    causes = {**{f"dropped: {k}": v for k, v in res["dropped_by_cause"].items()},
              **{f"corrupt: {k}": v for k, v in res["corrupt_by_cause"].items()}}
    if any(causes.values()):
        out += ["Attributed losses (all steps): " + ", ".join(f"{k} {v}" for k, v in causes.items() if v), ""]
    out += ["| tier | offered fps | sent fps | fps sustained | sent | processed | dropped | corrupt | p50 | p99 | "
            "device p99 | model p99 | CPU % | saturated |", "|" + "---|" * 14]
    for s in res["steps"]:
        out.append("| " + " | ".join(_cell(v) for v in (
            s["tier"], s["offered_fps"], s["sent_fps"], s["fps_sustained"], s["sent"], s["processed"], s["dropped"],
            s["corrupt"], s["latency_ms"]["p50"], s["latency_ms"]["p99"], s["device_total_p99_ms"], s["model_p99_ms"],
            s["cpu_percent"], s["saturated"])) + " |")
    out += ["", "| tier | saturation fps |", "|---|---|"]
    out += [f"| {t} | {_cell(v)} |" for t, v in res["saturation_fps"].items()]
    out += ["", f"Energy: {res['energy']['source']}.", ""]
    return "\n".join(out)


# -- comparison of two runs -----------------------------------------------------------------------

COMPARED = [("sent", "sent"), ("processed", "processed"), ("dropped", "dropped"), ("corrupt", "corrupt"),
            ("latency p50 ms", "latency_ms.p50"), ("latency p95 ms", "latency_ms.p95"),
            ("latency p99 ms", "latency_ms.p99"), ("latency max ms", "latency_ms.max"),
            ("model p99 ms", "model_p99_ms"), ("fps sustained", "fps_sustained"), ("CPU %", "cpu_percent"),
            ("RSS MB", "rss_mb_max"), ("mJ per frame", "energy.board_mj_per_frame")]


def _get(res: dict, dotted: str):
    for part in dotted.split("."):
        res = res.get(part) if isinstance(res, dict) else None
    return res


def compare(before_path: str, after_path: str) -> str:
    """Markdown table of every figure of two `bench e2e --json` files, with after / before."""
    with open(before_path, encoding="utf-8") as f:
        before = json.load(f)
    with open(after_path, encoding="utf-8") as f:
        after = json.load(f)
    rows = [(label, _get(before, key), _get(after, key)) for label, key in COMPARED]
    tiers = sorted(set(before.get("saturation_fps", {})) | set(after.get("saturation_fps", {})))
    rows += [(f"saturation fps {t}", before.get("saturation_fps", {}).get(t),
              after.get("saturation_fps", {}).get(t)) for t in tiers]
    out = [f"| figure | before ({os.path.basename(before_path)}) | after ({os.path.basename(after_path)}) | "
           "after / before |", "|---|---|---|---|"]
    for label, b, a in rows:
        ratio = f"{a / b:.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "-"
        out.append(f"| {label} | {_cell(b)} | {_cell(a)} | {ratio} |")
    return "\n".join(out) + "\n"


# -- plots ----------------------------------------------------------------------------------------

def plots(res: dict, latencies: dict[str, list[float]], timeline: list[tuple[float, str]], folder: str) -> list[str]:
    """latency.png (histogram and CDF per step), throughput.png (sustained against offered rate, per
    tier), tiers.png (the tier of every result over time). Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    note = f"{res['machine']['board']}, {res['machine']['cpus']} CPUs (shared)"
    paths = []

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    for label, values in latencies.items():
        if values:
            hist.hist(values, bins=50, histtype="step", label=label)
            v = np.sort(values)
            cdf.plot(v, np.arange(1, len(v) + 1) / len(v), label=label)
    hist.set(xlabel="probe timestamp -> result on the host (ms)", ylabel="frames", title="latency histogram")
    cdf.set(xlabel="latency (ms)", ylabel="fraction of frames", title="latency CDF")
    cdf.axhline(0.99, color="grey", lw=0.5, ls=":")
    for ax in (hist, cdf):
        ax.legend(fontsize=7)
    fig.suptitle(note, fontsize=8)
    paths.append(_save(fig, plt, folder, "latency.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    tiers = sorted({s["tier"] for s in res["steps"]})
    for tier in tiers:
        steps = [s for s in res["steps"] if s["tier"] == tier]
        ax.plot([s["offered_fps"] for s in steps], [s["fps_sustained"] or 0 for s in steps], "o-", label=tier)
    top = max((s["offered_fps"] for s in res["steps"]), default=1)
    ax.plot([0, top], [0, top], color="grey", lw=0.5, ls="--", label="offered = sustained")
    ax.set(xlabel="offered frame rate (fps)", ylabel="sustained results per second", title="throughput")
    ax.legend(fontsize=7)
    fig.suptitle(note, fontsize=8)
    paths.append(_save(fig, plt, folder, "throughput.png"))

    fig, ax = plt.subplots(figsize=(8, 3))
    if timeline:
        t0 = timeline[0][0]
        names = sorted({t for _, t in timeline})
        ax.scatter([t - t0 for t, _ in timeline], [names.index(t) for _, t in timeline], s=2)
        ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel="time since the first result (s)", title="tier of each result")
    fig.suptitle(note, fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, plt, folder, "tiers.png"))
    return paths


def _save(fig, plt, folder: str, name: str) -> str:
    path = os.path.join(folder, name)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
