"""``torch.export`` programs (``.pt2``) loaded without executing anything from the file.

``torch.export.load`` is *not* safe on untrusted files (its own docstring says so): it unpickles
pickled weights and constants with ``weights_only=False``, falls back to full unpickling of the
sample inputs when the safe loader refuses them, loads AOTInductor shared libraries, resolves
graph-node targets anywhere inside the ``torch`` namespace and parses symbolic shape
expressions with ``sympy.sympify`` (which evaluates Python). :func:`check_pt2_archive` therefore
inspects the archive's bytes first and refuses every one of these routes; only then are the
*same bytes* (never the file again, so nothing can change in between) handed to
``torch.export.load``:

- no AOTInductor payloads, shared libraries or legacy-format members;
- every pickled payload (weights, tensor constants, sample inputs) must load with
  ``torch.load(weights_only=True)`` (tensors and containers only); custom-object and opaque
  constants (arbitrary pickles) are refused;
- every graph-node target is an ``aten``/``prims`` operator or one of a few ``_operator`` /
  ``math`` / ``torch.sym_*`` arithmetic functions on sizes;
- every symbolic expression is arithmetic over size symbols (no names but ``s0``-style
  symbols and a fixed list of sympy functions, no attribute access, no strings).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from typing import Any

from rgaudit.errors import ModelFileError

#: graph-node targets allowed besides ``torch.ops.aten.*`` and ``torch.ops.prims.*``
SAFE_TARGETS = frozenset(
    [f"_operator.{n}" for n in ("getitem", "add", "sub", "mul", "truediv", "floordiv", "mod",
                                "neg", "pow", "eq", "ne", "lt", "le", "gt", "ge", "and_",
                                "or_", "not_")]
    + [f"math.{n}" for n in ("ceil", "floor", "sqrt", "trunc")]
    + [f"torch.{n}" for n in ("sym_max", "sym_min", "sym_float", "sym_int", "sym_not",
                              "sym_sqrt", "sym_ite")])
SAFE_TARGET_PREFIXES = ("torch.ops.aten.", "torch.ops.prims.")
#: aten operators that touch the file system (``from_file`` reads any file into a tensor)
DENIED_TARGET_PREFIXES = ("torch.ops.aten.from_file", "torch.ops.aten._from_file")
#: sympy function names allowed in symbolic shape expressions
SAFE_SYMPY_NAMES = frozenset({
    "Mod", "FloorDiv", "CeilDiv", "CleanDiv", "IntTrueDiv", "FloatTrueDiv", "TruncToInt",
    "Max", "Min", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "True", "False",
    "oo", "PythonMod", "ModularIndexing", "Pow", "PowByNatural", "FloatPow", "ToFloat",
    "Abs", "floor", "ceiling", "Integer", "Symbol", "sympy_max", "sympy_min", "OpaqueUnaryFn_sqrt",
    "TruncToFloat", "RoundToInt", "Identity", "Where", "CeilToInt", "FloorToInt",
    # assumptions passed to Symbol(...)
    "positive", "integer", "real", "nonnegative", "finite", "nonzero",
})
_QUOTED_SYMBOL = re.compile(r"'[a-z]+\d+'")
_SYMBOL = re.compile(r"^[a-z]+\d+$")
_EXPR_CHARS = re.compile(r"^[A-Za-z0-9_+\-*/%(),. <>=!&|~]*$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _refuse(path: str, why: str) -> ModelFileError:
    return ModelFileError(
        f"{path}: refused to load this .pt2 file: {why}. rgaudit loads only torch.export "
        "programs made of standard aten operators with plain tensor weights, so that nothing "
        "in the file can execute code; re-export the model with torch.export.export + "
        "torch.export.save (no custom objects, no AOTInductor), or use a safetensors state dict "
        "with --factory")


def _strings_under(obj: Any, keys: frozenset[str]) -> Iterator[str]:
    """Every string value stored under one of ``keys`` anywhere in a JSON tree."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            for k, v in o.items():
                if k in keys and isinstance(v, str):
                    yield v
                else:
                    stack.append(v)
        elif isinstance(o, list):
            stack.extend(o)


