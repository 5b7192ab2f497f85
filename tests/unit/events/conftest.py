from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.json") if p.name != "expected.json")


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def expected() -> dict[str, dict]:
    return json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
