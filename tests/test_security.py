"""Security promises, each attacked: tampered models, PIN guessing over a real pty, hostile console
input (shell, eval, format strings, escapes), files others may write, secrets in what leaves the device.

Cases already attacked elsewhere are not repeated here (docs/reliability.md lists them all):
tests/test_signing_model_set.py (a flipped byte in the manifest or a model, missing, garbled or
foreign signatures, an extra or a missing file, a file swapped after verification; at start and
at reload, where the last good set keeps serving), tests/test_inference_isolation.py (files that
crash or hang the interpreter), tests/test_console_robust.py (1 MB lines, binary garbage, escape
storms, a command flood, the brute-force rate with the shipped defaults on a simulated clock) and
tests/test_console_terminal.py (the line editor on its own).
"""
from __future__ import annotations

import ast
import base64
import logging
import os
import pathlib
import re
import shutil
import threading
import time
from types import SimpleNamespace

import pytest
import yaml

from firmware_py.config import load_config
from firmware_py.daemon.runner import Daemon
from firmware_py.daemon.startup import writable_by_others
from firmware_py.errors import SecurityError
from firmware_py.inference import Engine
from firmware_py.inference.signing import verify_model_set
from tests.console_rig import PIN_HASH, Cable, Rig, Technician, rising
from tests.data.model_sets import TWO_CLASSIFIERS, make_model_set
from tests.test_daemon_control import LADDER, Cell, Gauge, InProcessProbe

ROOT = pathlib.Path(__file__).resolve().parent.parent


# -- tampered models: the cases tests/test_signing_model_set.py does not try ---------------------------

def swap_two_model_files(s):
    """Each file keeps its name, so a check by name and size alone would not notice."""
    a, b = (os.path.join(s["dir"], n) for n in ("cls_int8.tflite", "cls_int8_b.tflite"))
    tmp = a + ".tmp"
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)


def rewrite_digest_to_match_a_changed_model(s):
    """The attacker changes a model and puts its new digest in the manifest, without the key."""
    import hashlib

    model = os.path.join(s["dir"], "cls_int8.tflite")
    old = hashlib.sha256(open(model, "rb").read()).hexdigest()
    with open(model, "r+b") as f:
        f.seek(600)
        b = f.read(1)
        f.seek(600)
        f.write(bytes([b[0] ^ 0x01]))
    new = hashlib.sha256(open(model, "rb").read()).hexdigest()
    path = os.path.join(s["dir"], "manifest.yaml")
    text = open(path).read()
    assert old in text
    open(path, "w").write(text.replace(old, new))


def signature_of_another_valid_set(s):
    """A genuine signature, by the trusted key, of a different manifest."""
    other = make_model_set(os.path.join(os.path.dirname(s["dir"]), "other"),
                           [{"name": "cls-small", "cpu": "cls_int8_b.tflite", "rank": 0}],
                           keys_dir=os.path.dirname(s["private"]))
    verify_model_set(other["dir"], s["public"])  # genuine: the trusted key signed it
    shutil.copyfile(os.path.join(other["dir"], "manifest.yaml.sig"), os.path.join(s["dir"], "manifest.yaml.sig"))


TAMPERING = [
    ("two model files swapped", swap_two_model_files, "digest-mismatch"),
    ("digest rewritten in the manifest", rewrite_digest_to_match_a_changed_model, "bad-signature"),
    ("signature of another set", signature_of_another_valid_set, "bad-signature"),
]


