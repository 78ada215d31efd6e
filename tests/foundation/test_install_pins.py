"""Every ``pip install`` in the Makefile, the scripts, the Dockerfile and CI installs pinned versions: packages named
on the command line as ``name==version``, requirement files pinned line by line (an unpinned ``--upgrade pip`` would
install whatever the index serves that day)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "Makefile",
    ROOT / "Dockerfile",
    *sorted((ROOT / "scripts").glob("*.sh")),
    *sorted((ROOT / ".github" / "workflows").glob("*.yml")),
]
# One pip install command: up to the end of the shell command (&&, ;, |, a line end or a continuation).
INSTALL = re.compile(r"pip install\b([^\n;&|\\]*)")
# Options that take a value, which is not a package.
VALUED = {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--find-links", "-f"}
PINNED = re.compile(r"^[A-Za-z0-9_.\-\[\]]+==\d[^\s$]*$")
# $(NAME) in make, $NAME and ${NAME} in shell.
VARIABLE = re.compile(r"\$(?:\((\w+)\)|\{(\w+)\}|(\w+))")


def installs(text: str) -> list[list[str]]:
    """The arguments of every ``pip install`` run in ``text`` (comments and echoed text left out)."""
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [
        shlex.split(match.group(1))
        for line in lines
        for match in INSTALL.finditer(line)
        if "echo " not in line[: match.start()]
    ]


def unpinned(args: list[str], variables: dict[str, str]) -> list[str]:
    """The packages and requirement-file lines of one install that are not ``name==version``."""
    bad: list[str] = []
    words = iter(args)
    for word in words:
        if word in VALUED:
            value = next(words)
            if word in {"-r", "--requirement"}:
                bad += requirement_lines_unpinned(ROOT / value)
        elif not word.startswith("-"):
            spec = VARIABLE.sub(lambda m: variables.get(next(filter(None, m.groups())), m.group(0)), word)
            if not PINNED.match(spec):
                bad.append(word)
    return bad


def requirement_lines_unpinned(path: Path) -> list[str]:
    """The lines of a requirements file that name a package without ``==``."""
    bad = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip().removesuffix("\\").strip()
        if not line or line.startswith("--"):
            continue
        if not PINNED.match(line.split(";")[0].strip()):
            bad.append(f"{path.name}: {line}")
    return bad


def make_variables(text: str) -> dict[str, str]:
    """The simple ``NAME := value`` (make) and ``NAME=value`` (shell) assignments of ``text``."""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^(\w+)\s*:?=\s*(.*)$", text, re.MULTILINE)}


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_pip_install_is_pinned(source: Path) -> None:
    text = source.read_text()
    variables = make_variables(text)
    bad = [item for args in installs(text) for item in unpinned(args, variables)]
    assert not bad, f"{source.name}: unpinned install of {bad}"


def test_the_checks_see_an_unpinned_upgrade() -> None:
    assert unpinned(installs("\t$(PY) -m pip install -q --upgrade pip && \\\n")[0], {}) == ["pip"]
    assert unpinned(installs('pip install -q "pip==$(PIP_VERSION)"')[0], {"PIP_VERSION": "26.3"}) == []
    assert unpinned(installs("pip install -q pip==$(PIP_VERSION)")[0], {}) == ["pip==$(PIP_VERSION)"]
    assert unpinned(installs('pip install "pip-tools==$V"')[0], {"V": "7.6.2"}) == []
    assert unpinned(installs("pip install -q -r requirements/peer.txt")[0], {}) == []


def test_setup_installs_the_pinned_pip_before_the_requirements() -> None:
    makefile = (ROOT / "Makefile").read_text()
    pinned = make_variables(makefile)["PIP_VERSION"]
    assert re.fullmatch(r"\d+(\.\d+)+", pinned)
    setup = makefile.split("\nsetup:", 1)[1].split("\n\n", 1)[0]
    assert setup.index('"pip==$(PIP_VERSION)"') < setup.index("requirements/dev.txt")
