"""What tests/unit/test_forks.py forks: writes what it sees of itself to the file named by its
first argument, then exits with the code in its second, kills itself (`kill`) or waits to be
stopped (`wait`)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def main() -> None:
    report, how = Path(sys.argv[1]), sys.argv[2]
    seen = {
        "pid": os.getpid(),
        "argv": sys.argv[1:],
        "probe": os.environ.get("PROBE"),
        "cwd": os.getcwd(),
        "main": __name__,
    }
    report.write_text(json.dumps(seen))
    print("to stderr", file=sys.stderr, flush=True)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "wait":
        time.sleep(600)
    sys.exit(int(how))


if __name__ == "__main__":
    main()
