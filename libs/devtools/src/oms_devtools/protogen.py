"""Generates the Python stubs of every contract under ``proto/`` into the contracts package.

``python -m oms_devtools.protogen`` writes them; ``--check`` regenerates into a scratch folder
and fails when the committed stubs differ, so stale stubs never reach main. ``--lint`` runs
``buf lint`` on a descriptor image built by protoc, which needs no network: buf's own module
resolution would fetch googleapis from a registry, while protoc finds those files in the
``googleapis-common-protos`` wheel.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import google.api
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[4]
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "libs" / "contracts" / "src"
GOOGLEAPIS_INCLUDE = Path(google.api.__path__[0]).parent.parent
BIN_DIR = Path(sys.executable).parent
WELL_KNOWN_INCLUDE = Path(grpc_tools.__file__).parent / "_proto"


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))


def _protoc(*args: str) -> None:
    argv = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{GOOGLEAPIS_INCLUDE}",
        f"-I{WELL_KNOWN_INCLUDE}",
        *args,
        *proto_files(),
    ]
    if protoc.main(argv) != 0:
        raise SystemExit("protoc failed")


def generate(out: Path) -> None:
    package_root = out / "oms"
    if package_root.exists():
        shutil.rmtree(package_root)
    out.mkdir(parents=True, exist_ok=True)
    _protoc(
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy={BIN_DIR / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN_DIR / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
    )
    for folder in [package_root, *package_root.rglob("*")]:
        if folder.is_dir():
            (folder / "__init__.py").touch()
    (package_root / "py.typed").touch()


def stale_files() -> list[str]:
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch)
        generate(fresh)
        return _differences(fresh / "oms", OUT_DIR / "oms")


def _differences(fresh: Path, committed: Path) -> list[str]:
    if not committed.exists():
        return [str(committed)]
    comparison = filecmp.dircmp(fresh, committed, ignore=["__pycache__"])
    found: list[str] = []

    def walk(cmp: filecmp.dircmp[str], prefix: str) -> None:
        found.extend(f"{prefix}{name}" for name in cmp.left_only + cmp.right_only)
        _, mismatch, errors = filecmp.cmpfiles(
            cmp.left, cmp.right, cmp.common_files, shallow=False
        )
        found.extend(f"{prefix}{name}" for name in mismatch + errors)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(comparison, "oms/")
    return found


def lint() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        image = Path(scratch) / "image.binpb"
        _protoc(f"--descriptor_set_out={image}", "--include_imports", "--include_source_info")
        buf = str(BIN_DIR / "buf")
        subprocess.run(
            [buf, "lint", str(image), "--config", str(PROTO_DIR / "buf.yaml"),
             "--path", "oms"],
            check=True,
            cwd=PROTO_DIR,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when stubs are stale")
    parser.add_argument("--lint", action="store_true", help="run buf lint")
    args = parser.parse_args()
    if args.lint:
        lint()
    elif args.check:
        stale = stale_files()
        if stale:
            raise SystemExit("stale generated stubs, run `make proto`: " + ", ".join(stale))
    else:
        generate(OUT_DIR)


if __name__ == "__main__":
    main()
