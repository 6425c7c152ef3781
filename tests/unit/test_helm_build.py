"""devstack/helm.py: helm from the Go module proxy, built once and cached (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.cluster import ClusterError
from devstack.helm import HELM_VERSION, build_helm, helm_path


def test_a_cached_helm_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = helm_path(HELM_VERSION, tmp_path)
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    monkeypatch.setenv("PATH", "")  # no go: a build would fail, a cached binary needs none
    assert build_helm(HELM_VERSION, tmp_path) == cached
    assert cached == tmp_path / f"helm-{HELM_VERSION}" / "bin" / "helm"


def test_without_go_the_error_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ClusterError, match="`go` is not on PATH"):
        build_helm(HELM_VERSION, tmp_path)
    assert not helm_path(HELM_VERSION, tmp_path).exists()
