"""Malformed input through the real command line: every case exits 2 with one line on stderr that
names the flag, file or field at fault, no traceback, nothing in a leaderboard and (almost always)
no model loaded.

The table runs in one subprocess: a small driver calls `main(argv)` per case with its own stdin
and reports the exit code, stderr and how many backbones were loaded. A few cases also go through
`python -m autoprompt_search.cli` itself (argv bytes, stdin bytes). Then: CRLF/BOM copies of the
k-shot files read as the same data and give the same leaderboard, and the top-level guard for an
unexpected exception (one line, a log file, `--debug`).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TEST_DEVICE
from test_search import SEEDS, metric_rows, search_cli_args, search_options, write_toy_lmbff
from autoprompt_search.cli import main
from autoprompt_search.data import load_split
from autoprompt_search.prompts import build_document, write_document
from autoprompt_search.search import Leaderboard, run_pipeline
from autoprompt_search.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
BAD = b"caf\xe9"  # Latin-1 bytes: not UTF-8
GOOD_MAPPING = '{"0": "awful", "1": "wonderful"}\n'

DRIVER = r'''
import contextlib, io, json, sys
import autoprompt_search.models as models
from autoprompt_search.cli import main

loads = []
real = models.load_backbone
def counting(*args, **kwargs):
    loads.append(args[0] if args else kwargs.get("name"))
    return real(*args, **kwargs)
models.load_backbone = counting

cases = json.loads(open(sys.argv[1], encoding="utf-8").read())
results = {}
for name, case in cases.items():
    loads.clear()
    err, out = io.StringIO(), io.StringIO()
    sys.stdin = io.TextIOWrapper(io.BytesIO(case.get("stdin", "").encode("latin-1")), encoding="utf-8")
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(case["argv"])
        except SystemExit as stop:
            code = stop.code
        except BaseException as error:
            import traceback
            traceback.print_exc(file=err)
            code = "raised " + type(error).__name__
    results[name] = {"code": code, "stderr": err.getvalue(), "loads": len(loads)}
open(sys.argv[2], "w", encoding="utf-8").write(json.dumps(results))
'''


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _variant(toy: Path, root: Path, split: str, content: bytes, seed: int = SEEDS[0]) -> Path:
    """A copy of the toy folder with one k-shot file replaced."""
    shutil.copytree(toy, root)
    write(root / "k-shot" / "SST-2" / f"16-{seed}" / f"{split}.tsv", content)
    return root


def _prompt_document(model: Path) -> dict:
    candidate = {"template": get_task("SST-2").template, "label_words": {"0": "awful", "1": "wonderful"},
                 "demonstrations": "off"}
    return build_document(get_task("SST-2"), str(model), candidate, dev={13: 0.5})


def _custom_task(folder: Path, **changes) -> Path:
    write(folder / "train.csv", "text,label\nA wonderful film.,pos\nAn awful film.,neg\n")
    write(folder / "dev.csv", "text,label\nA lovely film.,pos\nA dull film.,neg\n")
    spec = {"name": "tickets-" + folder.name, "data": {"train": "train.csv", "dev": "dev.csv"},
            "text_columns": ["text"], "label_column": "label", "labels": ["neg", "pos"],
            "template": "*cls**sent_0*_It_was*mask*.*sep+*", "label_words": {"neg": "awful", "pos": "wonderful"}}
    spec.update(changes)
    return write(folder / "task.json", json.dumps(spec))


def build_cases(tmp: Path, causal: Path, mlm: Path, toy: Path) -> dict[str, tuple[dict, tuple[str, ...], bool]]:
    """name -> (case for the driver, fragments the error line must contain, whether a model may load)."""
    cases: dict[str, tuple[dict, tuple[str, ...], bool]] = {}
    out_root = tmp / "outs"

    def search(name, *extra, fragments, model=causal, data=toy, out=None, loads=False):
        args = search_cli_args(model, data, out or out_root / name, *extra)
        cases[name] = ({"argv": [str(a) for a in args]}, fragments, loads)

    def command(name, argv, fragments, stdin=b"", loads=False):
        cases[name] = ({"argv": [str(a) for a in argv], "stdin": stdin.decode("latin-1")}, fragments, loads)

    def file(name, content, suffix=".txt"):
        return write(tmp / "files" / f"{name}{suffix}", content)

    # -- template files
    for name, content, fragments in [
        ("template bad bytes", b"*cls**sent_0*_It_was*mask*.*sep+*\n" + BAD + b"*mask*\n", ("byte offset 37", "line 2")),
        ("template unknown variable", "*cls**sent_0*_It_was*mask*.*foo*\n", ("line 1", "'foo'")),
        ("template unclosed sep", "*cls**sent_0*_It_was*mask*.*sep+\n", ("line 1", "unclosed '*'")),
        ("template unbalanced brace", "{cls}{sent_0 It was{mask}.\n", ("line 1", "unbalanced brace")),
        ("template unmatched close brace", "{cls}{sent_0} It was{mask}.}\n", ("line 1", "unbalanced brace")),
        ("template labelx without demos", "*cls**sent_0*_It_was*mask*.*labelx_0**sep+*\n", ("line 1", "labelx_0")),
        ("template label index", "*cls**label_5*?*sent_0*_It_was*mask*.*sep+*\n", ("line 1", "label_5")),
        ("template no mask", "# comment\n*cls**sent_0*_It_was_great.*sep+*\n", ("line 2", "mask")),
        ("template second sentence", "*cls**sent_0*_*sent_1*_It_was*mask*.*sep+*\n", ("line 1", "sentences")),
        ("template empty variable", "*cls**sent_0*_It_was*mask***.\n", ("line 1",)),
        ("template only comments", "# nothing here\n\n", ("holds no template",)),
        ("template bare variable", "*cls*sent_0_It_was*mask*\n", ("line 1", "sent_0")),
    ]:
        path = file(name.replace(" ", "_"), content)
        search(name, "--template-file", path, fragments=(str(path), *fragments))
    search("template file missing", "--template-file", tmp / "nope.txt", fragments=(str(tmp / "nope.txt"), "does not exist"))
    search("template file is a folder", "--template-file", tmp, fragments=(str(tmp), "folder"))

    # -- mapping files
    for name, content, fragments, model in [
        ("mapping bad bytes", GOOD_MAPPING.encode() + b'{"0": "' + BAD + b'", "1": "x"}\n', ("byte 0xe9", "line 2"), causal),
        ("mapping shared word", GOOD_MAPPING + '{"0": "dull", "1": "dull"}\n', ("line 2", "share", "label '1'"), causal),
        ("mapping unknown label", '{"0": "dull", "7": "lovely"}\n', ("line 1", "unknown ['7']"), causal),
        ("mapping not json", '{"0": "dull", "1": \n', ("line 1", "not a JSON object"), causal),
        ("mapping list item", '[["dull", "lovely"]]', ("item 0",), causal),
        ("mapping empty word", '{"0": "", "1": "lovely"}\n', ("line 1", "label '0'"), causal),
        ("mapping multi-token mlm", '{"0": "awfulwonderful", "1": "lovely"}\n', ("line 1", "tokens"), mlm),
        ("mapping unknown word mlm", '{"0": "zzzqqq", "1": "lovely"}\n', ("line 1", "vocabulary"), mlm),
    ]:
        path = file(name.replace(" ", "_"), content)
        search(name, "--mapping-file", path, fragments=(str(path), *fragments), model=model)
    search("mapping file missing", "--mapping-file", tmp / "none.txt", fragments=(str(tmp / "none.txt"), "does not exist"))

    # -- config files
    for name, content, suffix, fragments in [
        ("config bad bytes", b"max_steps = 4\n# " + BAD + b"\n", ".toml", ("byte offset 19", "line 2")),
        ("config toml syntax", "max_steps = \n", ".toml", ("not valid TOML",)),
        ("config json syntax", '{"max_steps": 4,\n "lr": }\n', ".json", ("line 2", "not valid JSON")),
        ("config max_steps string", 'max_steps = "32"\n', ".toml", ("line 1", "'max_steps'", "'32'", "integer")),
        ("config lr string", 'lr = "1e-5"\n', ".toml", ("line 1", "'lr'", "'1e-5'", "number")),
        ("config test string", 'test = "no"\n', ".toml", ("'test'", "'no'", "true or false")),
        ("config seeds strings", 'seeds = ["a"]\n', ".toml", ("'seeds'", "['a']", "integers")),
        ("config seeds scalar", "seeds = 13\n", ".toml", ("'seeds'", "list")),
        ("config seeds bool", "seeds = [true]\n", ".toml", ("'seeds'", "integers")),
        ("config unknown field", "max_stepz = 4\n", ".toml", ("unknown field", "max_stepz")),
        ("config not a table", "[1, 2]\n", ".json", ("expected a table",)),
        ("config eta one", "eta = 1\n", ".toml", ("line 1", "'eta'", "> 1")),
        ("config demonstrations", 'demonstrations = ["sometimes"]\n', ".toml", ("'demonstrations'",)),
        ("config nested table", "[search]\nmax_steps = 4\n", ".toml", ("unknown field", "search")),
    ]:
        path = file(name.replace(" ", "_"), content, suffix)
        args = ["--config", path, "--task", "sst2", "--model", causal, "--data-dir", toy, "--out", out_root / name,
                "--generator", "none", "--device", TEST_DEVICE, "--quiet"]
        command(name, args, (str(path), *fragments))
    command("config missing", ["--config", tmp / "none.toml", "--task", "sst2"], (str(tmp / "none.toml"), "does not exist"))

    # -- flags
    for name, extra, fragments in [
        ("lr nan", ("--lr", "nan"), ("--lr", "nan", "finite")),
        ("lr negative", ("--lr", "-1"), ("--lr", "-1.0")),
        ("lr zero", ("--lr", "0"), ("--lr",)),
        ("eta one", ("--eta", "1"), ("--eta", "> 1")),
        ("eta half", ("--eta", "0.5"), ("--eta",)),
        ("duplicate seeds", ("--seeds", "13", "13"), ("--seeds", "distinct")),
        ("negative seed", ("--seeds", "-1"), ("--seeds",)),
        ("k zero", ("--k", "0"), ("--k",)),
        ("k not in data", ("--k", "64"), ("--k 64", "64-13")),
        ("min steps zero", ("--min-steps", "0"), ("--min-steps",)),
        ("max below min", ("--max-steps", "1"), ("--max-steps", "min_steps")),
        ("batch size zero", ("--batch-size", "0"), ("--batch-size",)),
        ("max length tiny", ("--max-length", "4"), ("--max-length",)),
        ("jobs negative", ("--jobs", "-1"), ("--jobs",)),
        ("n templates negative", ("--n-templates", "-1"), ("--n-templates",)),
        ("label k zero", ("--label-k", "0"), ("--label-k",)),
        ("filter rate", ("--filter-rate", "1.5"), ("--filter-rate",)),
        ("inference samples", ("--inference-samples", "0"), ("--inference-samples",)),
        ("test limit", ("--test-limit", "0"), ("--test-limit",)),
        ("device nonsense", ("--device", "nonsense"), ("--device", "nonsense")),
        ("device gpu index", ("--device", "cuda:99"), ("--device", "cuda:99")),
        ("k not an int", ("--k", "abc"), ("--k", "abc")),
        ("unknown flag", ("--frobnicate",), ("--frobnicate",)),
        ("strategy choice", ("--strategy", "bogus"), ("--strategy", "bogus")),
    ]:
        search(name, *extra, fragments=fragments)
    if not torch.cuda.is_available():
        search("device cuda without gpu", "--device", "cuda", fragments=("--device", "cuda", "no CUDA GPU"))
    write(tmp / "a_file", "not a folder\n")
    search("out is a file", fragments=("--out", str(tmp / "a_file"), "is a file"), out=tmp / "a_file")
    search("out under a file", fragments=("--out", str(tmp / "a_file")), out=tmp / "a_file" / "run")
    (tmp / "empty_model").mkdir()
    search("empty model folder", fragments=("--model", str(tmp / "empty_model"), "config.json"), model=tmp / "empty_model")
    search("missing model folder", fragments=("--model", "does not exist"), model=tmp / "no_model")

    # -- data files
    header = b"sentence\tlabel\n"
    plain_dev = (toy / "k-shot/SST-2/16-13/dev.tsv").read_bytes()
    for name, split, content, fragments in [
        ("dev only header", "dev", header, ("dev.tsv", "only a header")),
        ("train only header", "train", header, ("train.tsv", "only a header")),
        ("train empty", "train", b"", ("train.tsv", "empty")),
        ("row with extra field", "dev", plain_dev + b"One more film.\t1\textra\n", ("dev.tsv:", "found 3")),
        ("row missing label", "dev", plain_dev + b"One more film.\n", ("dev.tsv:", "found 1")),
        ("data bad bytes", "train", header + BAD + b" film.\t1\n", ("train.tsv", "byte 0xe9", "line 2")),
        ("unknown label", "dev", plain_dev + b"One more film.\t7\n", ("dev.tsv:", "'7'")),
        ("header lacks column", "dev", b"text\tlabel\nA film.\t1\n", ("dev.tsv", "'sentence'")),
    ]:
        data = _variant(toy, tmp / "data" / name.replace(" ", "_"), split, content)
        search(name, fragments=fragments, data=data)
    search("missing data dir", fragments=(str(tmp / "no_data"),), data=tmp / "no_data")
    small = tmp / "data" / "small_original"
    rows = "".join(f"a film number {i}\t{i % 2}\n" for i in range(20))
    write(small / "original" / "SST-2" / "train.tsv", "sentence\tlabel\n" + rows)
    write(small / "original" / "SST-2" / "dev.tsv", "sentence\tlabel\nheld out\t1\n")
    search("k larger than original", "--k", "16", fragments=("--k 16", "too small"), data=small)

    # -- tasks
    search("unknown task", fragments=("'nosuchtask'",))
    cases["unknown task"][0]["argv"][1] = "nosuchtask"
    for name, changes, raw, fragments in [
        ("task bad bytes", {}, b'{"name": "' + BAD + b'"}', ("byte 0xe9",)),
        ("task bad json", {}, b'{"name": ', ("invalid JSON",)),
        ("task unknown field", {"colour": "red"}, None, ("colour",)),
        ("task shared words", {"label_words": {"neg": "dull", "pos": "dull"}}, None, ("label_words", "share")),
        ("task bad template", {"template": "*cls**sent_0**foo**mask*"}, None, ("template", "'foo'")),
        ("task missing data", {"data": {"train": "missing.csv"}}, None, ("data.train", "missing.csv")),
        ("task labels not list", {"labels": "neg,pos"}, None, ("labels",)),
    ]:
        spec = _custom_task(tmp / "tasks" / name.replace(" ", "_"), **changes)
        if raw is not None:
            write(spec, raw)
        command(name, ["--task", spec, "--model", causal, "--out", out_root / name, "--generator", "none",
                       "--device", TEST_DEVICE, "--quiet"], (str(spec), *fragments))
    folder = tmp / "tasks" / "extra_field"
    spec = _custom_task(folder)
    write(folder / "dev.csv", "text,label\nA lovely film.,pos,extra\n")
    command("custom row with extra field", ["--task", spec, "--model", causal, "--out", out_root / "custom extra",
                                            "--generator", "none", "--device", TEST_DEVICE, "--quiet"],
            (str(folder / "dev.csv"), ":2", "found 3"))
    folder = tmp / "tasks" / "header_only"
    spec = _custom_task(folder)
    write(folder / "dev.csv", "text,label\n")
    command("custom header only", ["--task", spec, "--model", causal, "--out", out_root / "custom header",
                                   "--generator", "none", "--device", TEST_DEVICE, "--quiet"],
            (str(folder / "dev.csv"), "no dev examples"))

    # -- render, labels, generate
    render = ["render", "--task", "sst2", "--model", causal, "--data-dir", toy, "--device", TEST_DEVICE, "-n", "1"]
    for name, extra, fragments, loads in [
        ("render unknown variable", ("--template", "*cls**sent_0*_It_was*mask*.*foo*"), ("'foo'",), False),
        ("render unclosed sep", ("--template", "*cls**sent_0*_It_was*mask*.*sep+"), ("unclosed",), False),
        ("render labelx", ("--template", "*cls**sent_0*_It_was*mask*.*labelx_0*"), ("labelx_0", "no demonstrations"), False),
        ("render brace", ("--template", "{cls}{sent_0 It was{mask}."), ("unbalanced brace",), False),
        ("render shared word", ("--mapping", '{"0": "great", "1": "great"}'), ("--mapping", "share", "label '1'"), False),
        ("render mapping not json", ("--mapping", "{0: "), ("--mapping", "not a JSON object"), False),
        ("render device", ("--device", "nonsense"), ("--device",), False),
        ("render bad argv bytes", ("--template", "*cls**sent_0*_caf\udce9*mask*.*sep+*"), ("--template", "byte 0xe9"), False),
    ]:
        command(name, [*render, *extra], fragments, loads=loads)
    path = file("render_template_bytes", b"*cls**sent_0*_" + BAD + b"*mask*.\n")
    command("render template file bytes", [*render, "--template-file", path], (str(path), "byte 0xe9"))
    mlm_render = ["render", "--task", "sst2", "--model", mlm, "--data-dir", toy, "--device", TEST_DEVICE, "-n", "1"]
    command("render multi-token mlm", [*mlm_render, "--mapping", '{"0": "awfulwonderful", "1": "great"}'],
            ("awfulwonderful", "tokens"), loads=True)
    labels = ["labels", "--task", "sst2", "--model", causal, "--data-dir", toy, "--device", TEST_DEVICE]
    command("labels label k", [*labels, "--label-k", "0"], ("--label-k",))
    command("labels seed words", [*labels, "--seed-words", "{nope"], ("--seed-words",))
    command("generate beam", ["generate", "--task", "sst2", "--model", causal, "--data-dir", toy, "--beam-width", "0"],
            ("--beam-width",))

    # -- predict, leaderboard, export
    document = _prompt_document(causal)
    good = write_document(document, tmp / "prompts" / "good.json")
    inputs = write(tmp / "inputs.txt", "A wonderful film.\n")
    for name, change, fragments in [
        ("predict template string", lambda d: d.update(template="*cls**sent_0**mask*"), ("'template'",)),
        ("predict task without labels", lambda d: d["task"].pop("labels"), ("task.labels",)),
        ("predict bad template", lambda d: d["template"].update(lmbff="*cls**foo**mask*"), ("template.lmbff", "'foo'")),
        ("predict label words list", lambda d: d.update(label_words=["awful"]), ("label_words",)),
        ("predict num sentences", lambda d: d["task"].update(num_sentences="one"), ("task.num_sentences",)),
        ("predict schema version", lambda d: d.update(schema_version=99), ("schema_version",)),
    ]:
        changed = json.loads(json.dumps(document))
        change(changed)
        path = write(tmp / "prompts" / f"{name.replace(' ', '_')}.json", json.dumps(changed))
        command(name, ["predict", "--prompt", path, "--input", inputs, "--device", TEST_DEVICE], (str(path), *fragments))
    bad_prompt = write(tmp / "prompts" / "bytes.json", b'{"schema": "' + BAD + b'"}')
    command("predict prompt bytes", ["predict", "--prompt", bad_prompt, "--input", inputs], (str(bad_prompt), "byte 0xe9"))
    not_json = write(tmp / "prompts" / "not.json", "{")
    command("predict prompt not json", ["predict", "--prompt", not_json, "--input", inputs], (str(not_json), "not valid JSON"))
    command("predict prompt missing", ["predict", "--prompt", tmp / "none.json"], ("none.json", "does not exist"))
    bad_input = write(tmp / "bad_input.txt", b"A fine film.\n" + BAD + b" film\n")
    command("predict input bytes", ["predict", "--prompt", good, "--input", bad_input, "--device", TEST_DEVICE],
            (str(bad_input), "byte 0xe9", "line 2"))
    command("predict stdin bytes", ["predict", "--prompt", good, "--device", TEST_DEVICE],
            ("stdin", "byte 0xe9", "byte offset 3"), stdin=BAD + b" film\n")
    command("predict empty input", ["predict", "--prompt", good, "--device", TEST_DEVICE], ("stdin", "no text"),
            stdin=b"\n\n")
    command("predict device", ["predict", "--prompt", good, "--device", "nonsense"], ("--device",), stdin=b"x\n")
    command("predict batch size", ["predict", "--prompt", good, "--batch-size", "0"], ("--batch-size",), stdin=b"x\n")
    command("leaderboard missing", ["leaderboard", "--out", tmp / "no_search"], ("no leaderboard", "no_search"))
    command("export missing", ["export", "--out", tmp / "no_search"], ("best.json", "no_search"))
    return cases


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return write_toy_lmbff(tmp_path_factory.mktemp("lmbff"))


@pytest.fixture(scope="module")
def table(tmp_path_factory, tiny_causal_folder, tiny_mlm_folder, toy_data):
    tmp = tmp_path_factory.mktemp("malformed")
    cases = build_cases(tmp, tiny_causal_folder, tiny_mlm_folder, toy_data)
    (tmp / "cases.json").write_text(json.dumps({name: case for name, (case, _, _) in cases.items()}), encoding="utf-8")
    (tmp / "driver.py").write_text(DRIVER, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp / "cache")}
    done = subprocess.run([sys.executable, str(tmp / "driver.py"), str(tmp / "cases.json"), str(tmp / "results.json")],
                          capture_output=True, text=True, cwd=tmp, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp / "results.json").read_text(encoding="utf-8"))
    return tmp, cases, results


CASE_COUNT = 60


def _assert_one_line_error(code, stderr: str, fragments) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("search-templates: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_the_table_is_large(table):
    _, cases, _ = table
    assert len(cases) >= CASE_COUNT


def test_every_malformed_input_is_one_line_naming_what_is_wrong(table):
    tmp, cases, results = table
    failures = []
    for name, (_, fragments, may_load) in cases.items():
        result = results[name]
        try:
            _assert_one_line_error(result["code"], result["stderr"], fragments)
            assert may_load or result["loads"] == 0, f"a model was loaded ({result['loads']})"
        except AssertionError as error:
            failures.append(f"{name}: {error}")
    assert not failures, "\n".join(failures)
    assert not list((tmp / "outs").rglob("leaderboard.sqlite")), "a malformed input wrote a leaderboard"
    assert not list(tmp.rglob("search-templates-error.log"))


def test_most_cases_fail_before_any_model_loads(table):
    _, cases, results = table
    assert sum(results[name]["loads"] == 0 for name in cases) >= CASE_COUNT


# ---------------------------------------------------------------------------------------------
# Through `python -m autoprompt_search.cli` itself: argv and stdin as raw bytes


def _real_process(args: list, stdin: bytes = b"", cwd: Path | None = None, env: dict | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    argv = [sys.executable, "-m", "autoprompt_search.cli", *[a if isinstance(a, bytes) else str(a) for a in args]]
    return subprocess.run(argv, input=stdin, capture_output=True, cwd=cwd, env=env)


def test_real_entry_point_reports_non_utf8_argv_and_stdin(tiny_causal_folder, toy_data, tmp_path):
    template = b"*cls**sent_0*_" + BAD + b"*mask*.*sep+*"
    done = _real_process(["render", "--task", "sst2", "--model", tiny_causal_folder, "--data-dir", toy_data,
                          "--template", template], cwd=tmp_path)
    _assert_one_line_error(done.returncode, done.stderr.decode("utf-8", "replace"), ("--template", "byte 0xe9"))

    prompt = write_document(_prompt_document(tiny_causal_folder), tmp_path / "best.json")
    done = _real_process(["predict", "--prompt", prompt, "--device", TEST_DEVICE], stdin=b"ok\n" + BAD + b"\n",
                         cwd=tmp_path)
    _assert_one_line_error(done.returncode, done.stderr.decode(), ("stdin", "byte 0xe9", "line 2"))


def test_real_entry_point_rejects_a_bad_flag_without_writing(tiny_causal_folder, toy_data, tmp_path):
    out = tmp_path / "out"
    done = _real_process(search_cli_args(tiny_causal_folder, toy_data, out, "--lr", "nan"), cwd=tmp_path)
    _assert_one_line_error(done.returncode, done.stderr.decode(), ("--lr", "nan"))
    assert not out.exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_output_folder(tiny_causal_folder, toy_data, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = main(search_cli_args(tiny_causal_folder, toy_data, locked / "out"))
    finally:
        locked.chmod(0o700)
    assert "not writable" in _assert_one_line_error(code, capsys.readouterr().err, ("--out", str(locked)))


def test_read_only_output_folder_as_seen_by_the_check(tiny_causal_folder, toy_data, tmp_path, capsys, monkeypatch):
    """The same check where permissions cannot be taken away (root): the folder reports not writable."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != locked and real_access(path, mode, **kw))
    code = main(search_cli_args(tiny_causal_folder, toy_data, locked / "out"))
    assert "not writable" in _assert_one_line_error(code, capsys.readouterr().err, ("--out", str(locked)))
    assert not (locked / "out").exists()


