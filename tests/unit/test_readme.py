"""The README documents what exists: every setting, every make target it names."""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_settings_table() -> None:
    rows = set(re.findall(r"^\| `(CLOSEFLOW_[A-Z0-9_]+)` \|", README, re.M))
    fields = {f"CLOSEFLOW_{name.upper()}" for name in Settings.model_fields}
    assert fields - rows == set(), "settings missing from README"
    assert rows - fields == set(), "README documents settings that do not exist"


def test_make_targets_named_in_the_readme_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z-]+)`", README))
    assert named and named <= targets, named - targets
