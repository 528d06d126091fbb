"""A full disk never loses a run: a checkpoint or replay-buffer write that fails leaves the
newest complete checkpoint in charge (no partial files), warns and is tried again; three in a
row, or the final one, stop the run with one line; event-file writes that fail are counted and
retried; resume after the disk is freed keeps one step axis. In-process faults (OSError
ENOSPC at the Nth call) and, through the CLI, a real per-file size limit (RLIMIT_FSIZE, which
fails writes with "File too large" as a full disk fails them with "No space left")."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from rl_sever import cli
from rl_sever.core import disk, logger
from rl_sever.core.agent import Agent
from rl_sever.errors import ExportError, WriteError
from tests.helpers import read_event_tensors, tiny_agent

ROOT = Path(__file__).resolve().parents[1]
ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def leftovers(run_dir: Path) -> list[str]:
    """Partial checkpoint files: temporary folders, files the index does not list."""
    directory = run_dir / "checkpoints"
    listed = {Path(p).name for p in Agent.load(run_dir).checkpointer.manager.checkpoints}
    return sorted(p.name for p in directory.iterdir()
                  if p.name.endswith(("_temp", ".tmp"))
                  or p.name.startswith("ckpt-") and p.name.split(".")[0] not in listed)


def failing_saves(monkeypatch, agent, fail_at: set[int], partial: bool = True):
    """The checkpoint manager's save fails (ENOSPC) at these calls, leaving what TensorFlow
    leaves: a `ckpt-N_temp` folder and a stray `ckpt-N.index`."""
    manager, calls = agent.checkpointer.manager, []
    save = manager.save

    def flaky(checkpoint_number=None, **kwargs):
        calls.append(checkpoint_number)
        if len(calls) in fail_at:
            if partial:
                (agent.checkpointer.directory / f"ckpt-{checkpoint_number}_temp").mkdir(parents=True)
                (agent.checkpointer.directory / f"ckpt-{checkpoint_number}.index").write_bytes(b"\0")
            raise ENOSPC
        return save(checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(manager, "save", flaky)
    return calls


def test_onpolicy_failed_checkpoints_warn_and_the_run_goes_on(tmp_path, monkeypatch):
    agent = tiny_agent("ppo", logdir=tmp_path, checkpoint_every=64)
    calls = failing_saves(monkeypatch, agent, {2, 3})
    with pytest.warns(disk.CheckpointWriteWarning) as caught:
        agent.learn(320, progress=False)
    messages = [str(w.message) for w in caught if w.category is disk.CheckpointWriteWarning]
    assert len(messages) == 2 and "No space left on device" in messages[0]
    assert messages[0].endswith("trying again at the next interval")
    assert f"the newest complete checkpoint is {agent.checkpointer.directory}/ckpt-64" in messages[0]
    assert len(calls) == 5 and agent.checkpointer.latest.endswith("ckpt-320")
    run_dir = Path(agent.run_dir)
    agent.close()
    assert leftovers(run_dir) == []
    loaded = Agent.load(run_dir)
    assert int(loaded.global_step.numpy()) == 320
    loaded.close()


def test_offpolicy_replay_write_failures_stop_the_run_and_it_resumes(tmp_path, monkeypatch):
    agent = tiny_agent("sac", logdir=tmp_path, checkpoint_every=64, fill=0)
    replay_save, calls = agent.replay.save, []

    def flaky(directory):
        calls.append(directory)
        if len(calls) >= 2:  # half a buffer written, then the disk is full
            tmp = Path(directory).with_name(Path(directory).name + ".tmp")
            tmp.mkdir(parents=True, exist_ok=True)
            (tmp / "obs.npy").write_bytes(b"\x93NUMPY")
            raise ENOSPC
        return replay_save(directory)

    monkeypatch.setattr(agent.replay, "save", flaky)
    with pytest.warns(disk.CheckpointWriteWarning), pytest.raises(WriteError) as raised:
        agent.learn(512, progress=False)
    run_dir = Path(agent.run_dir)
    message = str(raised.value)
    assert message.startswith("could not write 3 checkpoints in a row (the last at step 256)")
    assert f"newest complete checkpoint is {run_dir}/checkpoints/ckpt-64" in message
    assert message.endswith(f"resume with: rl-sever train --resume {run_dir}")
    agent.close()
    assert leftovers(run_dir) == []
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("replay-*")) == ["replay-64"]
    # The disk is freed: resume continues from step 64 with its buffer, one step axis.
    assert cli.main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    resumed = Agent.load(run_dir)
    assert int(resumed.global_step.numpy()) == 512
    resumed.close()
    steps = [s for s, _ in read_event_tensors(run_dir)["time/fps"]]
    assert steps == sorted(set(steps)) and steps[-1] == 512


def test_event_write_failures_are_counted_and_retried(tmp_path, monkeypatch):
    monkeypatch.setattr(logger, "RETRY_S", 0.0)
    agent = tiny_agent("ppo", logdir=tmp_path)
    real = logger.Logger._write
    seen = []

    def flaky(self, write):
        seen.append(1)
        if 3 <= len(seen) <= 5:  # (1-2 write the config) the first three dumps meet a full disk
            def failing():
                raise ENOSPC
            return real(self, failing)
        return real(self, write)

    monkeypatch.setattr(logger.Logger, "_write", flaky)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agent.learn(320, progress=False)
    texts = [str(w.message) for w in caught if w.category is logger.EventWriteWarning]
    assert texts[0].startswith(f"TensorBoard events not written to {agent.run_dir}: [Errno 28]")
    assert len(texts) == 2 and texts[1].endswith("could not be written to "
                                                 f"{agent.run_dir} (the disk refused them)")
    lost = int(texts[1].split()[0])
    steps = [s for s, _ in read_event_tensors(agent.run_dir)["time/fps"]]
    assert lost > 3 * 10  # three dumps of a dozen and more scalars
    assert steps == list(range(128, 321, 32))  # 32, 64, 96 lost; written again afterwards
    agent.close()


def test_a_run_that_will_not_fit_warns_before_the_first_step(tmp_path, monkeypatch):
    agent = tiny_agent("sac", logdir=tmp_path, fill=0, buffer_size=50_000)
    usage = disk.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda _: usage._replace(free=100_000))
    collected = []
    monkeypatch.setattr(type(agent.collector), "collect", lambda self: collected.append(1) or 1 / 0)
    with pytest.warns(disk.DiskSpaceWarning, match=r"will write about [\d.]+ MB into .* "
                      r"\(checkpoints [\d.]+ kB, replay [\d.]+ MB, events [\d.]+ kB\) and "
                      r"100.0 kB is free there"), pytest.raises(ZeroDivisionError):
        agent.learn(128, progress=False)
    assert collected == [1]  # warned before collecting
    agent.close()


def limited(size_kb: int):
    """A child process whose files may not grow beyond `size_kb` kB (as `ulimit -f`)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size_kb * 1024, size_kb * 1024))


