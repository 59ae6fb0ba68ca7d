"""Issue 27: every SIGINT and SIGTERM during every command ends it with one line on stderr and its documented exit
code (130, 143), no traceback, nothing written: also one that comes while the command line is still starting
(before typer and the commands are imported), and one that comes during an import that would swallow it. Once the
command has its outcome, one that comes while its result or error line is printed, or while Python shuts down
after it, changes nothing: the output is whole and the exit code the command's.

The subprocess tests make the timing deterministic with hooks in the child: it sends the signal to its own process
the moment a chosen module starts being imported (or from an exit handler), so no test depends on how fast this
machine starts Python. Before lgtool's first line runs (the interpreter starting, `import lgtool`), Python's own
defaults apply: SIGTERM ends the process without a line (a shell still reports 143) and SIGINT with a
KeyboardInterrupt traceback. The earliest point covered here is the first import after that: the command line's
own (`lgtool.cli`).
"""

import importlib
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from conftest import tiny_gene

import lgtool
import lgtool.cli
from lgtool.base.interrupt import Terminated, raise_on_sigterm, sigterm_received
from lgtool.base.lazy import lazy

ROOT = Path(lgtool.__file__).parent.parent
LINES = {signal.SIGINT: (130, "error: interrupted\n"), signal.SIGTERM: (143, "error: terminated by SIGTERM\n")}
SIGNALS = pytest.mark.parametrize("signum", LINES, ids=lambda s: signal.Signals(s).name)

# Sends `signum` to this process as `module` starts being imported; with `swallow`, inside a bare `try` that catches
# everything, as torch's import of numpy does from C (where a SIGINT or SIGTERM raised was lost: the command ran on).
HOOK = """
import os, signal, sys

class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r} and not getattr(self, "sent", False):
            self.sent = True
            try:
                os.kill(os.getpid(), {signum})
                for _ in range(10**5):  # where a signal raised reaches Python code
                    pass
            except BaseException:
                if not {swallow}:
                    raise
        return None

sys.meta_path.insert(0, SignalOnImport())
sys.argv[0] = "lgtool"
"""
# What pip's `lgtool` script does with pyproject.toml's entry point, and what `python -m lgtool` does.
SCRIPT = "from {module} import {function}\nsys.exit({function}())\n"
RUN_M = "import runpy\nrunpy.run_module('lgtool', run_name='__main__', alter_sys=True)\n"


