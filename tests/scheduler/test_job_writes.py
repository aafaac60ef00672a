"""One module owns every write of a job's status, lease, attempts, claims and run_after.

The guarantees in the README (one runner at a time, nothing strands) rest on
``envoy_django/scheduler/transitions.py``; this test fails if another module
of the package starts writing those columns, or creates or saves a Job.
"""

from __future__ import annotations

import ast
from pathlib import Path

import envoy_django

PACKAGE = Path(envoy_django.__file__).parent
OWNER = PACKAGE / "scheduler" / "transitions.py"
GUARDED = {"status", "lease_owner", "lease_expires_at", "attempts", "claims", "run_after", "enqueued_at", "slot"}
WRITES = {"update", "create", "bulk_create", "bulk_update", "get_or_create", "update_or_create", "save"}
JOB_NAMES = {"job", "child", "parent", "self.job", "held.job"}


def _chain(node: ast.AST) -> str:
    """``Job.objects.filter(...).update`` -> ``Job.objects.filter.update``."""
    parts = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            break
        else:
            break
    return ".".join(reversed(parts))


def job_writes(path: Path, root: Path = PACKAGE) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES:
            chain = _chain(node.func)
            if chain.startswith("Job.") or (node.func.attr == "save" and chain.rsplit(".", 1)[0] in JOB_NAMES):
                found.append(f"{path.relative_to(root)}:{node.lineno} {chain}")
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr in GUARDED:
                    owner = _chain(target.value)
                    if owner in JOB_NAMES:
                        found.append(f"{path.relative_to(root)}:{node.lineno} {owner}.{target.attr} =")
    return found


def test_only_transitions_writes_jobs():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == OWNER or "migrations" in path.parts:
            continue
        offenders += job_writes(path)
    assert offenders == [], "write jobs through envoy_django.scheduler.transitions:\n" + "\n".join(offenders)


def test_the_guard_sees_the_writes_it_forbids(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "Job.objects.filter(pk=1).update(status='done')\n"
        "Job.objects.create(flow='x')\n"
        "job.save(update_fields=['status'])\n"
        "self.job.lease_owner = 'me'\n"
        "wait.save()\n"
        "escalation.status = 'approved'\n"
    )
    found = job_writes(sample, tmp_path)
    places = sorted(line.split(" ", 1)[0] for line in found)
    assert places == ["sample.py:1", "sample.py:2", "sample.py:3", "sample.py:4"]
