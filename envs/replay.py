"""Record evaluation episodes as MP4s by replaying their actions in a child process without
TensorFlow, whose LLVM symbols break Mesa's OpenGL (tensorflow/tensorflow#109933; docs/cli.md).
Child: `python -m envs.replay SPEC.json` (SPEC: see `record_videos`) prints {"returns": [...]}."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from envs.errors import RLSeverError

VIDEO_EXTRA = "pip install 'rl_sever[video]'"


def record_videos(env_id: str, seed: int, episodes: list[np.ndarray], video_dir: str | Path, *,
                  prefix: str, atari: dict[str, Any] | None = None,
                  timeout: float | None = None) -> dict[str, Any]:
    """Replay `episodes` (each an array of the actions taken, in order) in env `env_id` reset
    with `seed` once, then without a seed after each episode (as a vector env's autoreset
    does), recording episode i as `<video_dir>/<prefix>-episode-<i>.mp4`.

    Returns {"videos": [paths], "returns": [replayed return per episode]}."""
    video_dir = Path(video_dir)
    if video_dir.exists() and not video_dir.is_dir():
        raise RLSeverError(f"the video folder {video_dir} is a file")
    try:
        video_dir.mkdir(parents=True, exist_ok=True)
        for old in video_dir.glob(f"{prefix}-episode-*.mp4"):  # no stale episodes mixed in
            old.unlink()
    except OSError as e:
        raise RLSeverError(f"cannot write videos into {video_dir}: {e.strerror or e}") from None
    with tempfile.TemporaryDirectory(prefix="rl_sever_replay_") as tmp:
        actions = Path(tmp) / "actions.npz"
        np.savez(actions, **{f"episode_{i}": np.asarray(a) for i, a in enumerate(episodes)})
        spec = {"env_id": env_id, "seed": int(seed), "episodes": len(episodes),
                "actions": str(actions), "video_dir": str(video_dir), "prefix": prefix,
                "atari": atari}
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        child_env = dict(os.environ)
        child_env.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen
        if not any(map(child_env.get, ("DISPLAY", "WAYLAND_DISPLAY"))):
            child_env.setdefault("MUJOCO_GL", "egl")  # MuJoCo's headless OpenGL
        proc = subprocess.run([sys.executable, "-m", "envs.replay", str(spec_path)],
                              capture_output=True, text=True, env=child_env, timeout=timeout)
    if proc.returncode != 0:
        for partial in video_dir.glob(f"{prefix}-episode-*.mp4"):  # none may claim to be whole
            partial.unlink(missing_ok=True)
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        if last.startswith("RLSeverError: "):
            last = last[len("RLSeverError: "):]
        elif "GL" in last:
            last += (" (off-screen OpenGL: MuJoCo needs EGL or OSMesa; set MUJOCO_GL=egl or "
                     "osmesa)")
        raise RLSeverError(f"recording the videos failed: {last}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    videos = sorted(video_dir.glob(f"{prefix}-episode-*.mp4"),
                    key=lambda p: int(p.stem.rsplit("-", 1)[-1]))
    return {"videos": [str(p) for p in videos], "returns": result["returns"]}


def replay(spec: dict[str, Any]) -> list[float]:
    """The child's side: rebuild the env, replay and record every episode."""
    try:
        import moviepy  # noqa: F401  (RecordVideo writes MP4 through it)
    except ImportError:
        raise RLSeverError(f"recording videos needs moviepy: {VIDEO_EXTRA}") from None
    import gymnasium as gym

    from envs.atari import AtariSettings
    from envs.factory import make_env

    atari = AtariSettings(**spec["atari"]) if spec.get("atari") else None
    env = make_env(spec["env_id"], seed=spec["seed"], render_mode="rgb_array", atari=atari,
                   training=False)
    fps = env.metadata.get("render_fps") or 30
    if atari is not None and str(env.unwrapped.spec.entry_point).startswith("ale_py"):
        fps = fps / atari.frame_skip  # one agent step is frame_skip frames
    n = spec["episodes"]
    with warnings.catch_warnings():  # "overwriting existing videos": ours were removed
        warnings.simplefilter("ignore", UserWarning)
        env = gym.wrappers.RecordVideo(env, spec["video_dir"], episode_trigger=lambda i: i < n,
                                       name_prefix=spec["prefix"], fps=max(1, round(fps)),
                                       disable_logger=True)
    returns = []
    with np.load(spec["actions"], allow_pickle=False) as actions:
        for i in range(n):
            env.reset()
            total = 0.0
            for action in actions[f"episode_{i}"]:
                _, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                if terminated or truncated:
                    break
            returns.append(total)
    env.close()
    return returns


def main(argv: list[str] | None = None) -> int:
    (spec_path,) = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(spec_path).read_text())
    try:
        returns = replay(spec)
    except RLSeverError as e:
        print(f"RLSeverError: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"returns": returns}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
