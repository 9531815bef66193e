"""The package layout: one `ptplan` namespace, dependencies one way, no import cycles (DESIGN.md).

Folders install as `ptplan` (planner/), `ptplan.stages`, `ptplan.studies`, `ptplan.surrogates` and
`ptplan.testing` (planner/testing/). Rules, checked on every import statement (module level and
inside functions) and by importing every module in a fresh interpreter:
- ptplan.stages imports none of studies, surrogates, the planner's modules, or polars;
- ptplan.surrogates never imports torch (nor studies or the planner's modules);
- ptplan.studies never imports the planner's modules;
- no product package imports ptplan.testing;
- no import cycle among a package's modules.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"ptplan": ROOT / "planner", "ptplan.stages": ROOT / "stages", "ptplan.studies": ROOT / "studies",
           "ptplan.surrogates": ROOT / "surrogates"}
PACKAGES = ("ptplan.stages", "ptplan.studies", "ptplan.surrogates", "ptplan.testing")


def _module_files() -> dict[str, Path]:
    out = {}
    for pkg, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


MODULES = _module_files()


def _package_of(module: str) -> str:
    """The layer a module belongs to: one of PACKAGES, or `ptplan` (the planner's own modules)."""
    for pkg in PACKAGES:
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return "ptplan"


def _imports(module: str, path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import statement of a file, resolved to
    absolute names; `from X import name` also yields X.name (it may be a submodule)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    top_level = {id(n) for n in tree.body}
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: never imported at run time
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((target, id(node) in top_level))
            found += [(f"{target}.{a.name}", id(node) in top_level) for a in node.names]
    return found


def _lazy_targets(path: Path) -> list[str]:
    """Modules named in a lazy `_EXPORTS` table (`import ptplan` resolves them on first use)."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            return [v.value for v in node.value.values if isinstance(v, ast.Constant)]
    return []


FORBIDDEN = {
    "ptplan.stages": ("ptplan.studies", "ptplan.surrogates", "ptplan.testing", "ptplan._", "polars"),
    "ptplan.surrogates": ("torch", "transformers", "trl", "peft", "ptplan.studies", "ptplan.testing", "ptplan._"),
    "ptplan.studies": ("ptplan._", "ptplan.testing"),
    "ptplan": ("ptplan.testing",),
}


def _violates(target: str, banned: tuple[str, ...]) -> bool:
    return any(target == b or target.startswith(b if b.endswith("_") else b + ".") for b in banned)


def test_every_module_imports_and_nothing_generic_is_installed():
    names = sorted(MODULES)
    code = ("import importlib, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'stages', 'studies', 'surrogates', 'planner'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_run_one_way(package):
    bad = []
    for module, path in MODULES.items():
        if _package_of(module) != package:
            continue
        for target, _ in _imports(module, path):
            if _violates(target, FORBIDDEN[package]):
                bad.append(f"{path.relative_to(ROOT)}: imports {target}")
    assert not bad, "\n".join(bad)


def test_runtime_imports_follow_the_rules():
    """What each layer really loads: the training side without polars or the other layers, the
    surrogates without torch, the studies without the planner's modules."""
    checks = {
        "ptplan.stages": ("polars", "ptplan.studies", "ptplan.surrogates", "ptplan._api", "ptplan._cli"),
        "ptplan.surrogates": ("torch", "ptplan.studies", "ptplan._api"),
        "ptplan.studies": ("ptplan._api", "ptplan._cli", "ptplan._recommend", "ptplan._report"),
    }
    for package, banned in checks.items():
        mods = [m for m in MODULES if _package_of(m) == package]
        code = ("import importlib, sys\n"
                f"for name in {mods!r}: importlib.import_module(name)\n"
                f"print(','.join(sorted(m for m in sys.modules if m in {banned!r})))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == "", f"{package} loaded {out.stdout.strip()}"


def test_lazy_exports_name_modules_that_exist():
    for module, path in MODULES.items():
        for target in _lazy_targets(path):
            name = target if target.startswith("ptplan") else f"{module}.{target.lstrip('.')}"
            assert name in MODULES, f"{path.relative_to(ROOT)} exports from missing module {target}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if not state.get(m):
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if not state.get(n):
            found = visit(n)
            if found:
                return found
    return None


@pytest.mark.parametrize("package", ("ptplan",) + PACKAGES)
def test_no_import_cycles_inside_a_package(package):
    """Imports among one package's modules, including those deferred into functions, form no loop."""
    mods = {m for m in MODULES if _package_of(m) == package and not MODULES[m].name == "__init__.py"}
    graph = {m: {t for t, _ in _imports(m, MODULES[m]) if t in mods and t != m} for m in mods}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
