"""The console's commands: one function each, registered with ``@command``.

A command is ``fn(console, args) -> reply``: a one-line ``ok: ...`` / ``error: ...``, a block
of text, or a dict (shown as ``key: value`` lines, or as JSON with ``json on`` / ``--json``).
``login`` says whether it changes the device and so needs the technician PIN: True, or a
predicate of the arguments for commands that also read (``tier`` shows, ``tier NAME`` pins).
Commands that change the device post to the daemon's command queue (``console.post``), reply
with its outcome and are audited. ``help`` and ``help NAME`` are built from the table, so a new
command is one function here.
"""
from __future__ import annotations

import dataclasses
import platform
import re
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ConsoleCommand:
    name: str
    usage: str
    help: str
    login: bool | Callable[[list[str]], bool]
    run: Callable[..., object]
    text_as_json: bool = False  # the text reply is the JSON line itself (scripts parse it)

    def changes(self, args: list[str]) -> bool:
        return self.login(args) if callable(self.login) else self.login

    @property
    def login_note(self) -> str:
        return "" if not self.login else " (login)" if self.login is True else " (login to change)"


COMMANDS: dict[str, ConsoleCommand] = {}
SECRET_KEY = re.compile(r"pin|key|secret|password|token", re.IGNORECASE)


def command(name: str, usage: str, help: str, *, login: bool | Callable[[list[str]], bool] = False,
            text_as_json: bool = False):
    def add(fn: Callable[..., object]) -> Callable[..., object]:
        COMMANDS[name] = ConsoleCommand(name, usage, help, login, fn, text_as_json)
        return fn

    return add


def _count(args: list[str], usage: str, default: int) -> int:
    if not args:
        return default
    if len(args) != 1 or not args[0].isdigit():
        raise ValueError(f"usage: {usage} (N a whole number)")
    return int(args[0])


@command("help", "help [NAME]", "the commands, or one command's usage")
def _help(console, args):
    if args:
        cmd = COMMANDS.get(args[0].lower())
        if cmd is None:
            return f"error: unknown command '{args[0]}'; type help"
        return f"usage: {cmd.usage}\n  {cmd.help}{cmd.login_note}"
    width = max(len(c.usage) for c in COMMANDS.values()) + 2
    rows = [f"  {c.usage:<{width}}{c.help}{c.login_note}" for c in COMMANDS.values()]
    return "commands (add --json to any for a JSON reply):\n" + "\n".join(rows)


@command("status", "status", "the live status line")
def _status(console, args):
    return console.daemon.status_text()


@command("counters", "counters", "frame and byte counters of the probe link and the pipeline (one JSON line)",
         text_as_json=True)
def _counters(console, args):
    return console.daemon.counters()


@command("stats", "stats", "every counter: link, parser, pipeline, telemetry, power, the link's last error")
def _stats(console, args):
    d = console.daemon
    return {"pipeline": d.counters(), "link": d.link.stats() if d.link else {},
            "power": dataclasses.asdict(d.tiers.readings), "energy": d.energy_status(),
            "policy": {"mode": d.tiers.mode, "reason": d.tiers.reason},
            "console": {"sessions": console.sessions, "reopens": console.reopens}}


@command("watch", "watch [N]", "live results, one line each, until a key is pressed or N results")
def _watch(console, args):
    limit = _count(args, "watch [N]", 0)
    feed = console.daemon.result_feed
    with feed.subscription() as results:
        shown = console.stream(results, _result_line, limit)
    return f"ok: {shown} result(s) shown"


def _result_line(r, as_json: bool) -> str:
    if as_json:
        return r.to_json()
    if r.indeterminate:  # never shown as a diagnosis: no label, area or probability
        return f"#{r.seq} {r.tier}/{r.backend} INDETERMINATE ({r.indeterminate}) {r.latency_ms.get('total', 0.0):.1f} ms"
    what = r.label if r.label is not None else f"area {r.area_mm2:.1f} mm2" if r.area_mm2 is not None else "-"
    if r.extra.get("no_nodule"):  # the tier's no-nodule rule held: say so, not "area 0.0 mm2"
        what = f"no nodule ({r.extra['no_nodule']})"
    top = f" p={max(r.probabilities.values()):.2f}" if r.probabilities else ""
    return f"#{r.seq} {r.tier}/{r.backend} {what}{top} {r.latency_ms.get('total', 0.0):.1f} ms"


@command("tier", "tier [auto|NAME]", "the active tier; NAME pins one (power policy off), auto gives the choice "
         "back to the policy", login=bool)
def _tier(console, args):
    if not args:
        e = console.daemon.engine
        return f"tier {e.active_tier.name} on {e.backend_name} ({console.daemon.tiers.mode}); ladder " \
               f"{', '.join(e.ladder)}"
    if len(args) != 1:
        return "error: usage: tier [auto|NAME] (tiers lists the names)"
    return console.post("tier", tier=args[0])


