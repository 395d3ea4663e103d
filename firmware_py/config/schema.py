"""Every configuration key: type, default, allowed range, meaning.

This table is the single source: the loader validates against it, ``default.yaml`` must
match its defaults, and ``docs/configuration.md`` is generated from it
(``python -m firmware_py.config.docs``); tests check both stay in sync.
"""
from __future__ import annotations

from typing import Any

from firmware_py.console.auth import PATTERN as PIN_HASH_PATTERN
from firmware_py.drivers.protocol import MAX_PAYLOAD_LIMIT
from firmware_py.drivers.recorder import MIN_RECORD_BYTES
from firmware_py.inference.abstain import SECTION as ABSTENTION
from firmware_py.inference.accelerators import ACCELERATORS
from firmware_py.power import BATTERIES, MONITORS, THERMALS
from firmware_py.power.energy import SECTION as POWER_MODEL
from firmware_py.power.ladder import LADDER_HINT, LADDER_PATTERN
from firmware_py.power.policy import bands_problem
from firmware_py.registry import Key, Section
from firmware_py.results import SINKS

__all__ = ["SCHEMA", "Key", "Section", "defaults", "number_text"]

# Sections in the order they appear in default.yaml and the docs.
SCHEMA = Section({
    "probe": Section({
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
        "exclusive": Key("bool", True, "Take an advisory lock (flock) on the serial device when opening it, so a "
                         "second daemon, or any program that also locks the port, fails to open it instead of "
                         "stealing bytes from the frame stream; a program that opens the device without locking "
                         "(cat, screen) is not stopped. Ignored for URLs that are not local serial devices."),
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
                               "treated as corruption.", min=1024, max=MAX_PAYLOAD_LIMIT),
        "record_path": Key("str", None, "Record the raw probe stream with its timing to this file "
                           "(replay with `firmware-py probe-sim --replay`). `null`: no recording.", nullable=True),
        "record_max_bytes": Key("int", 256 * 1024 * 1024, "Disk space of the recording: it is kept as two "
                                "files, `record_path` and `record_path.1`, of at most half this each; when the "
                                "first is full it replaces the second and recording goes on, so the newest "
                                "stretch of the stream is kept.", min=MIN_RECORD_BYTES, max=64 * 1024 ** 3),
    }),
    "simulator": Section({
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
    }),
    "preprocess": Section({
        "threads": Key("int", 1, "OpenMP threads of the preprocessing kernels (the model uses the others).",
                       min=1, max=64),
        "speckle_filter": Key("bool", False,
                              "Apply a 3x3 median (speckle reduction) to the model input after scan "
                              "conversion and quantization (a second pass over the int8 grid)."),
    }),
    "models": Section({
        "manifest": Key("str", None, "Signed model manifest. `null`: the manifest shipped in the package.",
                        nullable=True),
        "public_key": Key("str", None, "Ed25519 public key (PEM) that must have signed the manifest. "
                          "`null`: the development key shipped in the package, whose private half is public; "
                          "`firmware-py run` accepts that only on a development device (see below).",
                          nullable=True),
        "development_device": Key("bool", False, "This unit is for development: `run` may trust the development "
                                  "key when `public_key` is null. Implied when the built-in simulator is the probe "
                                  "(no `probe.port`, no `probe.vid_pid`); a device with a real probe refuses to "
                                  "start without its production key unless this is true."),
        "task": Key("str", "classify", "Which ladder of tiers the daemon runs.", choices=("classify", "segment")),
        "start_tier": Key("str", "auto", "Tier to run, by name: pinned, the power policy is off (for rigs "
                          "measuring one tier). `auto`: the power policy chooses from battery, temperature and "
                          "latency."),
        "memory_budget_mb": Key("float", 64.0, "Memory the resident tiers may use; decides how many stay "
                                "loaded for hitless swaps.", min=1, max=4096),
        "isolation_timeout_s": Key("float", 10.0, "Before the daemon's interpreter touches a model set (start, "
                                   "reload), every model file is loaded and invoked once in a short-lived child "
                                   "process; a file still loading or running after this long counts as hung and "
                                   "refuses the set, like one that crashes (the last good set keeps serving).",
                                   min=0.1, max=600),
    }),
    "abstention": ABSTENTION,
    "accelerator": Section({
        "required": Key("bool", False, "The configured accelerator must be there: when it is absent at start "
                        "the daemon stops with an error. `false`: a loud warning, and the CPU twins run (and the "
                        "accelerator is attached when it appears)."),
        "cpu_threads": Key("int", 1, "Threads of the CPU twin (XNNPACK). 1 by default: the probe link, "
                           "preprocessing and the simulator share the cores, and XNNPACK's spinning workers on "
                           "a busy core cost more than they gain (measured 20 ms vs 2.5 ms per frame on a loaded "
                           "2-core machine); try 2-3 on a 4-core board with idle cores.", min=1, max=64),
        "invoke_deadline_ms": Key("float", 1000.0, "An accelerator invoke slower than this counts as a hang; "
                                  "the frame is rerun on the CPU twin.", min=1, max=60000),
        "reattach_initial_s": Key("float", 2.0, "First back-off before re-attaching a failed accelerator.",
                                  min=0.1, max=3600),
        "reattach_max_s": Key("float", 120.0, "Longest back-off between re-attach attempts.", min=0.1, max=86400),
    }, doc="The accelerator the tiers run on: `kind` picks one, its options are in the sub-section of that name.",
        kinds=ACCELERATORS, kind_default="none", kind_doc="Accelerator the tiers' builds run on; `none`: CPU only.",
        moved={"edgetpu_device": "edgetpu.device", "edgetpu_library": "edgetpu.library",
               "external_name": "external.name", "external_library": "external.library",
               "external_options": "external.options"}),
    "power": Section({
        "low_battery_percent": Key("float", 30.0, "Below this charge the policy runs at most the second-largest "
                                   "tier.", min=0, max=100),
        "critical_battery_percent": Key("float", 10.0, "Below this charge the smallest tier runs.", min=0, max=100),
        "bands": Key("map", {}, "More battery bands: charge in percent (as the key) below which the policy "
                     "runs at most this many rungs below the top, e.g. `{\"60\": 1, \"40\": 3}`; the two bands "
                     "above always apply too.", extra={"check": bands_problem}),
        "ladder": Key("str", "tiers,every:2,fps:15", "The rungs from the top: `tiers` (every model tier, "
                      "largest first), then `every:K` (the smallest tier analyses one frame in K and the last "
                      "result stays shown) and `fps:F` (the probe is asked for F frames a second); the same "
                      "tokens before `tiers` are rungs of the largest tier (e.g. `fps:20,tiers,every:2`), and "
                      "the smaller tiers keep that rate.",
                      pattern=LADDER_PATTERN, pattern_hint=LADDER_HINT),
        "min_dwell_s": Key("float", 10.0, "The policy moves one rung per decision, and not again until this "
                           "long after its last move, so no pattern of readings makes it flap.", min=0, max=3600),
        "safe_rung": Key("int", 1, "Rungs below the top the policy runs while the battery gauge gives no "
                         "reading (missing, or failing for `sensor_timeout_s`).", min=0, max=64),
        "sensor_timeout_s": Key("float", 30.0, "How long a failing battery gauge's last reading still counts "
                                "(a glitch or a dropout) before the policy falls back to `safe_rung`.",
                                min=0, max=86400),
        "hot_c": Key("float", 75.0, "On getting hotter than this the policy steps one rung below the current "
                     "one and holds it (one more only if, a dwell later, it is `hysteresis` hotter still), "
                     "until the temperature falls below `hot_c - hysteresis`.", min=0, max=150),
        "hysteresis": Key("float", 5.0, "Margin (percent or degC) a reading must recover by before stepping "
                          "back up.", min=0, max=50),
        "latency_budget_ms": Key("float", 200.0, "Frame budget used until the probe's frame rate is measured "
                                 "(then the budget is the frame period times the rung's analysis interval). "
                                 "While p95 latency is above the budget the policy goes one rung below the "
                                 "current one; under half of it (less `hysteresis` percent) it allows one "
                                 "rung more.", min=1, max=60000),
        "battery": Section(doc="Battery gauge: `kind` picks one, its options are in the sub-section of that name.",
                           kinds=BATTERIES, kind_default="mock", kind_doc="Battery gauge to read.",
),
        "model": POWER_MODEL,
        "thermal": Section(doc="Temperature source: `kind` picks one, its options are in the sub-section of that "
                           "name.", kinds=THERMALS, kind_default="mock", kind_doc="Temperature sensor to read."),
        "monitor": Section(doc="Power monitor on the board's supply, for measured board power on a rig: `kind` "
                           "picks one, its options are in the sub-section of that name.", kinds=MONITORS,
                           kind_default="none", kind_doc="Power monitor to read."),
    }, moved={"mock_battery_percent": "battery.mock.percent",
              "mock_drain_percent_per_min": "battery.mock.drain_percent_per_min",
              "mock_temperature_c": "thermal.mock.temperature_c"}),
    "output": Section({
        "results": Key("str", "-", "Where results go as JSON lines: `-` for stdout, or a file path. `null`: "
                       "nowhere but the journal (and the sinks that declare their own keys below).", nullable=True),
        "journal": Key("str", None, "SQLite file journaling every result durably; with a journal, no result "
                       "is written anywhere else before it is committed there. `null`: no journal.", nullable=True),
        "journal_batch": Key("int", 1, "Results per journal commit. 1 commits each result before it is "
                             "emitted (about 0.1 ms a result in WAL mode, measured on x86; 0.6 ms with "
                             "`journal_sync: full`); raise it for rates of hundreds of frames a second.",
                             min=1, max=100000),
        "journal_max_delay_ms": Key("float", 20.0, "With `journal_batch` > 1: longest a result waits for its "
                                    "batch's commit, and so for being emitted.", min=0, max=60000),
        "journal_sync": Key("str", "normal", "`normal`: a committed result survives the daemon being killed; "
                            "`full`: it also survives a power cut (an fsync per commit).",
                            choices=("normal", "full")),
        "journal_max_mb": Key("float", 256.0, "Size bound of the journal: past it the file is rotated to "
                              "`JOURNAL.1` and a new one starts. 0: no bound.", min=0, max=10 ** 6),
        "journal_on_error": Key("str", "continue", "When the journal cannot be written (full disk, read-only): "
                                "`continue` emits results marked `durable: false`; `stop` stops the daemon "
                                "(exit 1).", choices=("continue", "stop")),
        "status_interval_s": Key("float", 1.0, "Period of the live status line (stderr); 0 disables it.",
                                 min=0, max=3600),
        "print_results": Key("bool", False, "Also print every result to stdout when `results` is a file."),
        **SINKS.sections(),  # options of result sinks that declare keys, as output.<sink>
    }),
    "console": Section({
        "port": Key("str", None, "Serial port (device path or pyserial URL) of the technician's service console. "
                    "`null`: no console.", nullable=True),
        "baudrate": Key("int", 115200, "Line rate of the console port.", min=1200, max=4000000),
        "pin_hash": Key("str", None, "Salted scrypt digest of the technician PIN that unlocks the console's state-"
                        "changing commands (`scrypt$N$r$p$SALT$HASH`); make it with `firmware-py config pin` on the "
                        "device. `null`: those commands are disabled.", nullable=True, pattern=PIN_HASH_PATTERN,
                        pattern_hint="a scrypt$N$r$p$SALT$HASH line from firmware-py config pin"),
        "max_failures": Key("int", 5, "Wrong PINs in a row that lock logins for `lockout_s`.", min=1, max=100),
        "backoff_s": Key("float", 1.0, "Wait after the first wrong PIN before the next try; doubles with each "
                         "further wrong PIN.", min=0, max=3600),
        "lockout_s": Key("float", 60.0, "How long logins are refused after `max_failures` wrong PINs.",
                         min=1, max=86400),
        "idle_timeout_s": Key("float", 300.0, "A session with no key pressed for this long ends (logged out); "
                              "the next key starts a new one with the banner.", min=1, max=86400),
        "max_line": Key("int", 256, "Longest command line; a longer one is refused with an error.",
                        min=16, max=4096),
    }, moved={"pin_sha256": "pin_hash (an unsalted SHA-256 is no longer accepted; make the salted digest "
                            "with: firmware-py config pin)"}),
    "run": Section({
        "duration_s": Key("float", 0.0, "Stop after this many seconds; 0 runs until SIGINT/SIGTERM.",
                          min=0, max=10 ** 7),
        "max_frames": Key("int", 0, "Stop after this many processed frames; 0 means no limit.", min=0,
                          max=2 ** 62),
    }),
    "log": Section({
        "level": Key("str", "warning", "Log level on stderr.", choices=("debug", "info", "warning", "error")),
    }),
})


def number_text(x: float) -> str:
    """A bound as written in the schema: integers in full (``67108864``, not ``6.71089e+07``)."""
    return str(x) if isinstance(x, int) else f"{x:g}"


def defaults() -> dict[str, dict[str, Any]]:
    return SCHEMA.defaults()
