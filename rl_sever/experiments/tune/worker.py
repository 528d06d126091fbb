"""A worker process of `rl-sever tune --jobs N` (N > 1): runs trials of the study in the tune
folder until it holds enough of them or the deadline passed. Started by
rl_sever.experiments.tune.study as `python -m rl_sever.experiments.tune.worker DIR K DEADLINE`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def die_with(parent: int) -> bool:
    """Linux: SIGKILL this worker when `parent` (the tune's process) dies, even by kill -9, so
    --resume finds every running trial stale. False when the parent is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    return os.getppid() == parent


def main(argv: list[str]) -> int:
    if len(argv) > 3 and not die_with(int(argv[3])):
        return 1  # the tune died before this worker started
    from rl_sever.core.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    from rl_sever.errors import RLSeverError
    from rl_sever.experiments.tune.study import load_study, read_settings, settings_of
    from rl_sever.experiments.tune.trial import work

    folder, worker = Path(argv[0]), int(argv[1])
    deadline = float(argv[2]) if len(argv) > 2 and argv[2] else None
    record = read_settings(folder)
    study = load_study(folder, record, worker)
    try:
        work(study, settings_of(record, folder, deadline), log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        return 130
    except RLSeverError as e:
        print(f"error: {e}", flush=True)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
