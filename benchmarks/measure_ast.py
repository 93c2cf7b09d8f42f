"""AST measurement of a source tree: function lengths, long parameter lists, McCabe complexity.

Usage::

    python benchmarks/measure_ast.py [SRC_DIR] [--json OUT.json]

``SRC_DIR`` defaults to ``src/rgaudit``. Counted: every module-level function and every method
(nested closures are not counted on their own; their lines count towards the enclosing
function). Length = lines from ``def`` to the last line of the body, signature and docstring
included. Parameters exclude ``self``/``cls``. Complexity: ``ruff check --select C901`` (McCabe,
threshold 10, ruff's default), run with the same ruff the project lints with.

The numbers in ``docs/architecture.md`` were produced by this script (before/after the issue-15
refactor).
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

MAX_PARAMS = 6
MAX_COMPLEXITY = 10


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level functions and methods of module-level classes (not nested closures)."""
    out: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(node)
        elif isinstance(node, ast.ClassDef):
            out += [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return out


def _n_params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
    return len([n for n in names if n not in ("self", "cls")])


def _complexity(src: Path) -> list[dict]:
    """``ruff --select C901`` findings (complexity > MAX_COMPLEXITY) as dicts."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    cmd = [ruff, "check", "--no-cache", "--select", "C901", "--output-format", "json",
           "--config", f"lint.mccabe.max-complexity = {MAX_COMPLEXITY}", str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return [{"file": str(Path(r["filename"]).relative_to(src.resolve())),
             "line": r["location"]["row"], "message": r["message"]}
            for r in json.loads(res.stdout or "[]")]


def _package(path: Path, src: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix("__init__") or "rgaudit"


def import_edges(src: Path) -> dict[str, list[str]]:
    """Sub-package -> the rgaudit sub-packages it imports (top-level and lazy imports alike)."""
    edges: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.py")):
        here = _package(path, src)
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "rgaudit" and len(parts) > 1 and parts[1] != here:
                    edges.setdefault(here, set()).add(parts[1])
    return {k: sorted(v) for k, v in sorted(edges.items())}


def measure(src: Path) -> dict:
    """All measurements of the tree under ``src`` as a plain dict."""
    rows = []
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for fn in _functions(tree):
            rows.append({"file": str(path.relative_to(src)), "line": fn.lineno, "name": fn.name,
                         "lines": (fn.end_lineno or fn.lineno) - fn.lineno + 1,
                         "params": _n_params(fn)})
    lengths = np.array([r["lines"] for r in rows], dtype=float)
    many = sorted((r for r in rows if r["params"] > MAX_PARAMS), key=lambda r: -r["params"])
    cx = _complexity(src)
    return {
        "src": str(src), "n_modules": len(list(src.rglob("*.py"))), "n_functions": len(rows),
        "lines_median": float(np.median(lengths)),
        "lines_p90": float(np.percentile(lengths, 90)),
        "lines_max": int(lengths.max()),
        "n_params_gt_6": len(many),
        "params_gt_6": [f"{r['file']}:{r['line']} {r['name']} ({r['params']})" for r in many],
        "n_complexity_gt_10": len(cx),
        "complexity_gt_10": [f"{c['file']}:{c['line']} {c['message']}" for c in cx],
        "imports": import_edges(src),
        "longest": [f"{r['file']}:{r['line']} {r['name']} ({r['lines']})"
                    for r in sorted(rows, key=lambda r: -r["lines"])[:10]],
    }


def main() -> None:
    """Print the summary; optionally write the full measurement as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="?", default="src/rgaudit", type=Path)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    m = measure(args.src)
    print(f"{m['n_functions']} functions/methods in {m['n_modules']} modules under {m['src']}")
    print(f"length (lines): median {m['lines_median']:g}, p90 {m['lines_p90']:.1f}, "
          f"max {m['lines_max']}")
    print(f"functions with > {MAX_PARAMS} parameters: {m['n_params_gt_6']}")
    print(f"McCabe complexity > {MAX_COMPLEXITY} (ruff C901): {m['n_complexity_gt_10']}")
    for line in m["complexity_gt_10"]:
        print(f"  {line}")
    print("imports between sub-packages (module -> what it imports):")
    for k, v in m["imports"].items():
        print(f"  {k} -> {', '.join(v)}")
    if args.json:
        args.json.write_text(json.dumps(m, indent=1) + "\n")


if __name__ == "__main__":
    main()