@command("tiers", "tiers", "the model ladder, the active tier and the backend")
def _tiers(console, args):
    e = console.daemon.engine
    return (f"ladder {', '.join(e.ladder)}; active {e.active_tier.name} on {e.backend_name} "
            f"({console.daemon.tiers.mode})")


@command("battery", "battery [plug|unplug]", "battery, temperature and what the power policy does about them; "
         "plug / unplug the charger of a simulated battery", login=bool)
def _battery(console, args):
    if args:
        if len(args) != 1 or args[0] not in ("plug", "unplug"):
            return "error: usage: battery [plug|unplug]"
        return console.post("battery", action=args[0])
    t = console.daemon.tiers
    return {**dataclasses.asdict(t.readings), "mode": t.mode, "reason": t.reason}


@command("power", "power", "energy per tier (J, mJ per inference), mean and current watts, the power model, "
         "remaining runtime at the current rung")
def _power(console, args):
    return console.daemon.energy_status()


@command("models", "models", "the signed model set: tiers, resident, refused, accelerator")
def _models(console, args):
    return console.daemon.engine.status()


@command("verify", "verify", "check the signature of the model set on disk (nothing is loaded)")
def _verify(console, args):
    from firmware_py.inference.signing import verify_model_set

    models = console.daemon.engine.models
    if models.public_key is None:
        return "error: models.public_key is not set, so there is no key to verify with"
    manifest, _ = verify_model_set(models.manifest_path, models.public_key)
    return f"ok: {models.manifest_path} is signed by the configured key ({len(manifest.tiers)} tiers)"


@command("selftest", "selftest", "kernels, accelerator, sensors and journal checks, as at start")
def _selftest(console, args):
    from firmware_py.daemon.startup import startup_selftest

    warnings = startup_selftest(console.daemon)
    return "ok: selftest passed" + "".join(f"\nwarning: {w}" for w in warnings)


@command("log", "log [N]", "the last N log lines (default 20)")
def _log(console, args):
    return "\n".join(console.recent_log.recent(_count(args, "log [N]", 20))) or "ok: nothing logged yet"


@command("config", "config show", "the running configuration, secrets masked")
def _config(console, args):
    if args != ["show"]:
        return "error: usage: config show"
    return {sec: {k: ("***" if v is not None and SECRET_KEY.search(k) else v) for k, v in keys.items()}
            for sec, keys in console.daemon.cfg.as_dict().items()}


@command("reload", "reload", "re-read the configuration, re-verify and reload the signed model set", login=True)
def _reload(console, args):
    return console.post("reload")


@command("record", "record start [PATH] | record stop", "record the probe's raw stream (probe.record_path or "
         "PATH) / stop; reopens the probe link", login=True)
def _record(console, args):
    if not args or args[0] not in ("start", "stop") or len(args) > (2 if args[0] == "start" else 1):
        return "error: usage: record start [PATH] | record stop"
    return console.post("record", action=args[0], path=args[1] if len(args) == 2 else None)


@command("probe", "probe info | probe CMD VALUE", "the probe's identity and telemetry; or send freeze / depth / "
         "gain / frame_rate", login=lambda args: args[:1] != ["info"])
def _probe(console, args):
    if args == ["info"]:
        s = console.daemon.link.stats() if console.daemon.link else {}
        keep = ("connected", "port", "version", "probe", "battery_pct", "temperature_c", "telemetry_age_s",
                "last_button", "last_error")
        return {k: s.get(k) for k in keep}
    if len(args) != 2:
        return "error: usage: probe info | probe freeze|depth|gain|frame_rate VALUE"
    try:
        value = float(args[1])
    except ValueError:
        return f"error: '{args[1]}' is not a number"
    return console.post("probe", command=args[0].lower(), value=value)


@command("restart", "restart pipeline", "reopen the probe link (new session and handshake)", login=True)
def _restart(console, args):
    if args not in ([], ["pipeline"]):
        return "error: usage: restart pipeline"
    return console.post("restart")


@command("json", "json on|off", "every reply one JSON object per line (no echo, no prompt), for scripts")
def _json(console, args):
    if args not in (["on"], ["off"]):
        return "error: usage: json on|off"
    console.session.json = args == ["on"]
    return f"ok: json {args[0]}"


@command("login", "login PIN", "technician login, for the commands marked (login); the PIN shows as stars")
def _login(console, args):
    if len(args) != 1:
        return "error: usage: login PIN"
    return console.login(args[0])


@command("logout", "logout", "end the technician login")
def _logout(console, args):
    was = console.session.logged_in
    console.session.logged_in = False
    if was:
        console.audit("logout", "ok")
    return "ok: logged out"


@command("version", "version", "firmware, Python, interpreter backend and probe protocol versions")
def _version(console, args):
    from firmware_py import __version__

    d = console.daemon
    return {"firmware_py": __version__, "python": platform.python_version(), "machine": platform.machine(),
            "backend": d.engine.backend_name, "probe_protocol": d.link.stats().get("version") if d.link else None}


@command("exit", "exit", "end the session (also Ctrl-D); the next key starts a new one")
def _exit(console, args):
    console.end_session("exit")
    return "ok: bye"