# ---------------------------------------------------------------------------------------------
# CRLF and BOM files are the same data


def _rewrite_files(source: Path, target: Path, convert) -> Path:
    shutil.copytree(source, target)
    for path in target.rglob("*.tsv"):
        path.write_bytes(convert(path.read_bytes()))
    return target


CONVERSIONS = {
    "crlf": lambda data: data.replace(b"\n", b"\r\n"),
    "bom": lambda data: b"\xef\xbb\xbf" + data,
    "bom+crlf": lambda data: b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"),
}


@pytest.mark.parametrize("kind", CONVERSIONS)
def test_crlf_and_bom_kshot_files_load_as_the_same_examples(toy_data, tmp_path, kind):
    converted = _rewrite_files(toy_data, tmp_path / kind, CONVERSIONS[kind])
    assert (converted / "k-shot/SST-2/16-13/train.tsv").read_bytes() != (toy_data / "k-shot/SST-2/16-13/train.tsv").read_bytes()
    for seed in SEEDS:
        for split in ("train", "dev", "test"):
            assert load_split("SST-2", split, data_dir=converted, seed=seed) == \
                load_split("SST-2", split, data_dir=toy_data, seed=seed)


def test_crlf_and_bom_text_files_read_as_plain_ones(tmp_path):
    from autoprompt_search.prompts import load_mapping_lines, load_template_lines
    from autoprompt_search.export import read_inputs

    templates = "*cls**sent_0*_It_was*mask*.*sep+*\n{cls}{sent_0} A{mask} one.{sep+}\n"
    mappings = GOOD_MAPPING + '{"0": "dull", "1": "lovely"}\n'
    texts = "A fine film.\nA dull one.\n"
    for name, convert in CONVERSIONS.items():
        t = write(tmp_path / f"t-{name}.txt", convert(templates.encode()))
        m = write(tmp_path / f"m-{name}.txt", convert(mappings.encode()))
        i = write(tmp_path / f"i-{name}.txt", convert(texts.encode()))
        assert load_template_lines(t) == load_template_lines(write(tmp_path / "t.txt", templates))
        assert load_mapping_lines(m, get_task("SST-2")) == load_mapping_lines(write(tmp_path / "m.txt", mappings),
                                                                            get_task("SST-2"))
        assert read_inputs(i, 1) == read_inputs(write(tmp_path / "i.txt", texts), 1)
        stdin = io.TextIOWrapper(io.BytesIO(convert(texts.encode())), encoding="utf-8")
        assert read_inputs(stdin, 1, source="stdin") == read_inputs(i, 1)


