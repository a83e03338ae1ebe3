"""Fixtures shared by the bundles' tests."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="session")
def bundle_data(converted, tmp_path_factory):
    """A datalist of the tiny converted cohort with a validation and a test case."""
    out, _ = converted
    dl = json.loads((out / "datalist.json").read_text())
    cases = dl["training"] + dl["validation"] + dl["test"]
    for e in cases:
        for k in ("image", "dose", "masks", "body"):
            e[k] = str(out / e[k])
    custom = {"training": cases, "validation": cases[:1], "test": cases[1:]}
    path = tmp_path_factory.mktemp("bundle") / "datalist.json"
    path.write_text(json.dumps(custom))
    return path
