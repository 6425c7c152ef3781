"""`helm`, built from the Go module proxy at a pinned release, cached like the Temporal server.

Used to render Temporal's official chart with deploy/k8s/helm/temporal-values.yaml
(`make helm-check`). The first build compiles helm and the Kubernetes client modules it brings
(tens of minutes on a busy two-core machine); the binary is cached under
~/.cache/closeflow/helm-<version>/ ($XDG_CACHE_HOME moves it), so every later call is instant.
`python -m devstack.helm` builds it if needed and prints its path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from devstack.cluster import GO_TOOLCHAIN, ClusterError, cache_root, go_env

HELM_MODULE = "helm.sh/helm/v4"
HELM_VERSION = "v4.3.2"  # the module proxy serves it; v4 also renders charts of apiVersion v2


def helm_path(version: str = HELM_VERSION, cache: Path | None = None) -> Path:
    return (cache or cache_root()) / f"helm-{version}" / "bin" / "helm"


def build_helm(version: str = HELM_VERSION, cache: Path | None = None) -> Path:
    """The helm binary of `version`, compiled on first use and cached (instant after)."""
    done = helm_path(version, cache)
    if done.is_file():
        return done
    go = shutil.which("go")
    if go is None:
        raise ClusterError("the Go toolchain is not installed (`go` is not on PATH)")
    root = done.parent.parent.parent
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"helm-{version}.", dir=root))
    try:
        argv = [go, "install", f"{HELM_MODULE}/cmd/helm@{version}"]
        result = subprocess.run(
            argv,
            env=go_env(GOBIN=str(staging / "bin")),
            cwd=staging,  # outside any module: the module builds with its own go.mod
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(
                f"`{' '.join(argv[1:])}` (GOTOOLCHAIN={GO_TOOLCHAIN}) failed with exit code "
                f"{result.returncode}:\n{result.stderr.strip()[-4000:]}"
            )
        shutil.rmtree(done.parent.parent, ignore_errors=True)  # a half-written one from a crash
        staging.rename(done.parent.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return done


if __name__ == "__main__":
    try:
        print(build_helm())
    except ClusterError as err:
        sys.exit(f"helm could not be built: {err}")
