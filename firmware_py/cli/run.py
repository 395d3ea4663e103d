"""`firmware-py run`: the daemon."""
from __future__ import annotations

import logging
import sys

from firmware_py.config import load_config
from firmware_py.config.schema import SCHEMA


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run", help="run the daemon (against the built-in probe simulator unless probe.port is set)",
        description="Read probe frames, preprocess them, run the model tiers and emit one result per frame "
        "(JSON lines). With the default configuration a probe simulator is started on a pseudo-terminal. "
        "A live status line goes to stderr; a one-line summary to stdout at the end.")
    p.add_argument("--config", metavar="PATH", help="YAML configuration merged over the shipped defaults")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (run.duration_s)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N processed frames (run.max_frames)")
    p.add_argument("--port", metavar="URL", help="probe serial port or pyserial URL (probe.port)")
    p.add_argument("--images", metavar="DIR", help="simulator sends the images of DIR (simulator.images_dir)")
    p.add_argument("--fps", type=float, metavar="HZ", help="simulator frame rate (simulator.fps)")
    p.add_argument("--results", metavar="PATH", help="results as JSON lines to PATH, '-' for stdout "
                   "(output.results)")
    p.add_argument("--journal", metavar="PATH", help="SQLite journal file (output.journal)")
    p.add_argument("--status-interval", type=float, metavar="S", help="status line period, 0 = off")
    p.add_argument("--log-level", choices=SCHEMA["log"]["level"].choices)
    p.set_defaults(handler=run)


def overrides_from_args(args) -> dict[str, dict]:
    table = {
        ("run", "duration_s"): args.duration, ("run", "max_frames"): args.max_frames,
        ("probe", "port"): args.port, ("simulator", "images_dir"): args.images, ("simulator", "fps"): args.fps,
        ("output", "results"): args.results, ("output", "journal"): args.journal,
        ("output", "status_interval_s"): args.status_interval, ("log", "level"): args.log_level,
    }
    out: dict[str, dict] = {}
    for (sec, key), value in table.items():
        if value is not None:
            out.setdefault(sec, {})[key] = value
    return out


def run(args) -> int:
    from firmware_py.daemon.runner import Daemon

    def configuration():  # the file with the command line's overrides, re-read on SIGHUP
        return load_config(args.config).replace(**overrides_from_args(args))

    cfg = configuration()
    logging.getLogger().setLevel(cfg.log.level.upper())
    daemon = Daemon(cfg, config_loader=configuration if args.config else None, config_path=args.config)
    try:
        return daemon.run()
    finally:
        if daemon.summary:  # also after a failure: what was received and processed until then
            print(daemon.summary, flush=True)
