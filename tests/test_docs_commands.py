"""Docs that cannot drift: every shell command README.md, docs/*.md and workloads/*/README.md show.

The commands are read from fenced ```bash / ```sh / ```console blocks (and unlabelled blocks whose lines start
with ``$ ``), one logical line at a time (``\\`` continuations joined, comments dropped, ``&&`` chains split).
Each is either run here and checked, or named in NOT_RUN with the reason it cannot run here; a command of any
other program fails :func:`test_every_command_shown_is_run_here_or_excused` until it is classified.

What "checked" means:

- a console block shows output under a ``$ command``: the command's output must match it, where a line ``...``
  stands for any lines and ``...`` inside a line for any text; durations and run ids are volatile and compared
  as placeholders; ``$ echo $?`` compares the exit status of the command before it;
- otherwise the command must exit 0, except that a ``park conformance --target kubernetes`` command without
  ``--dry-run`` must get as far as looking for its cluster (exit 2, naming the kubeconfig): here there is none;
- ``make TARGET`` runs as ``make -n TARGET`` (the target exists and its recipe expands); ``pytest ARGS`` runs
  with ``--collect-only`` (the paths exist and ``-k`` selects something); ``python -m park.workloads.X ARGS``
  runs as ``--help`` and every option shown must be one it has; so do the ``park`` commands not run here.

Each distinct command line runs once per session, in a folder of its own (``/tmp/...`` and the kind stack's
``/mnt/park-storage`` are mapped into that folder, ``$HOME`` too, and ``KUBECONFIG`` points nowhere). ``park``
commands other than ``conformance`` and ``--version`` run in this process, through typer's CliRunner on the
``park.cli:app`` the console script calls (:func:`test_the_console_script_is_the_app_run_in_process`): a fresh
``park`` would spend seconds importing and rendering what this process has imported and rendered already.
``conformance`` (threads, signal handlers, its own logging) and ``--version`` run the console script.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from park_in_process import park_in_process

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "workloads").glob("*/README.md")])
VENV_BIN = Path(sys.executable).parent
MAPPED_PREFIXES = ("/mnt/park-storage", "/tmp/")
"""Absolute paths the docs write to; each command gets them inside its own folder instead."""

NOT_RUN: dict[str, str] = {
    "pulumi": "needs a Pulumi backend (login, stacks, config) and creates cloud resources; the program runs "
              "under Pulumi's mocks in tests/test_stacks.py, test_install_order.py and test_cloud_contracts.py",
    "kubectl": "needs a Kubernetes cluster; tests/test_conformance_kube.py covers the cluster side against a "
               "fake API server, and tests/test_render.py / test_helm_render.py what is applied",
    "kind": "creates a cluster of Docker containers; the config it reads comes from `park kind-config`, run here",
    "docker": "needs a Docker daemon and builds multi-gigabyte images",
    "aws": "calls AWS with the reader's credentials",
    "gcloud": "calls Google Cloud with the reader's credentials",
    "git": "clones over the network",
    "cd": "changes the reader's shell folder only",
    "sudo": "changes this machine as root",
    "curl": "calls a web service",
    "checkov": "tests/test_security_scan.py runs checkov over the same rendered objects",
}
"""Programs whose commands cannot run here, and why (what covers them instead, where something does)."""

PARK_NOT_RUN: dict[str, str] = {
    "conformance": "the local target starts an embedded Ray and runs every workload for minutes; "
                   "tests/test_conformance_local.py runs it",
    "image": "builds, pushes or loads images with Docker (and kind or a registry)",
    "stage-model": "downloads the model from the hub and uploads it to the stack's bucket",
    "--install-completion": "edits the reader's shell start-up file",
}
"""``park`` subcommands not run here: their options are checked against ``--help`` instead. The same commands
with ``--dry-run`` only print what they would do, and run here."""

PARK_RUN = ("render", "cost", "kind-config", "tiny-model", "--version")

PARK_IN_A_FRESH_PROCESS = ("conformance", "--version")
"""``park`` commands run as the console script (the others run in this process, see the module docstring)."""


# --- reading the docs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """One command a doc shows, with the output shown under it (console blocks only)."""

    doc: str
    line: int
    command: str
    output: tuple[str, ...] | None = None
    """None where the doc shows no output (a bash block); a console block's lines, possibly none."""
    previous: Shown | None = field(default=None, compare=False)
    """The command before it in the same console block (what ``echo $?`` reports on)."""

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}:{self.command[:70]}"


FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}


def fenced_blocks(path: Path) -> list[tuple[str, int, list[str]]]:
    """(language, line number of the first content line, lines without the fence's indent) per block."""
    blocks, current = [], None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = FENCE.match(line)
        if current is None and match:
            current = (match["lang"], number + 1, len(match["indent"]), [])
        elif current is not None and match and not match["lang"]:
            blocks.append((current[0], current[1], current[3]))
            current = None
        elif current is not None:
            current[3].append(line[current[2]:])
    return blocks


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment (a ``#`` after a blank, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def split_chain(command: str) -> list[str]:
    """``a && b`` -> [a, b] (outside quotes)."""
    parts, quote, start = [], None, 0
    for i, char in enumerate(command):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif command.startswith("&&", i):
            parts.append(command[start:i].strip())
            start = i + 2
    parts.append(command[start:].strip())
    return [p for p in parts if p]


def logical_lines(lines: list[str], first: int) -> list[tuple[int, str]]:
    """(line number, line) with ``\\`` continuations joined."""
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for offset, line in enumerate(lines):
        number = first + offset
        if pending is not None:
            number, line = pending[0], pending[1] + " " + line.strip()
        if line.rstrip().endswith("\\"):
            pending = (number, line.rstrip()[:-1].rstrip())
            continue
        pending = None
        joined.append((number, line))
    if pending is not None:
        joined.append(pending)
    return joined


def shown_in(path: Path) -> list[Shown]:
    doc = str(path.relative_to(ROOT))
    shown: list[Shown] = []
    for language, first, lines in fenced_blocks(path):
        console = language == "console" or (not language and any(line.startswith("$ ") for line in lines))
        if console:
            previous: Shown | None = None
            current: tuple[int, str, list[str]] | None = None
            for number, line in logical_lines(lines, first):
                if line.startswith("$ "):
                    if current:
                        previous = Shown(doc, current[0], current[1], tuple(current[2]), previous)
                        shown.append(previous)
                    current = (number, strip_comment(line[2:]), [])
                elif current:
                    current[2].append(line)
            if current:
                shown.append(Shown(doc, current[0], current[1], tuple(current[2]), previous))
        elif language in SHELL_LANGUAGES:
            for number, line in logical_lines(lines, first):
                command = strip_comment(line.strip())
                for part in split_chain(command) if command else []:
                    shown.append(Shown(doc, number, part))
    return shown


def unlabelled_shell_blocks(path: Path) -> list[int]:
    """Line numbers of unlabelled blocks that start like a command (they would escape this test)."""
    programs = {*NOT_RUN, "park", ".venv/bin/park", "make", ".venv/bin/python", ".venv/bin/pytest"}
    found = []
    for language, first, lines in fenced_blocks(path):
        words = next((line.split() for line in lines if line.strip()), [])
        if not language and words and words[0] in programs:
            found.append(first)
    return found


SHOWN = [s for path in DOCS for s in shown_in(path)]


# --- what each command is ------------------------------------------------------------------------------


ASSIGNMENT = re.compile(r"^(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*=")
SUBSTITUTION = re.compile(r"^(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*=\$\((?P<inner>[^)]*)\)")
UNCLASSIFIED = "unclassified"


@dataclass(frozen=True)
class Plan:
    """How a shown command is checked here: ``argv`` to run and what to expect, or why it is not run."""

    argv: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    expect: str = "exit 0"
    """``exit 0``, ``cluster lookup`` (exit 2 naming the kubeconfig), ``collected``, ``options OPT...``,
    ``output`` (compare with the doc), ``exit status``."""
    not_run: str | None = None


def program_of(word: str) -> str:
    return Path(word).name


def plan(shown: Shown) -> Plan:
    command = shown.command
    substitution = SUBSTITUTION.match(command)
    if substitution:
        command = substitution["inner"]
    elif ASSIGNMENT.match(command) and len(shlex.split(command)) == 1 + command.startswith("export "):
        return Plan(not_run="sets a shell variable for the commands after it")
    if command == "echo $?":
        if shown.previous is None:
            return Plan(not_run="the exit status of a command the text names outside the block")
        return Plan(expect="exit status")
    pipeline = command.split(" | ")[0]
    words = shlex.split(pipeline)
    env = []
    while words and ASSIGNMENT.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        env.append((name, value))
    if not words:
        return Plan(not_run="sets a shell variable for the commands after it")
    program, args = program_of(words[0]), words[1:]
    if program in NOT_RUN:
        return Plan(not_run=NOT_RUN[program])
    expect = "output" if shown.output is not None else "exit 0"
    if program == "park":
        subcommand = args[0] if args else ""
        kubernetes = "--target" in args and args[args.index("--target") + 1] == "kubernetes"
        if subcommand == "conformance" and "--list" in args:
            return Plan(("park", *args), tuple(env), expect)
        if subcommand == "conformance" and kubernetes:
            if expect == "exit 0" and "--dry-run" not in args:
                expect = "cluster lookup"
            return Plan(("park", *args), tuple(env), expect)
        if subcommand in PARK_RUN or (subcommand in PARK_NOT_RUN and "--dry-run" in args):
            return Plan(("park", *args), tuple(env), expect)
        if subcommand in PARK_NOT_RUN:
            positional = [a for a in args[:next((i for i, a in enumerate(args) if a.startswith("-")), len(args))]]
            return Plan(("park", *positional, "--help"), tuple(env), options_expectation(args),
                        not_run=PARK_NOT_RUN[subcommand])
        return Plan(not_run=UNCLASSIFIED)
    if program == "make":
        return Plan(("make", "-n", *args), tuple(env))
    if program == "pytest":
        return Plan(("pytest", *args, "--collect-only", "-q", "-p", "no:cacheprovider"), tuple(env), "collected")
    if program == "python" and args[:1] == ["-c"]:
        return Plan(("python", *args), tuple(env), expect)
    if program == "python" and args[:1] == ["-m"] and args[1].startswith("park.workloads."):
        return Plan(("python", "-m", args[1], "--help"), tuple(env), options_expectation(args[2:]))
    return Plan(not_run=UNCLASSIFIED)


def options_expectation(args: list[str]) -> str:
    return " ".join(["options", *(a.split("=")[0] for a in args if a.startswith("--"))])




# --- running ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    cwd: Path
    returncode: int
    output: str


def mapped(text: str, cwd: Path) -> str:
    for prefix in MAPPED_PREFIXES:
        text = text.replace(prefix, f"{cwd}/mapped{prefix}")
    return text


_RUNS: dict[tuple, Run] = {}


def run(argv: tuple[str, ...], env: tuple[tuple[str, str], ...], files: dict[str, str],
        workspace: Path) -> Run:
    """``argv`` once per session (the same command shown in two docs runs once)."""
    key = (argv, env, tuple(sorted(files.items())))
    if key in _RUNS:
        return _RUNS[key]
    cwd = workspace / f"run-{len(_RUNS):03d}"
    (cwd / "home").mkdir(parents=True)
    for prefix in MAPPED_PREFIXES:
        Path(f"{cwd}/mapped{prefix}").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (cwd / name).write_text(text)
    program = argv[0] if argv[0] == "make" else str(VENV_BIN / argv[0])
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PARK_", "PYTEST_"))}
    settings = {"HOME": str(cwd / "home"), "KUBECONFIG": str(cwd / "no-kubeconfig"), "COLUMNS": "200",
                **{k: mapped(v, cwd) for k, v in env}}
    cwd_for_program = ROOT if argv[0] in ("make", "pytest") else cwd  # make and pytest read the checkout
    args = [mapped(a, cwd) for a in argv[1:]]
    if argv[0] == "park" and (args or [""])[0] not in PARK_IN_A_FRESH_PROCESS:
        done = park_in_process(*args, cwd=cwd_for_program, env=settings, unset_prefixes=("PARK_", "PYTEST_"))
    else:
        done = subprocess.run([program, *args], cwd=cwd_for_program, env={**clean, **settings},
                              capture_output=True, text=True, timeout=600, check=False)
    result = Run(cwd, done.returncode, done.stdout + done.stderr)
    _RUNS[key] = result
    return result


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("docs-commands")


def files_shown_in(doc: str) -> dict[str, str]:
    """Files a doc shows as a block whose first line is ``# NAME.yaml``, written (that line included, so line
    numbers match what the reader sees) beside the commands that name them."""
    files: dict[str, str] = {}
    for _, _, lines in fenced_blocks(ROOT / doc) if (ROOT / doc).is_file() else []:
        if lines and re.fullmatch(r"# [\w.-]+\.ya?ml", lines[0].strip()):
            files[lines[0].strip()[2:]] = "\n".join(lines) + "\n"
    return files


def run_shown(shown: Shown, workspace: Path) -> tuple[Plan, Run]:
    p = plan(shown)
    files = {name: text for name, text in files_shown_in(shown.doc).items() if name in shown.command}
    return p, run(p.argv, p.env, files, workspace)


# --- comparing --------------------------------------------------------------------------------------------


VOLATILE = [
    (re.compile(r"\b\d{8}-\d{6}-[0-9a-f]{4,8}\b"), "<run id>"),
    (re.compile(r"\b\d+(?:\.\d+)? s\b"), "<duration> s"),
]


def normalised(text: str) -> str:
    for pattern, placeholder in VOLATILE:
        text = pattern.sub(placeholder, text)
    return text


def output_pattern(lines: list[str]) -> re.Pattern[str]:
    parts = []
    for line in lines:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.rstrip().split("...")) + r"\n")
    return re.compile("".join(parts))


