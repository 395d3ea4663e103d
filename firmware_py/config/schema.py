"""Every configuration key: type, default, allowed range, meaning.

This table is the single source: the loader validates against it, ``default.yaml`` must
match its defaults, and ``docs/configuration.md`` is generated from it
(``python -m firmware_py.config.docs``); tests check both stay in sync.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Key:
    kind: str  # "int" | "float" | "bool" | "str" | "map" (free-form str -> scalar)
    default: Any
    doc: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None  # regular expression a str must match in full
    pattern_hint: str = ""
    extra: dict = field(default_factory=dict)


# Sections in the order they appear in default.yaml and the docs.
SCHEMA: dict[str, dict[str, Key]] = {
    "probe": {
        "port": Key("str", None, "pyserial URL or device path of the probe (e.g. `/dev/serial/by-id/usb-...`, "
                    "`loop://`). `null`: use the built-in simulator when `simulator.enabled`, else find "
                    "the probe by `vid_pid`.", nullable=True),
        "vid_pid": Key("str", None, "USB `VID:PID` (hex) used to find the probe when `port` is null and the "
                       "simulator is off.", nullable=True, pattern=r"[0-9a-fA-F]{4}:[0-9a-fA-F]{4}",
                       pattern_hint="four hex digits, a colon, four hex digits, e.g. 1fc9:0083"),
        "baudrate": Key("int", 3000000, "Line rate for real UARTs; USB CDC-ACM ignores it.", min=9600, max=50000000),
        "handshake_timeout_s": Key("float", 2.0, "Time to wait for the probe's capabilities after hello.",
                                   min=0.05, max=60),
        "reconnect_initial_s": Key("float", 0.2, "First back-off after the probe disappears; doubles each try.",
                                   min=0.01, max=60),
        "reconnect_max_s": Key("float", 5.0, "Longest back-off between reconnect attempts.", min=0.05, max=600),
        "exclusive": Key("bool", True, "Open the port exclusively (TIOCEXCL), so a second daemon or a terminal "
                         "program cannot steal bytes from the frame stream."),
        "stall_timeout_s": Key("float", 0.25, "A frame whose body stops arriving for this long is given up "
                               "(counted truncated) and its bytes rescanned for the frames behind it.",
                               min=0.01, max=60),
        "silence_timeout_s": Key("float", 3.0, "With no byte at all for this long (the probe sends telemetry at "
                                 "least once a second), the link starts a new session with a new handshake.",
                                 min=0.1, max=600),
        "pool_buffers": Key("int", 4, "Frame buffers allocated up front (reused; no allocation per frame).",
                            min=2, max=256),
        "pool_max_buffers": Key("int", 8, "Most frame buffers ever held; a frame arriving when all are in use "
                                "is counted `no_buffer` rather than growing memory.", min=2, max=1024),
        "max_frame_bytes": Key("int", 8 * 1024 * 1024, "Largest frame payload accepted; larger headers are "
                               "treated as corruption.", min=1024, max=256 * 1024 * 1024),
        "record_path": Key("str", None, "Record the raw probe stream with its timing to this file "
                           "(replay with `firmware-py probe-sim --replay`). `null`: no recording.", nullable=True),
        "record_max_bytes": Key("int", 256 * 1024 * 1024, "Size bound of the recording; recording stops there.",
                                min=4096, max=64 * 1024 ** 3),
    },
    "simulator": {
        "enabled": Key("bool", True, "Start the built-in probe simulator on a pseudo-terminal when "
                       "`probe.port` is null."),
        "fps": Key("float", 15.0, "Simulated frame rate.", min=0.1, max=1000),
        "geometry": Key("str", "convex", "Simulated probe kind.", choices=("linear", "convex", "phased")),
        "scan_lines": Key("int", 128, "Scan lines per frame.", min=1, max=4096),
        "samples_per_line": Key("int", 512, "Depth samples per scan line.", min=2, max=65536),
        "bits": Key("int", 16, "16: linear envelope (log-compressed by the daemon); 8: B-mode.", min=8, max=16,
                    extra={"allowed": (8, 16)}),
        "images_dir": Key("str", None, "Send the images of this folder (PNG, any size) as linear B-mode frames "
                          "instead of synthetic phantoms. `null`: phantoms.", nullable=True),
        "seed": Key("int", 1, "Seed of the phantom generator.", min=0, max=2 ** 31 - 1),
        "frame_log": Key("str", None, "Append which source (image file or phantom) each frame carried, with its "
                         "sequence number, as JSON lines to this file. `null`: no log.", nullable=True),
    },
    "preprocess": {
        "threads": Key("int", 1, "OpenMP threads of the preprocessing kernels (the model uses the others).",
                       min=1, max=64),
        "speckle_filter": Key("bool", False, "Apply the 3x3 speckle-reduction stage before scan conversion."),
    },
    "models": {
        "manifest": Key("str", None, "Signed model manifest. `null`: the manifest shipped in the package.",
                        nullable=True),
        "public_key": Key("str", None, "Ed25519 public key (PEM) that must have signed the manifest. "
                          "`null`: the key shipped in the package (development key).", nullable=True),
        "task": Key("str", "classify", "Which ladder of tiers the daemon runs.", choices=("classify", "segment")),
        "start_tier": Key("str", "auto", "Tier to run, by name: pinned, the power policy is off (for rigs "
                          "measuring one tier). `auto`: the power policy chooses from battery, temperature and "
                          "latency."),
        "memory_budget_mb": Key("float", 64.0, "Memory the resident tiers may use; decides how many stay "
                                "loaded for hitless swaps.", min=1, max=4096),
    },
    "accelerator": {
        "kind": Key("str", "none", "`edgetpu`: Coral via libedgetpu; `external`: any TFLite external delegate; "
                    "`none`: CPU only.", choices=("none", "edgetpu", "external")),
        "edgetpu_device": Key("str", "usb", "Edge TPU device: `usb`, `usb:N` or `pci:N`.",
                              pattern=r"(usb|pci)(:\d+)?", pattern_hint="usb, usb:N or pci:N"),
        "edgetpu_library": Key("str", "libedgetpu.so.1", "Edge TPU runtime library (found on the loader path, "
                               "or an absolute path)."),
        "external_name": Key("str", "external", "Key of the external delegate's model builds in the manifest's "
                             "`files` (e.g. `npu`); tiers without such a build run their CPU twin.",
                             pattern=r"[a-z][a-z0-9_-]{0,31}", pattern_hint="a lower-case name like npu or rknn"),
        "external_library": Key("str", None, "Path of the external delegate library (`kind: external`).",
                                nullable=True),
        "external_options": Key("map", {}, "Options passed to the external delegate (string keys)."),
        "cpu_threads": Key("int", 1, "Threads of the CPU twin (XNNPACK). 1 by default: the probe link, "
                           "preprocessing and the simulator share the cores, and XNNPACK's spinning workers on "
                           "a busy core cost more than they gain (measured 20 ms vs 2.5 ms per frame on a loaded "
                           "2-core machine); try 2-3 on a 4-core board with idle cores.", min=1, max=64),
        "invoke_deadline_ms": Key("float", 1000.0, "An accelerator invoke slower than this counts as a hang; "
                                  "the frame is rerun on the CPU twin.", min=1, max=60000),
        "reattach_initial_s": Key("float", 2.0, "First back-off before re-attaching a failed accelerator.",
                                  min=0.1, max=3600),
        "reattach_max_s": Key("float", 120.0, "Longest back-off between re-attach attempts.", min=0.1, max=86400),
    },
    "power": {
        "battery": Key("str", "mock", "Battery gauge: `sysfs` (/sys/class/power_supply), `psutil`, or `mock` "
                       "(a simulated discharging cell).", choices=("mock", "sysfs", "psutil")),
        "thermal": Key("str", "mock", "Temperature source: `sysfs` (/sys/class/thermal) or `mock`.",
                       choices=("mock", "sysfs")),
        "mock_battery_percent": Key("float", 80.0, "Starting charge of the mock battery.", min=0, max=100),
        "mock_drain_percent_per_min": Key("float", 1.0, "Discharge rate of the mock battery.", min=0, max=100),
        "mock_temperature_c": Key("float", 45.0, "Temperature reported by the mock sensor.", min=-40, max=150),
        "low_battery_percent": Key("float", 30.0, "Below this charge the policy steps down one tier.", min=0, max=100),
        "critical_battery_percent": Key("float", 10.0, "Below this charge the smallest tier runs.", min=0, max=100),
        "hot_c": Key("float", 75.0, "Above this temperature the policy steps down one tier.", min=0, max=150),
        "hysteresis": Key("float", 5.0, "Margin (percent or degC) a reading must recover by before stepping "
                          "back up.", min=0, max=50),
        "latency_budget_ms": Key("float", 200.0, "p90 inference latency above this steps down one tier.",
                                 min=1, max=60000),
    },
    "output": {
        "results": Key("str", "-", "Where results go as JSON lines: `-` for stdout, or a file path."),
        "journal": Key("str", None, "SQLite file journaling every result durably. `null`: no journal.",
                       nullable=True),
        "status_interval_s": Key("float", 1.0, "Period of the live status line (stderr); 0 disables it.",
                                 min=0, max=3600),
        "print_results": Key("bool", False, "Also print every result to stdout when `results` is a file."),
    },
    "console": {
        "port": Key("str", None, "Serial port (device path or pyserial URL) of the technician's service console. "
                    "`null`: no console.", nullable=True),
        "baudrate": Key("int", 115200, "Line rate of the console port.", min=1200, max=4000000),
        "pin_sha256": Key("str", None, "SHA-256 (hex) of the technician PIN that unlocks the console's state-"
                          "changing commands; make it with `firmware-py config pin`. `null`: those commands are "
                          "disabled.", nullable=True, pattern=r"[0-9a-fA-F]{64}",
                          pattern_hint="64 hex digits from firmware-py config pin"),
        "lockout_s": Key("float", 30.0, "How long the console refuses logins after three wrong PINs.",
                         min=1, max=86400),
    },
    "run": {
        "duration_s": Key("float", 0.0, "Stop after this many seconds; 0 runs until SIGINT/SIGTERM.",
                          min=0, max=10 ** 7),
        "max_frames": Key("int", 0, "Stop after this many processed frames; 0 means no limit.", min=0,
                          max=2 ** 62),
    },
    "log": {
        "level": Key("str", "warning", "Log level on stderr.", choices=("debug", "info", "warning", "error")),
    },
}


def defaults() -> dict[str, dict[str, Any]]:
    return {sec: {k: (dict(v.default) if isinstance(v.default, dict) else v.default) for k, v in keys.items()}
            for sec, keys in SCHEMA.items()}