def test_crlf_and_bom_kshot_files_give_the_same_leaderboard(tiny_causal_folder, toy_data, tmp_path):
    converted = _rewrite_files(toy_data, tmp_path / "converted", CONVERSIONS["bom+crlf"])
    boards = []
    for name, data in (("plain", toy_data), ("converted", converted)):
        options = search_options(tiny_causal_folder, data, tmp_path / name, strategy="exhaustive", seeds=(13,),
                                 min_steps=1, max_steps=1, test=False)
        run_pipeline(options, say=lambda *_: None)
        boards.append(metric_rows(Leaderboard(tmp_path / name / "leaderboard.sqlite")))
    assert boards[0] and boards[0] == boards[1]


# ---------------------------------------------------------------------------------------------
# The guard: an unexpected exception is one line plus a log file; --debug shows the traceback


def _break_leaderboard(monkeypatch):
    def broken(out):
        raise RuntimeError("simulated bug\nsecond line")

    monkeypatch.setattr("autoprompt_search.export.open_leaderboard", broken)


def test_unexpected_error_is_one_line_and_a_log_in_the_output_folder(tmp_path, monkeypatch, capsys):
    _break_leaderboard(monkeypatch)
    code = main(["leaderboard", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    log = tmp_path / "search-templates-error.log"
    assert "RuntimeError: simulated bug" in lines[0] and str(log) in lines[0] and "--debug" in lines[0]
    text = log.read_text(encoding="utf-8")
    assert "Traceback" in text and "simulated bug" in text and "broken" in text


def test_unexpected_error_without_an_output_folder_logs_in_the_cache(tmp_path, monkeypatch, capsys):
    _break_leaderboard(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code = main(["leaderboard", "--out", str(tmp_path / "missing" / "out")])
    err = capsys.readouterr().err
    log = tmp_path / "cache" / "autoprompt_search" / "search-templates-error.log"
    assert code == 1 and str(log) in err and len(err.strip().splitlines()) == 1
    assert "simulated bug" in log.read_text(encoding="utf-8")


def test_debug_flag_shows_the_traceback(tmp_path, monkeypatch, capsys):
    _break_leaderboard(monkeypatch)
    code = main(["leaderboard", "--out", str(tmp_path), "--debug"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "RuntimeError: simulated bug" in err
    assert not (tmp_path / "search-templates-error.log").exists()


def test_user_errors_never_reach_the_guard(tmp_path, capsys):
    code = main(["leaderboard", "--out", str(tmp_path), "--debug"])
    _assert_one_line_error(code, capsys.readouterr().err, ("no leaderboard",))
    assert not (tmp_path / "search-templates-error.log").exists()


def test_guard_through_the_real_entry_point(tmp_path):
    """A bug in a real process: exit 1 and one line naming the log (--debug is tested in process)."""
    script = ("import sys, autoprompt_search.export as e\n"
              "def broken(out): raise RuntimeError('simulated bug')\n"
              "e.open_leaderboard = broken\n"
              "from autoprompt_search.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script, "leaderboard", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and "internal error" in done.stderr
    assert "simulated bug" in (tmp_path / "search-templates-error.log").read_text(encoding="utf-8")