def assert_shows_what_it_prints(shown: Shown, result: Run) -> None:
    printed = normalised("".join(line.rstrip() + "\n" for line in result.output.splitlines()))
    expected = [normalised(mapped(line, result.cwd)) for line in shown.output or ()]
    assert output_pattern(expected).fullmatch(printed), (
        f"{shown.doc} line {shown.line} shows for `{shown.command}`:\n" + "\n".join(shown.output or ())
        + f"\n\nbut it printed (exit {result.returncode}):\n{result.output[-4000:]}")


# --- the tests ---------------------------------------------------------------------------------------------


def test_every_command_shown_is_run_here_or_excused():
    """A command of a program this module does not know fails here: run it below, or say in NOT_RUN why not."""
    assert SHOWN, "no command found in the docs: the reader of fenced blocks is broken"
    unknown = [s.id for s in SHOWN if plan(s).not_run == UNCLASSIFIED]
    assert not unknown, "commands neither run nor excused (classify them in tests/test_docs_commands.py):\n" + \
        "\n".join(unknown)


def test_the_console_script_is_the_app_run_in_process():
    """What lets most ``park`` commands run in this process: ``.venv/bin/park`` is the entry point of the
    installed park-stack, and that entry point is ``park.cli:app``."""
    from importlib.metadata import distribution

    from park.cli import app

    assert (VENV_BIN / "park").is_file(), f"no park console script in {VENV_BIN}"
    (script,) = [e for e in distribution("park-stack").entry_points if e.group == "console_scripts" and
                 e.name == "park"]
    assert script.load() is app, script.value


