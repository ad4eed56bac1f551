"""Shared test fixtures: markers, the device stand-ins from ../shared/devlab, and real data availability."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: ../shared/devlab beside the checkout (EDGEKIT_DEVLAB overrides)
DEVLAB = Path(os.environ.get("EDGEKIT_DEVLAB", REPO.parent / "shared" / "devlab"))


@pytest.fixture(scope="session")
def devlab() -> Path:
    """The devlab folder, or skip with the reason."""
    if not (DEVLAB / "README.md").is_file():
        pytest.skip(f"device stand-ins not found at {DEVLAB} (set EDGEKIT_DEVLAB)")
    return DEVLAB


@pytest.fixture(scope="session")
def fashion_mnist_available() -> None:
    from edgekit.data import fashion_mnist_dir
    from edgekit.errors import DataError

    try:
        fashion_mnist_dir()
    except DataError as exc:
        pytest.skip(str(exc))


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed")
    return path
