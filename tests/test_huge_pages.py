"""Importing the package asks PyTorch for transparent huge pages (training/memory.py), unless the user chose."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoprompt_search.training.memory import HUGE_PAGES_VARIABLE

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
# Only where huge pages go to memory that asks for them can the asking be seen.
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not THP_MODE.exists() or "[madvise]" not in THP_MODE.read_text(),
    reason="needs Linux with transparent huge pages in madvise mode")

PROBE = """
import json, os, sys
if sys.argv[1] == "package":
    import autoprompt_search
import torch
tensor = torch.ones(32 << 20)  # 128 MB, touched
with open("/proc/self/smaps_rollup") as rollup:
    huge = next(int(line.split()[1]) for line in rollup if line.startswith("AnonHugePages:"))
print(json.dumps({"variable": os.environ.get(sys.argv[2]), "huge_kb": huge}))
"""


def probe(first_import: str, **env: str) -> dict:
    environment = {key: value for key, value in os.environ.items() if key != HUGE_PAGES_VARIABLE}
    environment.update(env)
    done = subprocess.run([sys.executable, "-c", PROBE, first_import, HUGE_PAGES_VARIABLE], env=environment,
                          capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_package_backs_large_tensors_with_huge_pages():
    assert probe("torch-only")["huge_kb"] == 0  # the control: torch alone does not ask
    found = probe("package")
    assert found["variable"] == "1"
    assert found["huge_kb"] > 0


def test_a_user_who_turned_it_off_is_obeyed():
    found = probe("package", **{HUGE_PAGES_VARIABLE: "0"})
    assert found == {"variable": "0", "huge_kb": 0}