def test_every_reason_not_to_run_is_still_needed():
    def shown_anywhere(program: str) -> bool:  # first word of a command, of a pipe stage or of a $(...)
        at_command = re.compile(rf"(?:^|[|(]\s*)(?:\S*/)?{re.escape(program)}(?:\s|$)")
        return any(at_command.search(s.command) for s in SHOWN)

    stale = sorted(p for p in NOT_RUN if not shown_anywhere(p))
    assert not stale, f"NOT_RUN excuses programs no doc shows any more: {stale}"


def test_no_unlabelled_block_hides_a_command():
    """An unlabelled fence would escape this test; commands go in ```bash (or ```console with output)."""
    hidden = [f"{path.relative_to(ROOT)}:{line}" for path in DOCS for line in unlabelled_shell_blocks(path)]
    assert not hidden, f"label these blocks ```bash or ```console: {hidden}"


CHECKED = [s for s in SHOWN if plan(s).argv or plan(s).expect == "exit status"]


@pytest.mark.parametrize("shown", CHECKED, ids=[s.id for s in CHECKED])
def test_shown_command_does_what_the_doc_says(shown: Shown, workspace: Path):
    p = plan(shown)
    if p.expect == "exit status":
        before = shown.previous
        if plan(before).not_run is not None:
            return  # the status of a command not run here (its reason is in NOT_RUN / PARK_NOT_RUN)
        _, result = run_shown(before, workspace)
        assert [str(result.returncode)] == [line.strip() for line in shown.output or () if line.strip()], (
            f"{shown.id}: the doc shows exit status {shown.output} for `{before.command}`, it exits "
            f"{result.returncode}")
        return
    _, result = run_shown(shown, workspace)
    where = f"{shown.doc} line {shown.line}: `{shown.command}`"
    if p.expect == "output":
        assert_shows_what_it_prints(shown, result)
    elif p.expect == "cluster lookup":
        assert result.returncode == 2 and "kubeconfig" in result.output, (
            f"{where} did not get as far as looking for its cluster (exit {result.returncode}):\n"
            f"{result.output[-1500:]}")
    elif p.expect == "collected":
        assert result.returncode == 0 and re.search(r"\b\d+(?:/\d+)? tests? collected", result.output), (
            f"{where} collects nothing (exit {result.returncode}):\n{result.output[-1500:]}")
    elif p.expect.startswith("options"):
        assert result.returncode == 0, f"{where}: --help exits {result.returncode}:\n{result.output[-1500:]}"
        missing = [o for o in p.expect.split()[1:] if o not in result.output]
        assert not missing, f"{where} uses options its --help does not list: {missing}"
    else:
        assert result.returncode == 0, f"{where} exits {result.returncode}:\n{result.output[-1500:]}"


