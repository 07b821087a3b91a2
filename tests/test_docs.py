"""The docs never lie: the CLI reference is --help itself, and every command shown runs.

- docs/cli.md's reference is generated from each command's --help (refresh:
  RNNCLI_UPDATE_DOCS=1); the prose above its "## Reference" is written by hand.
- In README.md and docs/**/*.md, every ```console block's `$ ` lines are run (in a scratch
  folder that sees sample_weights/; a plain `rnncli ...` line in this process through
  click's CliRunner, anything else by bash) and their output must match the lines below them;
  every ```sh block's commands must exit 0 (install, test and benchmark commands excepted).
"""

import glob
import os
import re
import shlex
import subprocess
import sys
import traceback

import pytest
from click.testing import CliRunner
from conftest import ROOT

from rnncli.cli import cli

DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)) + \
    [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "sample_weights", "README.md")]
NOT_RUN = ("pip ", "python -m pytest", "python benchmarks", "python scripts", "python3 -m venv",
           "RNNCLI_UPDATE_DOCS", "cd ")


REFERENCE = "## Reference"  # docs/cli.md: the prose above it is written by hand


def cli_reference(current: str = "") -> str:
    """docs/cli.md: its hand-written part (the choices the commands share) as it is, then
    every command's --help."""
    prose = current.split("\n" + REFERENCE + "\n")[0] if REFERENCE in current else \
        "# Command-line reference\n"
    parts = [prose.rstrip("\n"), "", REFERENCE, "",
             "Generated from `rnncli --help` by `tests/test_docs.py`; do not edit it by hand "
             "(refresh with `RNNCLI_UPDATE_DOCS=1 python -m pytest tests/test_docs.py`).", ""]
    runner = CliRunner()
    for args, title in [([], "rnncli")] + [([n], f"rnncli {n}") for n in sorted(cli.commands)]:
        text = runner.invoke(cli, [*args, "--help"], prog_name="rnncli",
                             terminal_width=100).output
        parts += [f"### {title}", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(parts)


def test_cli_reference_is_current():
    path = os.path.join(ROOT, "docs", "cli.md")
    text = cli_reference(open(path).read())
    if os.environ.get("RNNCLI_UPDATE_DOCS") == "1":
        with open(path, "w") as f:
            f.write(text)
    assert open(path).read() == text, "docs/cli.md is stale: RNNCLI_UPDATE_DOCS=1 pytest"


def test_every_command_is_documented():
    index = open(os.path.join(ROOT, "docs", "index.md")).read()
    for name in cli.commands:
        assert f"### rnncli {name}" in open(os.path.join(ROOT, "docs", "cli.md")).read()
        assert f"rnncli {name}" in index, f"docs/index.md does not show `rnncli {name}`"


def blocks(path):
    """(kind, lines, line number) for each ```console / ```sh block."""
    out = []
    lines = open(path).read().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(console|sh)\s*$", lines[i])
        if m:
            start = i
            i += 1
            body = []
            while i < len(lines) and lines[i] != "```":
                body.append(lines[i])
                i += 1
            out.append((m.group(1), body, start + 1))
        i += 1
    return out


def examples():
    params = []
    for path in DOCS:
        if not os.path.exists(path):
            continue
        rel = os.path.relpath(path, ROOT)
        for kind, body, line in blocks(path):
            if kind == "console":
                cmd, expected = None, []
                for ln in body + ["$ "]:
                    if ln.startswith("$ "):
                        if cmd:
                            params.append(pytest.param(cmd, "\n".join(expected), id=f"{rel}:{line}"))
                        cmd, expected = ln[2:], []
                    else:
                        expected.append(ln)
            else:
                for ln in body:
                    ln = ln.split("  #")[0].strip()
                    if ln and not ln.startswith("#") and not ln.startswith(NOT_RUN):
                        params.append(pytest.param(ln, None, id=f"{rel}:{line}"))
        # complete commands shown inline, e.g. in a table: `rnncli ... sample_weights/...`
        for n, text in enumerate(open(path).read().splitlines(), 1):
            for cmd in re.findall(r"`(rnncli [^`]+)`", text):
                if "sample_weights/" in cmd or "tests/data/" in cmd:
                    params.append(pytest.param(cmd, None, id=f"{rel}:{n}:inline"))
    return params


def make_scratch(d):
    """A folder that looks like the project root to the docs' commands."""
    for name in ("sample_weights", "tests"):
        os.symlink(os.path.join(ROOT, name), d / name)
    return d


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return make_scratch(tmp_path_factory.mktemp("docs"))


def run_shown(command, cwd):
    """Run a documented command as a reader would; stdout and stderr interleaved."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               COLUMNS="100", NO_COLOR="1")
    r = subprocess.run(["bash", "-c", "set -o pipefail; " + command], cwd=cwd, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    return r.returncode, "\n".join(ln.rstrip() for ln in r.stdout.rstrip("\n").splitlines())


NUMBER = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?")
LAYOUT = re.compile(r"[\s\u2500-\u257f]+")  # spaces and box drawing: widths follow the digits


def same_output(got, expected):
    """The text to the letter, the numbers to 1e-6: the last printed digit of a float32 may
    differ between machines whose BLAS blocks a sum differently (docs/api.md)."""
    if got == expected:
        return True
    g, e = NUMBER.findall(got), NUMBER.findall(expected)
    if len(g) != len(e) or LAYOUT.sub(" ", NUMBER.sub("#", got)) != \
            LAYOUT.sub(" ", NUMBER.sub("#", expected)):
        return False
    return all(abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b))) for a, b in zip(g, e))


SHELL = set("|<>;&$`\\'\"*?~(){}#")  # anything bash would read as more than words


def run_in_process(command, cwd, monkeypatch):
    """A plain ``rnncli ...`` command through click's CliRunner, in ``cwd`` with run_shown's
    environment: the same exit code and the same interleaved output as run_shown gives (each
    documented command was compared), without a Python start-up and imports for each. What
    only a real process shows (pipes, signals, the installed entry point) is tested in
    test_pipes.py, test_signals.py and by the shell commands here."""
    monkeypatch.chdir(cwd)
    r = CliRunner().invoke(cli, shlex.split(command)[1:], prog_name="rnncli",
                           env={"COLUMNS": "100", "NO_COLOR": "1"})
    got = "\n".join(ln.rstrip() for ln in r.output.rstrip("\n").splitlines())
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        got += "\n" + "".join(traceback.format_exception(r.exception))
    return r.exit_code, got


def is_plain_rnncli(command):
    return command.startswith("rnncli ") and not SHELL & set(command)


@pytest.mark.parametrize("command,expected", examples())
def test_documented_command(scratch, command, expected, monkeypatch):
    if is_plain_rnncli(command):
        code, got = run_in_process(command, scratch, monkeypatch)
    else:
        code, got = run_shown(command, scratch)
    assert code == 0, got
    if expected is not None:
        want = "\n".join(ln.rstrip() for ln in expected.rstrip("\n").splitlines())
        assert same_output(got, want), f"{got}\n---- expected ----\n{want}"


def test_same_output_tolerates_the_last_digit_only():
    assert same_output("h -0.8391594 x", "h -0.8391595 x")
    assert same_output("┃ 0.1 ┃", "┃ 0.10000001 ┃")
    assert not same_output("h -0.8391 x", "h -0.8392 x")
    assert not same_output("h 0.5 y", "h 0.5 x")


def test_refresh_console_blocks(tmp_path):
    """With RNNCLI_UPDATE_DOCS=1, rewrite each ```console block's output from a real run."""
    if os.environ.get("RNNCLI_UPDATE_DOCS") != "1":
        pytest.skip("set RNNCLI_UPDATE_DOCS=1 to refresh the docs' console blocks")
    scratch = make_scratch(tmp_path)
    for path in DOCS:
        if not os.path.exists(path):
            continue
        lines = open(path).read().splitlines()
        out, i = [], 0
        while i < len(lines):
            out.append(lines[i])
            if lines[i] == "```console":
                i += 1
                while lines[i] != "```":
                    if lines[i].startswith("$ "):
                        out.append(lines[i])
                        code, got = run_shown(lines[i][2:], scratch)
                        assert code == 0, (path, lines[i], got)
                        if got:
                            out += got.splitlines()
                    i += 1
                out.append("```")
            i += 1
        with open(path, "w") as f:
            f.write("\n".join(out) + "\n")
