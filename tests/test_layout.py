"""The package layout: stages import only the stages below them, through their public names; no module
imports itself back through a circle; modules stay small. Read from the source files (every import,
function-level ones included), so a violation fails here before it confuses a reader."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autoprompt_search"
# Lowest first; a package may import from packages of a lower rank (equal rank: not from each other).
RANKS = {"errors": 0, "textfiles": 0.5, "lazy": 0.5, "tasks": 1, "prompts": 2, "data": 3, "models": 4, "demonstrations": 5, "training": 6,
         "auto_template": 7, "auto_label": 7, "search": 8, "export": 9, "comparison": 9, "cli": 10, "__init__": 11}
MAX_LINES = 400
LONG_MODULE_REASON = "Longer than 400 lines because"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) for every import of this package in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "autoprompt_search":
                found.append((node.lineno, module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "autoprompt_search":
                    found.append((node.lineno, alias.name, []))
    return found


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_rank():
    stages = {_stage(name) for name in _modules()}
    assert stages <= set(RANKS), f"add these packages to RANKS and docs/DESIGN.md: {sorted(stages - set(RANKS))}"


def test_no_stage_imports_a_higher_or_sibling_stage():
    wrong = []
    for name, path in _modules().items():
        own = _stage(name)
        for line, module, _ in _imports(path):
            other = _stage(module)
            if other != own and RANKS[other] >= RANKS[own]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports {module} ({other})")
    assert not wrong, "\n".join(wrong)


def test_other_stages_are_imported_through_their_package():
    """`from ..models import X`, never `from ..models.causal import X`: a package's modules can be
    rearranged without touching its users."""
    wrong = []
    for name, path in _modules().items():
        own = _stage(name)
        for line, module, _ in _imports(path):
            other = _stage(module)
            if other != own and other not in ("errors", "textfiles", "lazy", "__init__") and module.count(".") > 1:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _, module, names in _imports(path):
            targets = {f"{module}.{n}" for n in names if f"{module}.{n}" in modules} or {module}
            # A package's __init__ only re-exports: depend on the modules it imports instead.
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_between_modules():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_are_small_or_say_why(name):
    path = _modules()[name]
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_LINES or LONG_MODULE_REASON in text[:2000], (
        f"{path.relative_to(PACKAGE.parent)} has {lines} lines; split it, or say at its top "
        f"'{LONG_MODULE_REASON} ...'")


def test_import_finder_sees_relative_and_function_level_imports(tmp_path):
    """The checks above rest on `_imports`; make sure it resolves what the package actually writes."""
    imports = _imports(PACKAGE / "training" / "classifier.py")
    modules = {module for _, module, _ in imports}
    assert "autoprompt_search.demonstrations" in modules and "autoprompt_search.training.trainer" in modules
    assert "autoprompt_search.models" in modules  # imported inside from_pretrained