# --- what a command's output alone does not show ----------------------------------------------------------


def test_train_readme_applies_a_file_that_park_render_writes(workspace: Path):
    """workloads/train/README.md once applied a park-train.yaml that nothing wrote."""
    shown = [s for s in SHOWN if s.doc == "workloads/train/README.md"]
    render = next((s for s in shown if re.match(r"(\.venv/bin/)?park render ", s.command)), None)
    apply = next((s for s in shown if s.command.startswith("kubectl apply --server-side -f ")), None)
    assert render and apply, "the train README shows no `park render` and `kubectl apply -f FILE` any more"
    _, result = run_shown(render, workspace)
    assert result.returncode == 0, result.output
    pattern = apply.command.split(" -f ", 1)[1].strip()
    files = sorted(result.cwd.glob(pattern))
    assert len(files) == 1, f"{pattern} matches {len(files)} rendered files: {[f.name for f in files]}"
    job = yaml.safe_load(files[0].read_text())
    meta = job["metadata"]
    assert (job["kind"], meta["namespace"], meta["name"]) == ("RayJob", "research", "park-train")


def test_benchmarks_do_not_call_a_rerun_owed_that_they_print():
    for section in (ROOT / "docs" / "benchmarks.md").read_text().split("\n## "):
        if "Quiet-machine rerun" in section:
            assert "rerun is still owed" not in section, section.splitlines()[0]


def test_readme_creates_the_stack_before_pulumi_up():
    """`pulumi stack select` fails on a fresh backend; `init` with the name of a stacks/ file picks it up."""
    readme = (ROOT / "README.md").read_text()
    provisioning = readme[readme.index("## Provisioning with Pulumi"):].split("\n## ")[0]
    commands = [s.command for s in SHOWN if s.doc == "README.md" and s.command.startswith("pulumi ")]
    assert commands and commands[0].startswith("pulumi stack init "), commands
    assert "docs/getting-started.md" in provisioning


def test_the_guide_and_the_readme_show_commands_this_module_runs():
    """Guards the reader: the getting-started guide's park commands and the README's `park cost` are among those
    checked (a change to the fences or to this parser that dropped them would otherwise pass)."""
    checked = {(s.doc, s.command) for s in CHECKED}
    assert ("README.md", ".venv/bin/park cost aws") in checked
    guide = [c for d, c in checked if d == "docs/getting-started.md" and c.startswith(".venv/bin/park ")]
    assert len(guide) >= 6, guide
    clusters = {c for c in guide if c.startswith(".venv/bin/park conformance --target kubernetes --stack ")}
    assert {c.split()[5] for c in clusters} >= {"kind", "aws", "gcp"}, f"expected kind, aws and gcp: {clusters}"


def test_a_doc_showing_other_output_fails(workspace: Path):
    """The comparison can fail: the real `park --version` against a made-up version; `...` still matches."""
    version = Shown("made-up.md", 1, ".venv/bin/park --version", ("park-stack 0.0.0-made-up",))
    _, result = run_shown(version, workspace)
    assert result.returncode == 0
    with pytest.raises(AssertionError, match="made-up.md line 1 shows"):
        assert_shows_what_it_prints(version, result)
    assert_shows_what_it_prints(Shown("made-up.md", 1, version.command, ("...",)), result)
    assert_shows_what_it_prints(Shown("made-up.md", 1, version.command, ("park... ...",)), result)