def _entry_point() -> tuple[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    module, function = re.search(r'^lgtool = "([\w.]+):(\w+)"', text, re.M).groups()
    return module, function


def _run(tmp_path, module: str | None, signum: int, *args, swallow=False, entry="script", at_exit=False):
    """`lgtool ARGS` in a child process that sends itself `signum` as `module` starts being imported, or with
    `at_exit` as Python shuts down after the command (the last exit handler, after lgtool's)."""
    import subprocess

    module_, function = _entry_point()
    start = SCRIPT.format(module=module_, function=function) if entry == "script" else RUN_M
    if at_exit:
        start = f"import atexit\natexit.register(os.kill, os.getpid(), {int(signum)})\n" + start
    code = HOOK.format(module=module, signum=int(signum), swallow=swallow) + start
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", code, *map(str, args)]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@SIGNALS
@pytest.mark.parametrize("entry", ["script", "python -m"])
def test_a_signal_while_the_command_line_is_still_importing_is_one_line_and_runs_nothing(tmp_path, signum, entry):
    gene = tmp_path / "gene.safetensors"
    tiny_gene("tleg").save(gene)
    # `lgtool.cli` is the first import after the entry point's first line: typer, rich and the commands come later
    run = _run(tmp_path, "lgtool.cli", signum, "inspect", gene, "--json", entry=entry)
    code, line = LINES[signum]
    assert (run.returncode, run.stderr, run.stdout) == (code, line, ""), run.stderr  # inspect did not run


@SIGNALS
def test_a_signal_while_python_shuts_down_after_a_command_changes_nothing(tmp_path, signum):
    gene = tmp_path / "gene.safetensors"
    tiny_gene("tleg").save(gene)
    run = _run(tmp_path, None, signum, "inspect", gene, "--json", at_exit=True)
    assert (run.returncode, run.stderr) == (0, ""), run.stderr
    assert json.loads(run.stdout)["kind"] == "learngene"


@SIGNALS
def test_a_signal_swallowed_inside_the_import_of_torch_is_one_line_and_writes_nothing(tmp_path, signum):
    gene = tmp_path / "gene.safetensors"
    tiny_gene("tleg").save(gene)
    run = _run(tmp_path, "torch", signum, "expand", gene, "-o", tmp_path / "desc", swallow=True)
    code, line = LINES[signum]
    assert (run.returncode, run.stderr, run.stdout) == (code, line, ""), run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gene.safetensors"]  # no output, no temporary


@SIGNALS
def test_a_signal_during_an_import_that_swallows_it_is_raised_after_the_import(tmp_path, monkeypatch, signum):
    # torch's import probes numpy in a bare try: a signal raised there was lost (expand went on to exit 0) or
    # left numpy half-imported (the next import: an ImportError traceback)
    (tmp_path / "swallowing.py").write_text(
        f"import os, signal\ntry:\n    os.kill(os.getpid(), {int(signum)})\n    for _ in range(10**6): pass\n"
        "except BaseException:\n    pass\nDONE = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    previous = {s: signal.getsignal(s) for s in LINES}
    try:
        raise_on_sigterm()
        module = lazy("swallowing")
        with pytest.raises(KeyboardInterrupt) as raised:
            module.DONE  # noqa: B018 - the import
        # SIGTERM reports as itself, Ctrl-C as Ctrl-C
        assert type(raised.value) is (Terminated if signum == signal.SIGTERM else KeyboardInterrupt)
        assert sys.modules["swallowing"].DONE  # imported whole
        assert sigterm_received() == (signum == signal.SIGTERM)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sys.modules.pop("swallowing", None)


@SIGNALS
def test_a_signal_while_the_result_is_printed_is_ignored(run_cli, tmp_path, monkeypatch, signum):
    app_module = importlib.import_module("lgtool.cli.app")  # `lgtool.cli.app` is the typer app
    gene = tmp_path / "gene.safetensors"
    tiny_gene("tleg").save(gene)
    real = app_module.dumps

    def dumps_signalled(*args, **kwargs):
        os.kill(os.getpid(), signum)
        for _ in range(10**5):
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "dumps", dumps_signalled)
    try:
        code, out, err = run_cli("inspect", gene, "--json")
    except KeyboardInterrupt as e:
        pytest.fail(f"{type(e).__name__} escaped the command: a traceback")
    assert (code, err) == (0, ""), err
    assert json.loads(out)["kind"] == "learngene"  # printed whole


@SIGNALS
def test_a_signal_while_the_error_line_is_printed_leaves_it_whole(run_cli, tmp_path, monkeypatch, signum):
    real = lgtool.cli.err.print

    def print_signalled(*args, **kwargs):
        os.kill(os.getpid(), signum)
        for _ in range(10**5):
            pass
        real(*args, **kwargs)

    monkeypatch.setattr(lgtool.cli.err, "print", print_signalled)
    before = {s: signal.getsignal(s) for s in LINES}
    try:
        code, out, err = run_cli("inspect", tmp_path / "missing.safetensors")
    except KeyboardInterrupt as e:  # caught here, so that it fails this test instead of stopping pytest
        pytest.fail(f"{type(e).__name__} escaped the command: a traceback")
    assert (code, out) == (3, "") and err.count("\n") == 1 and err.startswith("error: "), err
    assert {s: signal.getsignal(s) for s in LINES} == before  # the handlers main set are put back
