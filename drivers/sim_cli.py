"""`firmware-py probe-sim`: run the software probe on a pty, an inherited fd or a serial URL.

Exit status: 0 done, 2 usage error, 1 runtime failure (message on one line on stderr).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import tty

from firmware_py.drivers import protocol as P
from firmware_py.drivers.faults import FAULT_NAMES, FaultConfig
from firmware_py.drivers.probe_sim import Expired
from firmware_py.errors import FirmwareError, UsageError
from firmware_py.geometry import kind_names


def _version(text: str) -> P.Version:
    try:
        major, minor = text.split(".")
        return int(major), int(minor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"version {text!r} is not MAJOR.MINOR like 1.1") from None


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not the whole usage block
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _OneLineParser(prog="firmware-py probe-sim",
                                 description="Software ultrasound probe speaking the firmware-py wire protocol.")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true",
                       help="create a pseudo-terminal and print its slave path (open that with ProbeLink)")
    where.add_argument("--fd", type=int, metavar="N", help="speak on an inherited file descriptor (a pty master)")
    where.add_argument("--port", metavar="URL", help="speak on a serial port or pyserial URL")
    ap.add_argument("--link", metavar="PATH",
                    help="with --pty: keep a symlink at PATH pointing to the current slave (like "
                         "/dev/serial/by-id), re-pointed after each injected disconnect")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--images", metavar="DIR", help="send the images in DIR and its subfolders (sorted by "
                     "relative path, looping) as linear 8-bit B-mode frames: width = scan lines")
    src.add_argument("--replay", metavar="FILE", help="play back a recording with its original timing")
    ap.add_argument("--loop", action="store_true", help="with --replay: start again at the end")
    ap.add_argument("--geometry", choices=kind_names(), default="linear")
    ap.add_argument("--lines", type=int, default=128, help="scan lines per frame (default 128)")
    ap.add_argument("--samples", type=int, default=512, help="samples per scan line (default 512)")
    ap.add_argument("--bits", type=int, choices=(8, 16), default=8, help="8 = B-mode, 16 = envelope")
    ap.add_argument("--depth", type=float, default=None, help="end depth in mm (default per geometry)")
    ap.add_argument("--pixel-mm", type=float, default=0.2, help="with --images: pixel size in mm (default 0.2)")
    ap.add_argument("--fps", type=float, default=30.0, help="frame rate; 0 = as fast as the line takes")
    ap.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    ap.add_argument("--frames", type=int, default=None, metavar="N", help="stop after N frames")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--version-min", type=_version, default=P.SUPPORTED_MIN, metavar="M.N",
                    help="lowest protocol version to speak (pretend to be another probe firmware)")
    ap.add_argument("--version-max", type=_version, default=P.SUPPORTED_MAX, metavar="M.N")
    ap.add_argument("--telemetry-hz", type=float, default=1.0)
    for name in FAULT_NAMES:
        ap.add_argument(f"--{name.replace('_', '-')}", type=float, default=0.0, metavar="RATE",
                        help=f"probability per frame of injecting {name.replace('_', ' ')}")
    ap.add_argument("--stall-s", type=float, default=0.5, help="length of an injected stall (s)")
    ap.add_argument("--lying-length-bytes", type=int, default=8 * 1024 * 1024, metavar="N",
                    help="body length the --lying-length headers announce (default 8 MiB)")
    ap.add_argument("--fault-log", metavar="PATH", help="append each injected fault as a JSON line")
    ap.add_argument("--frame-log", metavar="PATH", help="append {seq, source, t} of each frame as a JSON line")
    return ap


def _make_sim(args):
    from firmware_py.drivers.probe_sim import ProbeSimulator

    try:
        faults = FaultConfig(**{n: getattr(args, n) for n in FAULT_NAMES}, stall_s=args.stall_s,
                             lying_length_bytes=args.lying_length_bytes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if faults.disconnect and not (args.pty and args.link):
        raise UsageError("--disconnect needs --pty and --link PATH (the line is re-created after a hang-up)")
    if args.version_min > args.version_max:
        raise UsageError(f"--version-min {P.fmt_version(args.version_min)} is above --version-max")
    source = replay = None
    vmin, vmax = args.version_min, args.version_max
    if args.replay:
        from firmware_py.drivers.recorder import Recording

        try:
            replay = Recording(args.replay)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot replay {args.replay}: {exc}") from None
        if replay.version is not None:
            vmin = vmax = replay.version  # the recorded frames are in that version
    elif args.images:
        from firmware_py.drivers.sources import ImageFolderSource

        try:
            source = ImageFolderSource(args.images, pixel_mm=args.pixel_mm)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
    else:
        from firmware_py.drivers.sources import PhantomSource

        try:
            source = PhantomSource.from_options(args.geometry, args.lines, args.samples, args.bits,
                                                seed=args.seed, end_depth_mm=args.depth)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return ProbeSimulator(source, replay=replay, replay_loop=args.loop, fps=args.fps, version_min=vmin,
                          version_max=vmax, telemetry_hz=args.telemetry_hz, faults=faults, seed=args.seed,
                          frame_log_path=args.frame_log, fault_log_path=args.fault_log)


def _serve_pty(sim, args) -> None:
    deadline = None if args.duration is None else time.monotonic() + args.duration
    while True:
        master, slave = os.openpty()
        tty.setraw(slave)  # binary-clean before the reader opens it
        path = os.ttyname(slave)
        if args.link:
            tmp = args.link + ".tmp"
            if os.path.lexists(tmp):
                os.remove(tmp)
            os.symlink(path, tmp)
            os.replace(tmp, args.link)
        print(path, flush=True)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        summary = sim.serve_fd(master, duration=left, max_frames=args.frames)
        os.close(master)
        os.close(slave)
        if summary.ended_by != "disconnect":
            return
        time.sleep(0.2)  # unplugged for a moment, then the probe enumerates again


def _own_process_signals(sim, duration: float | None) -> None:
    """In a process of its own the simulator uses blocking writes (fast, see ProbeSimulator), which
    only a signal handler that raises can end. SIGTERM (the daemon's stop), the end of --duration
    and the death of the parent (a daemon killed with SIGKILL leaves the pty full and nobody to
    stop us) are checked by a 1 s alarm; returning from the handler resumes an interrupted write."""
    sim.blocking_writes = True
    parent = os.getppid()
    end = None if duration is None else time.monotonic() + duration + 1.0

    def _expire(*_):
        sim.stop()
        raise Expired()

    def _tick(*_):
        if os.getppid() != parent or (end is not None and time.monotonic() >= end):
            _expire()

    signal.signal(signal.SIGTERM, _expire)
    signal.signal(signal.SIGALRM, _tick)
    signal.setitimer(signal.ITIMER_REAL, 1.0, 1.0)


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:  # argparse: --help -> 0, bad usage -> 2
        return int(exc.code or 0)
    sim = None
    try:
        sim = _make_sim(args)
        if threading.current_thread() is threading.main_thread():
            _own_process_signals(sim, args.duration)
        if args.pty:
            _serve_pty(sim, args)
        elif args.fd is not None:
            try:
                os.fstat(args.fd)
            except OSError:
                raise UsageError(f"--fd {args.fd} is not an open file descriptor; pass it with pass_fds") from None
            sim.serve_fd(args.fd, duration=args.duration, max_frames=args.frames)
        else:
            import serial

            try:
                port = serial.serial_for_url(args.port, timeout=0)
            except (serial.SerialException, ValueError) as exc:
                raise FirmwareError(f"cannot open {args.port}: {exc}") from None
            try:
                fd = port.fileno()
            except (OSError, AttributeError):  # loop://, socket://: io.UnsupportedOperation
                raise UsageError(f"--port {args.port}: the simulator needs a device path (a tty); "
                                 "use --pty or --fd for a pseudo-terminal") from None
            sim.serve_fd(fd, duration=args.duration, max_frames=args.frames)
        s = sim.summary
        print(f"probe-sim: {s.frames_sent} frames, {s.bytes_sent} bytes, {s.handshakes} handshakes, "
              f"ended by {s.ended_by or 'end'}; faults {s.faults}", file=sys.stderr)
        return 0
    except FirmwareError as exc:
        print(f"probe-sim: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, Expired):
        return 0
    except OSError as exc:
        print(f"probe-sim: {exc}", file=sys.stderr)
        return 1
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.setitimer(signal.ITIMER_REAL, 0)
        if sim is not None:
            sim.close()
