"""The console's commands: one function each, registered with ``@command``.

A command is ``fn(console, args) -> reply`` (a one-line ``ok: ...`` / ``error: ...``, or a
block of text). ``login=True`` commands need the technician PIN; commands that change what the
device does post to the daemon's command queue (``console.post``) and reply with its outcome.
``help`` is built from the table, so a new command is one function here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ConsoleCommand:
    name: str
    usage: str
    help: str
    login: bool
    run: Callable[..., str]


COMMANDS: dict[str, ConsoleCommand] = {}


def command(name: str, usage: str, help: str, *, login: bool = False):
    def add(fn: Callable[..., str]) -> Callable[..., str]:
        COMMANDS[name] = ConsoleCommand(name, usage, help, login, fn)
        return fn

    return add


@command("help", "help", "this list")
def _help(console, args) -> str:
    width = max(len(c.usage) for c in COMMANDS.values()) + 2
    rows = [f"  {c.usage:<{width}}{c.help}{' (login)' if c.login else ''}" for c in COMMANDS.values()]
    return "commands:\n" + "\n".join(rows)


@command("status", "status", "the live status line")
def _status(console, args) -> str:
    return console.daemon.status_text()


@command("counters", "counters", "frame and byte counters of the probe link and the pipeline (JSON)")
def _counters(console, args) -> str:
    return json.dumps(console.daemon.counters(), sort_keys=True)


@command("tiers", "tiers", "the model ladder, the active tier and the backend")
def _tiers(console, args) -> str:
    e = console.daemon.engine
    return (f"ladder {', '.join(e.ladder)}; active {e.active_tier.name} on {e.backend_name} "
            f"({console.daemon.tiers.mode})")


@command("login", "login PIN", "technician login, for the commands marked (login)")
def _login(console, args) -> str:
    if len(args) != 1:
        return "error: usage: login PIN"
    return console.login(args[0])


@command("logout", "logout", "end the technician login")
def _logout(console, args) -> str:
    console.logged_in = False
    return "ok: logged out"


@command("tier", "tier NAME | tier auto", "pin a tier (power policy off) or give the choice back to the policy",
         login=True)
def _tier(console, args) -> str:
    if len(args) != 1:
        return "error: usage: tier NAME | tier auto (tiers lists the names)"
    return console.post("tier", tier=args[0])


@command("reload", "reload", "re-verify and reload the signed model set", login=True)
def _reload(console, args) -> str:
    return console.post("reload")


@command("probe", "probe CMD VALUE", "send freeze / depth / gain / frame_rate to the probe", login=True)
def _probe(console, args) -> str:
    if len(args) != 2:
        return "error: usage: probe freeze|depth|gain|frame_rate VALUE"
    try:
        value = float(args[1])
    except ValueError:
        return f"error: '{args[1]}' is not a number"
    return console.post("probe", command=args[0].lower(), value=value)


@command("restart", "restart", "reopen the probe link (new session and handshake)", login=True)
def _restart(console, args) -> str:
    return console.post("restart")
