"""Pins every third-party version in the root ``pyproject.toml``.

The workspace keeps its exact versions as ``[tool.uv] constraint-dependencies`` rather than
in a committed lock file, so the repository names no package index; every machine resolves
the same versions. ``make pins`` rewrites the list from a fresh resolution.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
BLOCK = re.compile(r"constraint-dependencies = \[\n.*?\]\n", re.S)


def main() -> None:
    uv = sys.argv[1] if len(sys.argv) > 1 else "uv"
    pyproject = ROOT / "pyproject.toml"
    text = pyproject.read_text()
    unpinned = BLOCK.sub("constraint-dependencies = []\n", text)
    pyproject.write_text(unpinned)
    try:
        subprocess.run([uv, "lock", "--upgrade"], cwd=ROOT, check=True)
    except subprocess.CalledProcessError:
        pyproject.write_text(text)
        raise
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    members = set(lock["manifest"]["members"])
    pins = sorted(f'{p["name"]}=={p["version"]}' for p in lock["package"]
                  if p["name"] not in members)
    block = "constraint-dependencies = [\n" + "".join(f'    "{pin}",\n' for pin in pins) + "]\n"
    pyproject.write_text(BLOCK.sub(block, unpinned.replace(
        "constraint-dependencies = []\n", block)))


if __name__ == "__main__":
    main()