def cli_run(args: list[str], tmp_path: Path, limit_kb: int | None = None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "rl_sever.cli", *args], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300,
                          preexec_fn=limited(limit_kb) if limit_kb else None)


def test_cli_checkpoints_that_never_fit_end_in_one_line(tmp_path):
    proc = cli_run(["train", "ppo", "CartPole-v1", "--no-preset", "--steps", "4096",
                    "--set", "n_steps=128", "--set", "batch_size=256", "--set", "n_epochs=1",
                    "--set", "network.hidden_sizes=[256,256]", "--set", "checkpoint_every=1024",
                    "--set", "eval_episodes=0", "--no-progress", "--logdir", "runs"], tmp_path, 100)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert [ln for ln in lines if ln.startswith("warning: checkpoint at step")] == lines[:2]
    assert lines[-1].startswith("error: could not write 3 checkpoints in a row (the last at step "
                                "3,072)") and "File too large" in lines[-1]
    assert lines[-1].endswith("cannot resume: free space and train again")
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "config.json").exists() and list((run_dir / "checkpoints").iterdir()) == []


def test_cli_a_full_event_file_warns_and_the_run_completes_then_resumes(tmp_path):
    args = ["--no-preset", "--set", "checkpoint_every=0", "--set", "checkpoint_minutes=0",
            "--set", "eval_episodes=0", "--no-progress", "--set", "n_steps=16", "--set",
            "batch_size=128", "--set", "n_epochs=1", "--set", "network.hidden_sizes=[16,16]"]
    proc = cli_run(["train", "ppo", "CartPole-v1", "--steps", "16384", "--logdir", "runs", *args],
                   tmp_path, 32)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warned = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert warned[0].startswith("warning: TensorBoard events not written to ")
    assert "File too large; training goes on" in warned[0]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert warned[-1].endswith(f"TensorBoard points could not be written to runs/{run_dir.name} "
                               "(the disk refused them)")
    assert Path(Agent.load(run_dir).checkpointer.latest).name == "ckpt-16384"
    # The event file ends in a record the limit cut short; resume reads past it.
    assert cli.main(["train", "--resume", str(run_dir), "--steps", "1024", "--no-progress"]) == 0
    steps = [s for s, _ in read_event_tensors(run_dir)["time/fps"]]
    assert steps == sorted(set(steps)) and steps[-1] == 17408


