"""docs/api.md's examples run, in order, in one namespace; `import rgaudit` stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_doc_has_examples():
    assert len(_blocks()) >= 5


@pytest.mark.slow
def test_api_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__doc_example__"}
    for i, code in enumerate(_blocks()):
        try:
            exec(compile(code, f"{DOC.name}[block {i}]", "exec"), ns)  # noqa: S102 - our docs
        except Exception as err:  # pragma: no cover - the message names the block
            raise AssertionError(f"docs/api.md block {i} failed: {err!r}\n{code}") from err
    assert (tmp_path / "my-audit" / "report.html").is_file()


def test_import_rgaudit_is_light():
    code = ("import sys, rgaudit; heavy = [m for m in ('torch', 'sklearn', 'matplotlib', "
            "'numpy') if m in sys.modules]; print(heavy); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_resolve():
    import rgaudit

    for name in rgaudit.__all__:
        assert getattr(rgaudit, name) is not None
    with pytest.raises(AttributeError):
        rgaudit.not_a_name  # noqa: B018