def _symbolic_keys(obj: Any) -> Iterator[str]:
    """Keys of every ``range_constraints`` mapping (symbol names parsed by sympy)."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "range_constraints" and isinstance(v, dict):
                    yield from (str(s) for s in v)
                stack.append(v)
        elif isinstance(o, list):
            stack.extend(o)


def safe_sym_expr(expr: str) -> bool:
    """True if ``expr`` is arithmetic over size symbols and allowed sympy functions."""
    expr = _QUOTED_SYMBOL.sub("s0", expr)          # Symbol('s31', ...) names a size symbol
    if "__" in expr or not _EXPR_CHARS.match(expr):
        return False
    for name in _IDENT.findall(expr):
        if not (_SYMBOL.match(name) or name in SAFE_SYMPY_NAMES):
            return False
    # a '.' may only appear inside numbers (e.g. 0.5), never as attribute access
    return re.search(r"[A-Za-z_)\]]\s*\.", expr) is None


def _check_weights_only(data: bytes, what: str, path: str) -> None:
    import torch

    try:
        torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any refusal of the safe unpickler is a refusal
        raise _refuse(path, f"{what} is a pickle that the safe (weights_only) loader refuses "
                      f"({type(err).__name__}); it could execute code") from None


def check_pt2_archive(data: bytes, path: str = "<pt2>") -> None:
    """Refuse a ``.pt2`` archive through which ``torch.export.load`` could execute code.

    Parameters
    ----------
    data : bytes
        The whole file.
    path : str
        For messages.

    Raises
    ------
    ModelFileError
        The archive is not a zip, has no exported program, or uses a route that executes code
        (the message says which).
    """
    zf, models = _open_archive(data, path)
    _check_member_names(zf.namelist(), path)
    _check_payloads(zf, path)
    for n in models:
        _check_program(json.loads(zf.read(n)), path)


def _open_archive(data: bytes, path: str) -> tuple[zipfile.ZipFile, list[str]]:
    """The archive and the names of its exported programs (``models/*.json``)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ModelFileError(f"{path} is not a .pt2 archive (not a zip file)") from None
    models = [n for n in zf.namelist() if re.search(r"(^|/)models/[^/]+\.json$", n)]
    if not models:
        raise ModelFileError(f"{path} holds no exported program (no models/*.json); save it "
                             "with torch.export.save")
    return zf, models


def _check_member_names(names: list[str], path: str) -> None:
    """No compiled code (AOTInductor, shared libraries) and no legacy pickled weights."""
    for n in names:
        low = n.lower()
        if "aotinductor" in low or low.endswith((".so", ".dll", ".dylib", ".pyd")):
            raise _refuse(path, f"it contains compiled code ({n})")
        if re.search(r"(^|/)(data/weights|data/constants)/[^/]+\.pt$", n):
            raise _refuse(path, f"it uses the legacy pickled weight format ({n})")


def _check_payloads(zf: zipfile.ZipFile, path: str) -> None:
    """Weights, constants and sample inputs: plain tensors the safe unpickler accepts."""
    for n in zf.namelist():
        if re.search(r"(^|/)data/(weights|constants)/[^/]+_config\.json$", n):
            _check_payload_config(zf, n, path)
        elif re.search(r"(^|/)data/sample_inputs/[^/]+$", n):
            _check_weights_only(zf.read(n), f"sample inputs {n!r}", path)


def _check_payload_config(zf: zipfile.ZipFile, name: str, path: str) -> None:
    """One ``*_config.json`` of weights or constants, and the pickled payloads it names."""
    cfg = json.loads(zf.read(name)).get("config", {})
    folder = name.rsplit("/", 1)[0]
    for fqn, meta in cfg.items():
        pname = str(meta.get("path_name", ""))
        if "/constants/" in "/" + name and not pname.startswith("tensor_"):
            raise _refuse(path, f"constant {fqn!r} is a custom or opaque Python object")
        if meta.get("use_pickle"):
            _check_weights_only(zf.read(f"{folder}/{pname}"), f"payload {fqn!r}", path)


def _check_program(tree: Any, path: str) -> None:
    """Graph-node targets are standard operators; symbolic expressions are size arithmetic."""
    for t in _strings_under(tree, frozenset({"target"})):
        if t.startswith(DENIED_TARGET_PREFIXES) or not (
                t.startswith(SAFE_TARGET_PREFIXES) or t in SAFE_TARGETS):
            raise _refuse(path, f"graph node target {t!r} is not a standard operator")
    for e in list(_strings_under(tree, frozenset({"expr_str"}))) + list(_symbolic_keys(tree)):
        if not safe_sym_expr(e):
            raise _refuse(path, f"symbolic expression {e[:60]!r} is not size arithmetic")


def load_pt2(path: str) -> Any:
    """Check (:func:`check_pt2_archive`) and load a ``.pt2`` file; returns the ExportedProgram."""
    import torch

    with open(path, "rb") as fh:
        data = fh.read()
    check_pt2_archive(data, path)
    try:
        return torch.export.load(io.BytesIO(data))
    except Exception as err:  # noqa: BLE001 - torch raises many kinds on a bad archive
        raise ModelFileError(f"{path}: torch.export.load failed: {type(err).__name__}: {err}"
                             ) from err


def user_input_shape(ep: Any) -> tuple[tuple[int | None, ...], Any]:
    """Shape of the program's single user input (None for a symbolic dim) and its dtype."""
    from torch.export.graph_signature import InputKind

    users = [s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    if len(users) != 1:
        raise ModelFileError(f"the exported program takes {len(users)} inputs; rgaudit audits "
                             "classifiers with one input tensor")
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == users[0])
    val = node.meta.get("val")
    shape = tuple(int(d) if isinstance(d, int) else None for d in val.shape)
    return shape, val.dtype
