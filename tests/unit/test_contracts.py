"""The contracts: generated stubs match proto/, and buf lint is clean."""

import subprocess

from oms_devtools import protogen


def test_generated_stubs_are_fresh() -> None:
    assert protogen.stale_files() == [], "run `make proto` and commit the stubs"


def test_buf_lint_is_clean() -> None:
    try:
        protogen.lint()
    except subprocess.CalledProcessError as error:  # pragma: no cover - message for humans
        raise AssertionError("buf lint found violations (see output above)") from error