def test_export_and_videos_into_an_unwritable_place_are_one_line(tmp_path, capsys):
    agent = tiny_agent("ppo", logdir=tmp_path / "runs")
    agent.learn(64, progress=False)
    run_dir = agent.run_dir
    agent.close()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match=f"cannot write the export into {blocker}"):
        Agent.load(run_dir).export(blocker / "policy")
    capsys.readouterr()
    assert cli.main(["export", str(run_dir), str(blocker / "policy")]) == 2
    assert cli.main(["eval", str(run_dir), "--episodes", "1", "--video", str(blocker / "v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"error: cannot write the export into {blocker}")
    assert err[1].startswith(f"error: cannot write videos into {blocker / 'v'}")
    assert len(err) == 2 and blocker.read_text() == "not a folder"
    assert np.all([p.name in ("file", "runs") for p in tmp_path.iterdir()])


def test_cleaning_a_failed_save_touches_only_its_own_files(tmp_path):
    agent = tiny_agent("sac", logdir=tmp_path, checkpoint_every=64, fill=0)
    agent.learn(640, progress=False)  # complete checkpoints ..., ckpt-576, ckpt-640
    directory = agent.checkpointer.directory
    agent.close()
    before = sorted(p.name for p in directory.iterdir())
    assert "ckpt-640.index" in before and "replay-640" in before
    # What a save of step 64 cut short leaves (ckpt-64 itself was pruned long ago).
    (directory / "ckpt-64_temp").mkdir()
    (directory / "ckpt-64.index").write_bytes(b"\0")
    (directory / "replay-64.tmp").mkdir()
    (directory / "checkpoint.tmp1f2e").write_text("half an index")
    disk.clean_partial(directory, 64)
    assert sorted(p.name for p in directory.iterdir()) == before
    assert disk.newest_on_disk(directory).endswith("ckpt-640")


def test_an_event_file_that_cannot_be_reopened_keeps_training_going(tmp_path, monkeypatch):
    monkeypatch.setattr(logger, "RETRY_S", 0.0)
    log = logger.Logger(tmp_path)
    log.record("a", 1.0)
    monkeypatch.setattr(log.writer, "flush", lambda: (_ for _ in ()).throw(ENOSPC))
    with pytest.warns(logger.EventWriteWarning):
        log.dump(1)
    made = logger.tf.summary.create_file_writer
    monkeypatch.setattr(logger.tf.summary, "create_file_writer",
                        lambda *_: (_ for _ in ()).throw(ENOSPC))
    for step in (2, 3):  # the disk still refuses a new file: counted, no error
        log.record("a", 1.0)
        log.dump(step)
    monkeypatch.setattr(logger.tf.summary, "create_file_writer", made)
    log.record("a", 2.0)
    log.dump(4)  # space again: a new event file takes the point
    log.close()
    assert log.lost_points == 3
    assert [s for s, _ in read_event_tensors(tmp_path)["a"]] == [4]


def test_the_next_flush_after_a_failure_tries_again(tmp_path, monkeypatch):
    log = logger.Logger(tmp_path)  # the default RETRY_S: only a failed retry waits for it
    monkeypatch.setattr(log.writer, "flush", lambda: (_ for _ in ()).throw(ENOSPC))
    log.record("a", 1.0)
    with pytest.warns(logger.EventWriteWarning):
        log.dump(1)
    log.record("a", 2.0)
    log.dump(2)  # a new event file (the failed writer, with its broken flush, is dropped)
    log.close()
    assert log.lost_points == 1
    assert [s for s, _ in read_event_tensors(tmp_path)["a"]] == [2]
