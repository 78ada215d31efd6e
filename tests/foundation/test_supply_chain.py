"""The CI workflow runs with least privilege and actions pinned by commit; the image runs its code read-only."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.unit

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# A full 40-hex commit, and the release it is as a comment (for readers and for Dependabot).
PINNED_ACTION = re.compile(r"^\s*-?\s*uses:\s*[\w.-]+/[\w./-]+@[0-9a-f]{40}\s+#\s*v\d+(\.\d+)*\s*$")


def load(path: Any) -> dict[Any, Any]:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_token_can_only_read_the_code(workflow: Any) -> None:
    spec = load(workflow)
    assert spec.get("permissions") == {"contents": "read"}
    for name, job in spec["jobs"].items():
        # A job may narrow the top-level grant, never widen it.
        assert set((job.get("permissions") or {}).values()) <= {"read", "none"}, name


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_actions_are_pinned_by_commit(workflow: Any) -> None:
    lines = [line for line in workflow.read_text().splitlines() if re.match(r"^\s*-?\s*uses:", line)]
    assert lines
    unpinned = [line.strip() for line in lines if not PINNED_ACTION.match(line)]
    assert not unpinned, unpinned


def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_image_code_is_owned_by_root_and_read_only_to_the_app_user() -> None:
    steps = dockerfile_instructions()
    user = next(i for i, step in enumerate(steps) if step.startswith("USER "))
    assert steps[user] != "USER root"
    before = " ".join(steps[:user])
    # The code is never handed to the app user: no recursive chown of /app, no COPY --chown.
    assert not re.search(r"chown\s+(-R\s+)?\S+\s+/app/?(\s|$)", before), before
    # Files the build context had group- or world-writable lose that.
    assert re.search(r"chmod\s+-R\s+go-w\s+/app(\s|$)", before), before
    assert not any(step.startswith("COPY") and "--chown" in step for step in steps)
    # Nothing after USER makes the code writable again.
    assert not any(re.search(r"\bch(own|mod)\b", step) for step in steps[user + 1 :])
    # Only the directories the app writes (history and model caches, the simulator's state) are its own.
    owned = re.findall(r"chown\s+(?:-R\s+)?app\S*\s+([^&;]+)", before)
    assert owned, "the writable directories are given to the app user"
    writable = {path for group in owned for path in group.split()}
    assert writable == {"/app/.cache", "/state"}, writable


def test_image_base_is_a_python_311_image() -> None:
    base = next(step for step in dockerfile_instructions() if step.startswith("FROM "))
    assert re.match(r"FROM python:3\.11-slim-bookworm(@sha256:[0-9a-f]{64})?$", base), base
