"""The package's imports run one way: each folder imports only its own modules and the layers below it.

The walk reads every module under effdet_video/ with `ast` (nothing is imported), so it sees imports
inside functions and under TYPE_CHECKING as well as module-level ones, relative and absolute.
"""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
from typing import Iterator

PACKAGE = "effdet_video"
ROOT = pathlib.Path(__file__).resolve().parent.parent / PACKAGE

# Top to bottom. A module may import its own layer and any layer in a later row; the layers of one row
# are peers and import neither each other nor anything above. `effdet_video` is the package's own
# __init__ (the version); `cli` and `errors` are the modules effdet_video/cli.py and errors.py.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("commands",),
    ("demo",),
    ("bench", "training"),
    ("pipeline",),
    ("sinks",),
    ("stages",),
    ("sources",),
    ("tracking",),
    ("engine",),
    ("models",),
    ("ops",),
    ("configs",),
    ("core", "errors", PACKAGE),
)
RANK = {layer: row for row, layers in enumerate(LAYERS) for layer in layers}


def module_name(path: pathlib.Path) -> str:
    """effdet_video/stages/infer.py -> effdet_video.stages.infer; a package's __init__.py -> the package."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether `name` (effdet_video.x.y) is a module or package of the source tree."""
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or path.is_dir()


def imported_modules(source: str, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """(imported effdet_video module, line) for every import in `source`, the code of `module`. A name
    taken from a package (`from effdet_video.core import frames`) counts as its submodule when it is one."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            origin = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{origin}.{alias.name}" if is_module(f"{origin}.{alias.name}") else origin
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                yield target, node.lineno


def layer_of(module: str) -> str:
    """The layer of a module: its folder under effdet_video/, or the top-level module's own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def package_modules() -> Iterator[tuple[pathlib.Path, str]]:
    """(path, module name) of every module of the package, in path order."""
    for path in sorted(ROOT.rglob("*.py")):
        yield path, module_name(path)


def test_every_module_has_a_layer() -> None:
    unplaced = sorted({layer_of(module) for _, module in package_modules()} - RANK.keys())
    assert not unplaced, f"folders or modules missing from LAYERS: {unplaced}"


def test_imports_point_down() -> None:
    upward = []
    for path, module in package_modules():
        source = path.read_text(encoding="utf-8")
        for target, line in imported_modules(source, module, path.name == "__init__.py"):
            importer, imported = layer_of(module), layer_of(target)
            if importer != imported and RANK[imported] <= RANK[importer]:
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target} ({importer} -> {imported})")
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_the_walk_sees_relative_and_nested_imports() -> None:
    source = ("from . import infer\nfrom .canvas import GpuFrame\nfrom ..core.frames import FrameRecord\n"
              "import numpy\n\ndef later():\n    from effdet_video.pipeline import runner\n")
    found = sorted(imported_modules(source, f"{PACKAGE}.stages.track", is_package=False))
    assert found == [(f"{PACKAGE}.core.frames", 3), (f"{PACKAGE}.pipeline.runner", 7),
                     (f"{PACKAGE}.stages.canvas", 2), (f"{PACKAGE}.stages.infer", 1)]


def test_core_imports_without_torch() -> None:
    """The bottom layer is light: the frame record and run control load without torch or OpenCV."""
    core = [module for _, module in package_modules() if layer_of(module) == "core"]
    code = f"import sys\nimport {', '.join(core)}\nprint(sorted({{'torch', 'cv2'}} & sys.modules.keys()))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT.parent).stdout.strip()
    assert loaded == "[]", f"importing {core} loaded {loaded}"
