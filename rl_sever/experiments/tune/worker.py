"""A worker process of `rl-sever tune --jobs N` (N > 1): runs trials of the study in the tune
folder until it holds enough of them or the deadline passed. Started by
rl_sever.experiments.tune.study as `python -m rl_sever.experiments.tune.worker DIR K DEADLINE`.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
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
