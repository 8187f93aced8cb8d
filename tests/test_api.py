"""The README's Python example runs as written, offline, on the tiny causal LM and a toy data folder
(only the model name and the data folder are swapped in), and the package's public names exist."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import autoprompt_search

from test_search import write_toy_lmbff

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_offline(tiny_causal_folder, tmp_path):
    code = readme_example()
    assert '"smollm2-135m"' in code and len(code.strip().splitlines()) <= 10
    data = write_toy_lmbff(tmp_path / "lmbff")
    code = code.replace('"smollm2-135m"', repr(str(tiny_causal_folder)))
    env = {**os.environ, "AUTOPROMPT_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("zero-shot dev ") and lines[1].startswith("fine-tuned dev ")
    assert "[('0', {" in lines[2] or "[('1', {" in lines[2]
    assert (tmp_path / "runs" / "api-sst2" / "prompt.json").is_file()
    reloaded = autoprompt_search.PromptClassifier.from_pretrained(tmp_path / "runs" / "api-sst2", device="cpu")
    assert reloaded.task.name == "SST-2"


def test_every_public_name_resolves():
    for name in autoprompt_search.__all__:
        assert getattr(autoprompt_search, name) is not None, name
    assert set(autoprompt_search.__all__) <= set(dir(autoprompt_search))