@pytest.fixture
def signed(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    return make_model_set(str(tmp_path / "models"), TWO_CLASSIFIERS, keys_dir=str(keys))


@pytest.mark.parametrize("name,tamper,kind", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_a_tampered_set_is_refused_at_start_and_at_reload(signed, name, tamper, kind):
    eng = Engine(signed["dir"], public_key=signed["public"])
    try:
        good = eng.models.digest
        tamper(signed)
        with pytest.raises(SecurityError) as e:
            verify_model_set(signed["dir"], signed["public"])
        assert e.value.kind == kind and "\n" not in str(e.value)
        assert eng.reload() is False and eng.models.digest == good  # the running set stays
        eng.input_view()[...] = 3
        assert eng.invoke().tier == "cls-small"
    finally:
        eng.close()
    with pytest.raises(SecurityError):
        Engine(signed["dir"], public_key=signed["public"]).close()


# -- PIN guessing at the configured rate, over a real pty -------------------------------------------

def allowed_checks(seconds: float, max_failures: int, backoff_s: float, lockout_s: float) -> int:
    """The most PINs the guard's schedule lets be checked in ``seconds`` (an attacker typing at once)."""
    t, n, k = 0.0, 0, 0
    while t <= seconds:
        n, k = n + 1, k + 1
        if k == max_failures:
            t, k = t + lockout_s, 0
        else:
            t += backoff_s * 2 ** (k - 1)
    return n


@pytest.mark.slow
def test_wrong_pins_typed_as_fast_as_replies_come_are_held_to_the_configured_rate(tmp_path, capsys):
    guard = {"max_failures": 3, "backoff_s": 0.25, "lockout_s": 2.0}
    rig = Rig(tmp_path, **guard)
    try:
        t = rig.tech
        checks: list[tuple[float, float]] = []  # (typed, answered) of each PIN the guard let be checked
        refused = 0
        start = time.monotonic()
        guess = 1000
        while time.monotonic() - start < 7.0:
            typed = time.monotonic()
            reply = t.ask(f"login {guess}")
            assert "\n" not in reply.strip(), reply  # one line per try
            if reply.startswith("error: wrong PIN"):
                checks.append((typed, time.monotonic()))
                guess += 1
            else:
                assert "wait" in reply or "locked" in reply, reply
                refused += 1
        elapsed = time.monotonic() - start
        locked = t.ask("login 2468")  # the right PIN (tests/console_rig.py), inside a lockout or a back-off
        assert locked.startswith("error: ") and not rig.daemon.console.logged_in
        assert "1000" not in t.raw.decode("utf-8", "replace")  # typed PINs show as stars
    finally:
        rig.close()
    # Each check came no sooner after the one before than the schedule allows: the k-th wrong PIN
    # of a run waits backoff_s * 2**(k-1), the max_failures-th the lockout. A check happened
    # between its line being typed and answered, so answered(i+1) - typed(i) bounds the gap.
    for i in range(1, len(checks)):
        k = (i - 1) % guard["max_failures"] + 1
        wait = guard["lockout_s"] if k == guard["max_failures"] else guard["backoff_s"] * 2 ** (k - 1)
        assert checks[i][1] - checks[i - 1][0] >= wait, (i, k, checks[i][1] - checks[i - 1][0], wait)
    checked, bound = len(checks), allowed_checks(elapsed, **guard)
    assert guard["max_failures"] < checked <= bound  # past one lockout, never more than the schedule
    assert refused > 10 * checked  # the attacker's other tries never reached the digest
    with capsys.disabled():
        print(f"\nconsole brute force over a pty: {checked} PINs checked in {elapsed:.1f} s "
              f"({60 * checked / elapsed:.0f}/min with max_failures 3, backoff 0.25 s, lockout 2 s; "
              f"schedule allows {bound}); {refused} tries refused unchecked")


# -- console input never reaches a shell, eval or a format string ----------------------------------

LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical"}
# a str.format() on something other than a literal, that is not str.format: (file, source)
NOT_STR_FORMAT = {("firmware_py/console/logbuffer.py", "self.format(record)")}  # logging.Handler.format


def dangerous_calls(tree: ast.AST, rel: str) -> list[str]:
    found = []

    def say(node, what):
        found.append(f"{rel}:{node.lineno}: {what}: {ast.unparse(node)[:90]}")

    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            left, right = node.left, node.right
            numeric = isinstance(right, ast.Constant) and isinstance(right.value, (int, float))
            if not (isinstance(left, ast.Constant) and isinstance(left.value, str)) and not numeric:
                say(node, "% with a format string that is not a literal")
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in ("eval", "exec", "compile", "__import__"):
            say(node, f"{f.id}()")
        if isinstance(f, ast.Attribute):
            owner = f.value.id if isinstance(f.value, ast.Name) else None
            if owner == "os" and (f.attr in ("system", "popen") or f.attr.startswith(("exec", "spawn"))):
                say(node, f"os.{f.attr}()")
            if owner in ("pickle", "marshal", "shelve") or (owner == "yaml" and f.attr in ("load", "unsafe_load")):
                say(node, f"{owner}.{f.attr}() (runs code from data)")
            if f.attr in ("format", "format_map") and not isinstance(f.value, ast.Constant) \
                    and (rel, ast.unparse(node)) not in NOT_STR_FORMAT:
                say(node, "str.format on a string that is not a literal")
            if owner in ("log", "logger", "logging", "security_log") and f.attr in LOG_METHODS | {"log"}:
                args = node.args[1:] if f.attr == "log" else node.args
                msg = args[0] if args else None
                literal = isinstance(msg, ast.Constant) or (isinstance(msg, ast.JoinedStr) and len(args) == 1)
                if msg is not None and not literal:
                    say(node, "a log call whose format string is not a literal")
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                say(node, "shell=")
    return found


def test_no_source_file_hands_text_to_a_shell_eval_or_a_format_string():
    found = []
    for path in sorted((ROOT / "firmware_py").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        found += dangerous_calls(ast.parse(path.read_text(encoding="utf-8"), rel), rel)
    assert not found, "\n".join(found)


def test_the_static_check_finds_what_it_looks_for():
    src = """
import os, subprocess, logging, yaml
log = logging.getLogger()
eval(line); exec(line); os.system(line); os.popen(line); subprocess.run(line, shell=True)
line % args; line.format(x); log.info(line); log.log(20, line, x); yaml.load(line)
"""
    found = dangerous_calls(ast.parse(src), "t.py")
    assert len(found) == 10, "\n".join(found)
    ok = "x = 'a %s' % v; y = n % 2; z = 'a {}'.format(v); log.info('a %s', v); log.info(f'a {v}')"
    assert dangerous_calls(ast.parse(ok), "t.py") == []


CANARY = "CANARY_SHELL_RAN"
HOSTILE = [
    f"$(touch {CANARY}1)", f"`touch {CANARY}2`", f"; touch {CANARY}3", f"status; touch {CANARY}4",
    f"status && touch {CANARY}5", f"| touch {CANARY}6", f"__import__('os').system('touch {CANARY}7')",
    "; rm -rf /", "$(reboot)", "%s%n%x%d", "%(pin_hash)s", "{0.__class__}", "{console.pin_hash}",
    "tier {0.__class__.__mro__}", "help %s%n", "log %s", "probe gain {0}", "config show %s{0}",
    "x" * 10_000, f"status\x00; touch {CANARY}8", "tier \x1b[2J\x1b]0;pwned\x07", "\x1b[6n\x1bc\x9b2J",
]


@pytest.mark.slow
def test_hostile_lines_get_one_line_replies_and_do_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a shell would have created the canaries
    rig = Rig(tmp_path)
    try:
        t = rig.tech
        tier = rig.daemon.engine.active_tier.name
        for logged_in in (False, True):
            if logged_in:
                assert t.ask("login 2468") == "ok: logged in"
            for line in HOSTILE:
                start = len(t.raw)
                reply = t.ask(line, timeout=30).strip()
                said = t.raw[start:]
                assert "\n" not in reply, (line[:40], reply)
                assert b"\x1b" not in said and b"\x07" not in said and b"\x9b" not in said, (line[:40], said[-200:])
                # what a format string or eval would have produced
                assert not re.search(r"<class|object at 0x|__mro__\)|scrypt\$", reply), (line[:40], reply)
                if reply.startswith("error: unknown command") and line.isprintable() and len(line) < 200:
                    # the name shown as typed, never interpreted
                    assert any(f"'{w.lower()}'" in reply.lower() for w in line.split()), (line, reply)
        assert rig.daemon.engine.active_tier.name == tier  # nothing changed the device
        assert rising(rig)
        assert "rx " in t.ask("status")
    finally:
        rig.close()
    leftovers = [p for d in (tmp_path, ROOT, pathlib.Path("/tmp")) for p in d.glob(f"{CANARY}*")]
    assert not leftovers, leftovers


# -- files others may write, and secrets in what leaves the device ---------------------------------

def test_a_trusted_file_writable_by_others_is_one_warning_naming_the_fix(tmp_path):
    cfg_file, key = tmp_path / "device.yaml", tmp_path / "trusted.pub"
    cfg_file.write_text("{}\n")
    key.write_text("key\n")
    for mode in (0o644, 0o664, 0o600):
        cfg_file.chmod(mode)
        key.chmod(mode)
        daemon = SimpleNamespace(cfg=SimpleNamespace(console=SimpleNamespace(pin_hash="x"),
                                                     models=SimpleNamespace(public_key=str(key))),
                                 config_path=str(cfg_file))
        assert writable_by_others(daemon) == []
    cfg_file.chmod(0o646)
    key.chmod(0o666)
    warnings = writable_by_others(daemon)
    assert warnings == [
        f"{cfg_file} (the configuration, holding console.pin_hash) is writable by other users; "
        f"fix: chmod o-w {cfg_file}",
        f"{key} (models.public_key, the key model sets are verified with) is writable by other users; "
        f"fix: chmod o-w {key}"]


PIN = "90817263"  # eight digits: a number this long does not turn up in counters or times by chance


class FileRig(Rig):
    """tests/console_rig.py's Rig, but the daemon's configuration is a real file (config_path)."""

    def __init__(self, tmp_path):
        from firmware_py.console.auth import hash_pin

        self.models = make_model_set(str(tmp_path / "models"), LADDER)
        self.pin_hash = hash_pin(PIN, 2 ** 10)
        self.config_path = str(tmp_path / "device.yaml")
        self.cable = Cable(str(tmp_path / "console-tty"))
        self.cable.plug()
        with open(self.config_path, "w") as f:
            yaml.safe_dump({
                "console": {"port": self.cable.path, "pin_hash": self.pin_hash, "lockout_s": 1.0, "backoff_s": 0.0,
                            "max_failures": 3},
                "models": {"public_key": self.models["public"]},
                "output": {"results": str(tmp_path / "r.jsonl"), "journal": str(tmp_path / "journal.sqlite"),
                           "status_interval_s": 0.0},
                "run": {"duration_s": 300.0}}, f)
        os.chmod(self.config_path, 0o666)
        os.chmod(self.models["public"], 0o646)
        engine = Engine(self.models["dir"], public_key=self.models["public"])
        self.daemon = Daemon(load_config(self.config_path), engine=engine, battery=Cell(77.0), thermal=Gauge(40.0),
                             probe=InProcessProbe(fps=40.0), policy_period_s=3600.0, config_path=self.config_path)
        self.runner = threading.Thread(target=self.daemon.run, daemon=True)
        self.runner.start()
        self.tech = Technician(self.cable.master)
        self.tech.wait_raw(b"type help\r\n> ")


def secrets_of(rig: FileRig) -> dict[str, re.Pattern]:
    from cryptography.hazmat.primitives import serialization

    pem = open(rig.models["private"], "rb").read()
    raw = serialization.load_pem_private_key(pem, None).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    body = b"".join(ln for ln in pem.splitlines() if not ln.startswith(b"-----")).decode()
    salt, digest = rig.pin_hash.split("$")[4:6]
    texts = {"PIN digest": rig.pin_hash, "PIN digest salt": salt, "PIN digest hash": digest,
             "private key PEM": body[16:], "private key hex": raw.hex(), "private key base64": base64.b64encode(raw).decode()}
    pats = {k: re.compile(re.escape(v)) for k, v in texts.items()}
    pats["PIN"] = re.compile(rf"(?<!\d){PIN}(?!\d)")
    return pats


@pytest.mark.slow
def test_no_secret_in_any_log_line_console_reply_or_journal_row_and_writable_files_are_warned(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    rig = FileRig(tmp_path)
    try:
        t = rig.tech
        for wrong in ("11111111", "90817264", PIN[::-1]):
            t.ask(f"login {wrong}")
        time.sleep(1.1)  # the lockout (1 s) passes
        assert t.ask(f"login {PIN}") == "ok: logged in"
        for line in ("config show", "config show --json", "stats", "counters", "selftest", "models", "verify",
                     "log 200", "tier auto", "probe gain 3", "reload", f"login {PIN}", "logout"):
            t.ask(line, timeout=30)
        for line, reply in (("json on", b'"json on"}\r\n'), ("config show", b'"command": "config"'),
                            ("stats", b'"command": "stats"'), ("json off", b"json off")):
            start = len(t.raw)  # JSON mode: one object per line, no echo and no prompt
            t.type(line + "\r")
            t.wait_raw(reply, timeout=30, start=start)
        # A PIN typed where no PIN belongs: the technician's own screen echoes it (they typed it in
        # view), but neither the log nor the journal may keep it.
        typed_in_view = len(t.raw)
        for line in (f"tier {PIN}", PIN, f"probe gain {PIN}"):
            t.ask(line, timeout=30)
        t.settle()
        assert rising(rig)
        warnings = rig.daemon.selftest_warnings
    finally:
        rig.close()
    # the start-up warned about both files: one line each, naming the fix
    for path in (rig.config_path, rig.models["public"]):
        line = [w for w in warnings if w.startswith(path)]
        assert len(line) == 1 and line[0].endswith(f"fix: chmod o-w {path}"), warnings
        assert any(f"chmod o-w {path}" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    import sqlite3

    db = sqlite3.connect(rig.daemon.cfg.output.journal)
    rows = [(table, repr(row)) for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            for row in db.execute(f'SELECT * FROM "{table}"')]
    db.close()
    assert any(table == "audit" for table, _ in rows) and any(table == "results" for table, _ in rows)
    seen = {"log": [r.getMessage() + (r.exc_text or "") for r in caplog.records],
            "console": t.raw[:typed_in_view].decode("utf-8", "replace").split("\r\n"),
            "journal": [f"{table}: {row}" for table, row in rows],
            "results file": open(rig.daemon.cfg.output.results, encoding="utf-8").read().splitlines()}
    leaks = [f"{where}: {name}: {text[:160]!r}" for where, lines in seen.items() for text in lines
             for name, pat in secrets_of(rig).items() if pat.search(text)]
    assert not leaks, "\n".join(leaks)
    assert sum(len(v) for v in seen.values()) > 100  # there was something to look through
