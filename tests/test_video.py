"""`rl-sever eval --video`: the evaluation episodes as MP4 files, recorded by replaying their
actions in a TensorFlow-free process (envs.replay), on classic control, MuJoCo and Atari."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from envs.replay import record_videos
from rl_sever import cli
from rl_sever.core.evaluation import evaluate
from tests.helpers import tiny_agent

pytest.importorskip("moviepy", reason="the video extra")


def frames_of(path: str) -> int:
    from moviepy import VideoFileClip

    with VideoFileClip(path) as clip:
        return int(round(clip.duration * clip.fps))


def test_replay_reproduces_the_episodes_it_films(tmp_path):
    env = gym.make("CartPole-v1")
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    episodes, returns = [], []
    for _ in range(2):  # the first reset is seeded, the next is not (as a vector env's autoreset)
        actions, total, done = [], 0.0, False
        while not done:
            actions.append(int(rng.integers(2)))
            _, reward, terminated, truncated, _ = env.step(actions[-1])
            total, done = total + reward, terminated or truncated
        episodes.append(np.array(actions))
        returns.append(total)
        env.reset()
    out = record_videos("CartPole-v1", 3, episodes, tmp_path, prefix="x")
    assert out["returns"] == returns
    assert [Path(p).name for p in out["videos"]] == ["x-episode-0.mp4", "x-episode-1.mp4"]
    # RecordVideo films the reset frame and one frame per step
    assert [frames_of(p) for p in out["videos"]] == [len(a) + 1 for a in episodes]


@pytest.mark.parametrize("algo, env_id", [("td3", "Hopper-v5"), ("ppo", "ALE/Breakout-v5")])
def test_evaluation_videos_of_mujoco_and_atari(algo, env_id, tmp_path):
    # MuJoCo renders off-screen (EGL) in the replay process: in this process, next to
    # TensorFlow, Mesa's renderer would crash.
    agent = tiny_agent(algo, env_id, fill=0, eval_episodes=0)
    result = evaluate(agent, 1, seed=5, video_dir=tmp_path / "v")
    agent.close()
    (video,) = result["videos"]
    assert result["replay_matches"] and Path(video).stat().st_size > 1000
    assert frames_of(video) == pytest.approx(result["mean_ep_length"] + 1, abs=2)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("runs")
    argv = ["train", "ppo", "CartPole-v1", "--n-envs", "2", "--set", "n_steps=16",
            "--set", "batch_size=32", "--set", "eval_episodes=0", "--steps", "32",
            "--no-progress", "--logdir", str(logdir)]
    assert cli.main(argv) == 0
    (path,) = [p for p in logdir.iterdir() if p.is_dir()]
    return path


def test_eval_cli_records_each_episode_and_says_where(run_dir, tmp_path, capsys):
    videos = tmp_path / "videos"
    (videos / "ppo-CartPole-v1-episode-7.mp4").parent.mkdir(parents=True)
    (videos / "ppo-CartPole-v1-episode-7.mp4").write_text("stale")
    assert cli.main(["eval", str(run_dir), "--episodes", "2", "--video", str(videos)]) == 0
    out, err = capsys.readouterr()
    files = sorted(videos.glob("*.mp4"))
    assert [f.name for f in files] == ["ppo-CartPole-v1-episode-0.mp4",
                                       "ppo-CartPole-v1-episode-1.mp4"]  # the stale one is gone
    assert "videos: 2 files in" in out and str(files[0]) in out and "warning" not in err


def test_eval_cli_video_errors_are_clear(run_dir, tmp_path, capsys):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert cli.main(["eval", str(run_dir), "--episodes", "1", "--video", str(not_a_dir)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert cli.main(["eval", str(run_dir), "--video", str(tmp_path), "--render"]) == 2
    assert "exclude each other" in capsys.readouterr().err
