"""Replay buffer for off-policy agents: preallocated NumPy storage, uniform sampling, n-step returns
(docs/offpolicy.md#replay-buffer-checkpoints-resume).

Storage is `[rows, n_envs, ...]`, one row per vector-env step, so n-step windows follow one
sub-env's own time line. `next_obs` is the observation actually reached (`info["final_obs"]` at
an episode end under SAME_STEP autoreset), so truncated episodes bootstrap from their true last
state. With `share_frames` (image observations) each observation is stored once: row t's next
observation is row t + 1's of the same sub-env, except where they differ (an episode's true final
observation; a break such as a resume: kept explicitly, checked on every `add`) and for the
newest row (kept aside). Batches equal the full layout's at half the observation memory.
`save` / `load`: one `.npy` per array (filled rows) plus `meta.json`, never pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rl_sever.core.batch import Action, Float, Obs, typed_batch
from rl_sever.core.resources import check_fits
from rl_sever.core.rollout import Step
from rl_sever.errors import CheckpointError, ConfigError

META_FILE = "meta.json"
REPLAY_PREFIX = "replay-"
_FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated", "dones")


@typed_batch
class Transitions(NamedTuple):
    """A sampled off-policy batch, from the NumPy or the in-graph replay buffer to the compiled
    update ([batch, ...]; [gradient_steps, batch, ...] for one whole update), which takes it as
    one nested argument. `rewards` and `next_obs` span the n-step window and `discounts` is
    gamma**steps spanned, so the TD target is rewards + discounts * (1 - terminated) * V(next_obs).
    `step_rewards` / `step_next_obs` hold the single step under n-step returns when auxiliary
    losses need it, and are () (absent) otherwise. Reads like a mapping of its present fields."""

    obs: Obs
    actions: Action
    rewards: Float
    next_obs: Obs
    terminated: Float
    discounts: Float
    step_rewards: Float = ()
    step_next_obs: Obs = ()


def replay_rows(capacity: int, n_envs: int, n_step: int) -> int:
    """Rows of a replay buffer holding `capacity` transitions of `n_envs` sub-envs (one row per
    vector step, rounded up); ConfigError on sizes no buffer can have."""
    if capacity < 1 or n_envs < 1:
        raise ConfigError(f"replay capacity and n_envs must be positive, got {capacity}, {n_envs}")
    if n_step < 1:
        raise ConfigError(f"n_step must be >= 1, got {n_step}")
    return -(-int(capacity) // int(n_envs))


def _zeros(shape, dtype, lead: tuple):
    """Storage of `lead` observations (a Dict observation's: key -> array)."""
    if isinstance(shape, dict):
        return {k: np.zeros((*lead, *s), dtype[k]) for k, s in shape.items()}
    return np.zeros((*lead, *shape), dtype)


def _take(array, t, e):
    """Rows t of sub-envs e (each key of a Dict observation)."""
    return {k: a[t, e] for k, a in array.items()} if isinstance(array, dict) else array[t, e]


def _tree(fn, *xs):
    """`fn` over the arrays of a Dict observation's values (key by key), or over arrays."""
    if isinstance(xs[0], dict):
        return {k: fn(*(x[k] for x in xs)) for k in xs[0]}
    return fn(*xs)


def _named(name: str, value) -> dict[str, np.ndarray]:
    """The saved arrays of `value`: `name`, or `name.<key>` for a Dict observation's."""
    return {f"{name}.{k}": a for k, a in value.items()} if isinstance(value, dict) else {name: value}


def _put(array, t, value) -> None:
    if isinstance(array, dict):
        for k, a in array.items():
            a[t] = value[k]
    else:
        array[t] = value


def replay_bytes_per_transition(obs_shape, obs_dtype, action_shape, action_dtype,
                                share_frames: bool) -> int:
    """Memory of one stored transition: the observation (twice without share_frames), the
    action, the reward and two flags."""
    if isinstance(obs_shape, dict):  # a Dict observation: every key in its dtype, its images once
        return sum(int(np.prod(s, dtype=np.int64)) * np.dtype(obs_dtype[k]).itemsize
                   * (1 if share_frames and len(s) == 3 else 2) for k, s in obs_shape.items()) \
            + int(np.prod(action_shape, dtype=np.int64)) * np.dtype(action_dtype).itemsize + 6
    obs = int(np.prod(obs_shape, dtype=np.int64)) * np.dtype(obs_dtype).itemsize
    action = int(np.prod(action_shape, dtype=np.int64)) * np.dtype(action_dtype).itemsize
    return obs * (1 if share_frames else 2) + action + 4 + 2


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions from a vector env with `n_envs` sub-envs.

    `capacity` counts transitions over all sub-envs (rounded up to a multiple of n_envs).
    `sample(batch_size)` draws uniformly with replacement from every stored transition; with
    `n_step > 1` each sample is folded into an n-step transition (see `sample`).
    """

    row_fields = _FIELDS  # the arrays with one row per vector step (saved by filled rows)

    def __init__(self, capacity: int, n_envs: int, obs_shape: tuple[int, ...], obs_dtype,
                 action_shape: tuple[int, ...], action_dtype=np.float32, *, n_step: int = 1,
                 gamma: float = 0.99, seed: int | None = 0, share_frames: bool = False):
        self.n_envs = int(n_envs)
        # A Dict observation shares the frames of its image keys only (`shared`); its other
        # keys keep their next observations in `next_obs`.
        self.shared = None
        if share_frames and isinstance(obs_shape, dict):
            self.shared = [k for k, s in obs_shape.items()
                           if len(s) == 3 and np.dtype(obs_dtype[k]) == np.uint8]
            share_frames = bool(self.shared)
        self.share_frames = bool(share_frames)
        self.rows = replay_rows(capacity, n_envs, n_step)
        self.n_step, self.gamma = int(n_step), float(gamma)
        r, n = self.rows, self.n_envs
        per_transition = replay_bytes_per_transition(obs_shape, obs_dtype, action_shape,
                                                     action_dtype, share_frames)
        # np.zeros maps pages lazily: an unfilled buffer costs little until it fills, so the
        # full size is checked now rather than met as a MemoryError hours into the run.
        what = (f"Dict observations {obs_shape}" if isinstance(obs_shape, dict)
                else f"{np.dtype(obs_dtype).name} observations {tuple(obs_shape)}")
        check_fits(r * n * per_transition, f"the replay buffer ({r * n:,} transitions of "
                   f"{what})", "buffer_size", per_transition)
        self.nbytes = r * n * per_transition  # also about what a save of it writes when full
        self.obs = _zeros(obs_shape, obs_dtype, (r, n))
        self.next_obs = None if share_frames else _zeros(obs_shape, obs_dtype, (r, n))
        if self.shared is not None:  # the Dict's other keys
            self.next_obs = {k: np.zeros((r, n, *s), obs_dtype[k])
                             for k, s in obs_shape.items() if k not in self.shared}
        # share_frames: the newest row's next observations, and the (row, env) -> next
        # observation entries that differ from the following row's observation.
        self.latest_next = (_zeros(self._shared_part(obs_shape), self._shared_part(obs_dtype),
                                   (n,)) if share_frames else None)
        self.explicit: dict[tuple[int, int], np.ndarray] = {}
        # Where `explicit` has an entry: sampling looks up only those (not every sample).
        self.kept = np.zeros((r, n), bool) if share_frames else None
        self.actions = np.zeros((r, n, *action_shape), action_dtype)
        self.rewards = np.zeros((r, n), np.float32)
        self.terminated = np.zeros((r, n), bool)
        self.dones = np.zeros((r, n), bool)  # terminated or truncated: where n-step windows stop
        self.pos, self.full = 0, False
        self.rng = np.random.default_rng(seed)

    # -- writing ---------------------------------------------------------------------------
    def add(self, step: Step) -> None:
        """Store one vector-env step (arrays with a leading n_envs axis)."""
        obs, actions, rewards, terminated, truncated, next_obs = step[:6]
        t = self.pos
        if self.share_frames:
            self._share(t, obs, next_obs)
            if self.next_obs:  # a Dict observation's keys that are not shared
                _put(self.next_obs, t, next_obs)
        else:
            _put(self.next_obs, t, next_obs)
        _put(self.obs, t, obs)
        self.actions[t] = actions
        self.rewards[t] = rewards
        self.terminated[t] = terminated
        self.dones[t] = np.logical_or(terminated, truncated)
        self.pos = (t + 1) % self.rows
        self.full = self.full or self.pos == 0

    def _shared_part(self, x):
        """What frame sharing covers of `x`: all of it, or a Dict's image keys."""
        return x if self.shared is None else {k: x[k] for k in self.shared}

    def _share(self, t: int, obs, next_obs) -> None:
        obs, latest = self._shared_part(obs), self.latest_next
        if self.filled_rows:  # the newest row's successor is this one, where obs continues
            newest = (t - 1) % self.rows
            for e in range(self.n_envs):
                if not all(np.array_equal(a[e], b[e]) for a, b in (
                        zip(obs.values(), latest.values()) if self.shared else [(obs, latest)])):
                    self.explicit[(newest, e)] = _tree(lambda a: a[e].copy(), latest)  # noqa: B023
                    self.kept[newest, e] = True
        for e in np.flatnonzero(self.kept[t]):  # row t is overwritten
            del self.explicit[(t, int(e))]
        self.kept[t] = False
        _tree(lambda dst, src: dst.__setitem__(slice(None), src), latest,
              self._shared_part(next_obs))

    def next_observations(self, t: np.ndarray, e: np.ndarray) -> np.ndarray:
        """The observations reached from rows `t` of sub-envs `e`."""
        if not self.share_frames:
            return _take(self.next_obs, t, e)
        out = _take(self._shared_part(self.obs), (t + 1) % self.rows, e)
        newest = t == (self.pos - 1) % self.rows
        _tree(lambda o, latest: o.__setitem__(newest, latest[e[newest]]), out, self.latest_next)
        for i in np.flatnonzero(self.kept[t, e]):
            _tree(lambda o, x: o.__setitem__(i, x), out,  # noqa: B023
                  self.explicit[(int(t[i]), int(e[i]))])
        if self.shared is None:
            return out
        out.update(_take(self.next_obs, t, e))
        return {k: out[k] for k in self.obs}  # the observation's key order

    def cut_episodes(self, envs) -> None:
        """The episodes running on sub-envs `envs` stopped without a last step (their env
        runner died): the newest row of each counts as truncated."""
        if self.filled_rows:
            self.dones[(self.pos - 1) % self.rows, list(envs)] = True

    @property
    def filled_rows(self) -> int:
        return self.rows if self.full else self.pos

    def __len__(self) -> int:
        """Number of stored transitions (over all sub-envs)."""
        return self.filled_rows * self.n_envs

    @property
    def capacity(self) -> int:
        return self.rows * self.n_envs

    # -- sampling --------------------------------------------------------------------------
    def sample_indices(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, env) index arrays of `batch_size` transitions, uniform with replacement."""
        rows = self.filled_rows
        if rows == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return self.rng.integers(0, rows, batch_size), self.rng.integers(0, self.n_envs, batch_size)

    def sample(self, batch_size: int, *, one_step: bool = False) -> Transitions:
        """A uniform batch (Transitions; `terminated` as float 0/1).

        An n-step window stops early at an episode end (terminated or truncated: a truncated
        window bootstraps from the true final obs) and at the newest stored step. With
        `one_step` and n_step > 1 the single step is added too (step_rewards, step_next_obs).
        """
        t, e = self.sample_indices(batch_size)
        return self.gather(t, e, one_step=one_step)

    def gather(self, t: np.ndarray, e: np.ndarray, *, one_step: bool = False) -> Transitions:
        """The batch at the given (row, env) indices (see `sample`)."""
        obs, actions = _take(self.obs, t, e), self.actions[t, e]
        if self.n_step == 1:
            return Transitions(obs, actions, self.rewards[t, e], self.next_observations(t, e),
                               self.terminated[t, e].astype(np.float32),
                               np.full(t.shape, self.gamma, np.float32))
        # Later steps available in each sample's row: t itself up to the newest row (pos - 1).
        ahead = (self.pos - 1 - t) % self.rows
        ret, alive = np.zeros(t.shape, np.float64), np.ones(t.shape, bool)
        last, span = t.copy(), np.zeros(t.shape, np.int64)
        for k in range(self.n_step):
            idx = (t + k) % self.rows
            ret += np.where(alive, self.gamma**k * self.rewards[idx, e], 0.0)
            last = np.where(alive, idx, last)
            span += alive
            alive = alive & ~self.dones[idx, e] & (k + 1 <= ahead)
        step = (self.rewards[t, e], self.next_observations(t, e)) if one_step else ((), ())
        return Transitions(obs, actions, ret.astype(np.float32), self.next_observations(last, e),
                           self.terminated[last, e].astype(np.float32),
                           (self.gamma**span).astype(np.float32), *step)

    # -- persistence -----------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        """What a save holds: the row arrays in use and, with share_frames, the next
        observations kept aside (saved whole, not by rows)."""
        if not self.share_frames:  # a Dict observation's arrays as <field>.<key>
            out = {}
            for name in self.row_fields:
                value = getattr(self, name)
                out.update({f"{name}.{k}": a for k, a in value.items()}
                           if isinstance(value, dict) else {name: value})
            return out
        keys = sorted(self.explicit)
        kept = [self.explicit[k] for k in keys]
        rows = {}
        for name in self.row_fields:  # next_obs: only a Dict's keys that are not shared
            if name != "next_obs" or self.shared is not None:
                rows.update(_named(name, getattr(self, name)))
        explicit = _tree(lambda latest, *xs: (np.stack(xs) if xs else
                                               np.zeros((0, *latest.shape[1:]), latest.dtype)),
                         self.latest_next, *kept)
        return {**rows, **_named("latest_next", self.latest_next),
                "explicit_rows": np.array([t for t, _ in keys], np.int64),
                "explicit_envs": np.array([e for _, e in keys], np.int64),
                **_named("explicit_next", explicit)}

    def save(self, directory: str | Path) -> Path:
        """Write the filled rows and the sampler state into `directory` (no pickle)."""
        directory = Path(directory)
        tmp = directory.with_name(directory.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        rows = self.filled_rows
        for name, data in self._arrays().items():
            np.save(tmp / f"{name}.npy", data[:rows] if _row(name, self.row_fields) else data,
                    allow_pickle=False)
        meta = {"rows": self.rows, "n_envs": self.n_envs, "pos": self.pos, "full": self.full,
                "filled_rows": rows, "n_step": self.n_step, "share_frames": self.share_frames,
                "rng_state": _jsonable_rng_state(self.rng)}
        (tmp / META_FILE).write_text(json.dumps(meta))  # written last: marks a complete save
        if directory.exists():
            _remove_tree(directory)
        tmp.replace(directory)
        return directory

    def load(self, directory: str | Path) -> None:
        """Restore contents saved by `save` into this (identically shaped) buffer."""
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise CheckpointError(f"{directory} holds no complete replay buffer (no {META_FILE})")
        meta = json.loads(meta_path.read_text())
        if meta["rows"] != self.rows or meta["n_envs"] != self.n_envs:
            raise CheckpointError(f"saved replay buffer has {meta['rows']} rows x {meta['n_envs']} "
                                  f"envs, this one {self.rows} x {self.n_envs}: buffer_size or "
                                  "n_envs changed")
        if bool(meta.get("share_frames", False)) != self.share_frames:
            raise CheckpointError(f"saved replay buffer has share_frames="
                                  f"{meta.get('share_frames', False)}, this one "
                                  f"{self.share_frames}: the observation space changed")
        rows = int(meta["filled_rows"])
        loaded = {}
        for name, target in self._arrays().items():
            data = np.load(directory / f"{name}.npy", allow_pickle=False)
            if not _row(name, self.row_fields):
                loaded[name] = data
                continue
            if data.shape[1:] != target.shape[1:] or data.shape[0] != rows:
                raise CheckpointError(f"saved replay array {name} has shape {data.shape}, expected "
                                      f"({rows}, {', '.join(map(str, target.shape[1:]))})")
            target[:rows] = data
        if self.share_frames:
            saved = (lambda name: loaded[name] if self.shared is None  # noqa: E731
                     else {k: loaded[f"{name}.{k}"] for k in self.shared})
            _tree(lambda dst, src: dst.__setitem__(slice(None), src), self.latest_next,
                  saved("latest_next"))
            explicit = saved("explicit_next")
            self.explicit = {(int(t), int(e)): _tree(lambda a: a[i], explicit)  # noqa: B023
                             for i, (t, e) in enumerate(zip(loaded["explicit_rows"],
                                                            loaded["explicit_envs"]))}
            self.kept[:] = False
            self.kept[loaded["explicit_rows"], loaded["explicit_envs"]] = True
        self.pos, self.full = int(meta["pos"]), bool(meta["full"])
        self.rng.bit_generator.state = meta["rng_state"]


def _row(name: str, row_fields) -> bool:
    """Whether the saved array `name` (a Dict observation's: <field>.<key>) has one row per step."""
    return name.split(".", 1)[0] in row_fields


def replay_dir(checkpoint_dir: str | Path, step: int) -> Path:
    """Where the buffer of checkpoint `ckpt-<step>` lives: `<checkpoint_dir>/replay-<step>`.
    It is written before the checkpoint, so a checkpoint never exists without its buffer."""
    return Path(checkpoint_dir) / f"{REPLAY_PREFIX}{int(step)}"


def prune_replays(checkpoint_dir: str | Path, kept: list[str]) -> None:
    """Delete the buffers of checkpoints no longer `kept` by the manager, and the leftovers of
    saves cut short (a `.tmp` folder, a buffer whose checkpoint was never written)."""
    keep = {_number(Path(p)) for p in kept}
    for old in Path(checkpoint_dir).glob(f"{REPLAY_PREFIX}*"):
        if old.name[len(REPLAY_PREFIX) :] not in keep:
            _remove_tree(old)


def load_replay_for(replay: ReplayBuffer, checkpoint_path: str) -> bool:
    """Load the buffer saved with checkpoint `checkpoint_path`; False if there is none."""
    path = Path(checkpoint_path)
    directory = replay_dir(path.parent, int(_number(path)))
    if not directory.is_dir():
        return False
    replay.load(directory)
    return True


def _number(checkpoint: Path) -> str:
    return checkpoint.name.rsplit("-", 1)[-1]


def _jsonable_rng_state(rng: np.random.Generator) -> dict:
    # PCG64's state is a dict of (big) ints and strings: JSON holds it exactly.
    return json.loads(json.dumps(rng.bit_generator.state))


def _remove_tree(path: Path) -> None:
    for child in path.iterdir():
        _remove_tree(child) if child.is_dir() else child.unlink()
    path.rmdir()
