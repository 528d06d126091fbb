"""rl_sever.deploy: every algorithm x vector, pixel and Dict observations x SavedModel, ONNX and
LiteRT, each file run by its own runtime against agent.predict; recurrent state and masks;
quantised LiteRT; an op a runtime lacks and a failed check end in one line, leaving nothing."""

from __future__ import annotations

import json

import gymnasium as gym
import keras
import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from envs.masked import DISCRETE_ID, MULTI_ID
from envs.pixels import make_pixel_env
from rl_sever import cli
from rl_sever.core.export import raw_observation_space
from rl_sever.deploy import export
from rl_sever.deploy import formats as fmts
from rl_sever.deploy.graph import bfloat16_layers, float32_matmuls
from rl_sever.errors import ConfigError, ExportError
from tests.helpers import ALGOS, ONPOLICY, tiny_agent
from tests.test_dict_obs import DICT_BOX_ID, DICT_ID

PIXEL_IDS = {"discrete": "RlSeverTinyPixelsCartPole-v0", "box": "RlSeverTinyPixelsPendulum-v0"}
for _kind, _base in (("discrete", "CartPole-v1"), ("box", "Pendulum-v1")):
    if PIXEL_IDS[_kind] not in gym.registry:
        gym.register(PIXEL_IDS[_kind], entry_point=make_pixel_env, disable_env_checker=True,
                     kwargs={"env_id": _base, "size": 24, "frame_stack": 2, "grayscale": True},
                     max_episode_steps=50)


def env_for(algo: str, kind: str) -> str | None:
    continuous = algo not in ONPOLICY
    if kind == "vector":
        return None  # the helpers' default: CartPole-v1 or Pendulum-v1
    if kind == "pixels":
        return PIXEL_IDS["box" if continuous else "discrete"]
    return DICT_BOX_ID if continuous else DICT_ID


def raw_observations(agent, n: int, seed: int = 7):
    space = raw_observation_space(agent)
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]
    if isinstance(samples[0], dict):
        return {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    return np.stack(samples)


def feeds_of(obs) -> dict[str, np.ndarray]:
    if isinstance(obs, dict):
        return {f"observation_{k}": v for k, v in obs.items()}
    return {"observation": obs}


def run_each_runtime(out, feeds) -> dict[str, np.ndarray]:
    """The action of each file, run directly by its runtime (not through rl_sever.deploy)."""
    served = tf.saved_model.load(str(out)).signatures["serving_default"]
    lite = Interpreter(model_path=str(out / "policy.tflite")).get_signature_runner()
    session = onnxruntime.InferenceSession(str(out / "policy.onnx"))
    return {"savedmodel": served(**{k: tf.constant(v) for k, v in feeds.items()})["action"].numpy(),
            "onnx": session.run(["action"], feeds)[0],
            "litert": lite(**feeds)["action"]}


@pytest.mark.parametrize("kind", ["vector", "pixels", "dict"])
@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_exports_every_format(algo, kind, tmp_path):
    agent = tiny_agent(algo, env_for(algo, kind))
    report = export(agent, tmp_path / "policy", "all", check=48, latency=False)
    assert set(report["formats"]) == {"savedmodel", "onnx", "litert"}
    assert all(e["check"]["passed"] and e["check"]["observations"] >= 48
               for e in report["formats"].values())
    obs = raw_observations(agent, 16)
    native = agent.predict(obs)
    with float32_matmuls(agent):  # what the portable formats compute (bfloat16 under AMX)
        portable = agent.predict(obs)
    for fmt, got in run_each_runtime(tmp_path / "policy", feeds_of(obs)).items():
        want = native if fmt == "savedmodel" else portable
        got = np.asarray(got).reshape(want.shape)
        if agent.action.kind == "box":
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=fmt)
            assert np.all(got >= agent.action.low) and np.all(got <= agent.action.high)
        else:
            np.testing.assert_array_equal(got, want, err_msg=fmt)
    meta = json.loads((tmp_path / "policy" / "metadata.json").read_text())
    assert [i["name"] for i in meta["inputs"]] == list(feeds_of(obs))
    assert meta["inputs"][0]["dtype"] == str(np.asarray(next(iter(feeds_of(obs).values()))).dtype)
    if kind == "pixels":
        assert any("uint8 images" in step for step in meta["preprocessing"])
    agent.close()


@pytest.mark.parametrize("case", ["lstm", "gru", "mask", "multimask"])
def test_recurrent_and_masked_policies_take_their_state_and_mask(case, tmp_path):
    agent = {"lstm": lambda: tiny_agent("ppo", "CartPoleNoVel-v1", **{
                 "network.recurrent": "lstm", "network.recurrent_size": 8}),
             "gru": lambda: tiny_agent("a2c", "PendulumNoVel-v1", **{
                 "network.recurrent": "gru", "network.recurrent_size": 8}),
             "mask": lambda: tiny_agent("ppo", DISCRETE_ID),
             "multimask": lambda: tiny_agent("ppo", MULTI_ID)}[case]()
    # int8 too: its calibration feeds several named inputs.
    report = export(agent, tmp_path / "p", ["onnx", "litert"], quantize="int8", check=96,
                    latency=False)
    assert report["formats"]["litert_int8"]["check"]["observations"] >= 96
    meta = json.loads((tmp_path / "p" / "metadata.json").read_text())
    names = [i["name"] for i in meta["inputs"]]
    session = onnxruntime.InferenceSession(str(tmp_path / "p" / "policy.onnx"))
    lite = Interpreter(model_path=str(tmp_path / "p" / "policy.tflite")).get_signature_runner()
    obs = raw_observations(agent, 6)
    rng = np.random.default_rng(0)
    if case in ("lstm", "gru"):
        assert names == ["observation", "state", "episode_start"]
        assert [o["name"] for o in meta["outputs"]] == ["action", "next_state"]
        state = rng.normal(size=(6, agent.layout.state_dim)).astype(np.float32)
        start = np.array([True, False] * 3)
        want, want_state = agent.predict(obs, state, start)
        feeds = {"observation": obs, "state": state, "episode_start": start}
        for out in (dict(zip(["action", "next_state"], session.run(None, feeds))), lite(**feeds)):
            np.testing.assert_allclose(out["next_state"], want_state, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(np.reshape(out["action"], want.shape), want, atol=1e-5)
        # The state where an episode starts is ignored: zeros give the same answer there.
        zeroed = lite(**{**feeds, "state": np.where(start[:, None], 0, state).astype(np.float32)})
        np.testing.assert_allclose(zeroed["next_state"], want_state, atol=1e-6)
    else:
        assert names == ["observation", "action_mask"]
        mask = rng.random((6, agent.layout.mask_dim)) < 0.5
        mask[:, 0] = True
        if case == "multimask":  # one allowed choice in every component
            mask[:, agent.env.single_action_space.nvec[0]] = True
        want = agent.predict(obs, action_masks=mask)
        feeds = {"observation": obs, "action_mask": mask}
        for got in (session.run(["action"], feeds)[0], lite(**feeds)["action"]):
            np.testing.assert_array_equal(np.reshape(got, want.shape), want)
        only_first = np.zeros_like(mask)
        only_first[:, 0] = True
        if case == "mask":  # the mask decides: the one allowed action is the action
            assert (lite(observation=obs, action_mask=only_first)["action"] == 0).all()
    agent.close()


def test_quantised_litert_is_smaller_and_measured(tmp_path):
    agent = tiny_agent("sac", **{"network.hidden_sizes": [64, 64]})
    sizes = {}
    for q in ("float16", "int8"):
        report = export(agent, tmp_path / q, "litert", quantize=q, check=64, latency=False)
        entry = report["formats"][f"litert_{q}"]
        sizes[q] = entry["bytes"]
        assert (tmp_path / q / f"policy_{q}.tflite").is_file()
        assert entry["check"]["observations"] >= 64 and entry["check"]["max_error"] < 0.2
    sizes["float32"] = report["formats"]["litert"]["bytes"]
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]
    agent.close()


def test_bfloat16_agent_exports_float32_matmuls_and_keeps_its_own(tmp_path):
    agent = tiny_agent("sac", **{"network.matmul_precision": "bfloat16",
                                 "network.hidden_sizes": [64, 64]})
    assert bfloat16_layers(agent)
    obs = raw_observations(agent, 32)
    before = agent.predict(obs)
    export(agent, tmp_path / "p", "all", check=64, latency=False)
    np.testing.assert_array_equal(agent.predict(obs), before)  # bfloat16 again afterwards
    meta = json.loads((tmp_path / "p" / "metadata.json").read_text())
    assert {k: v["matmul_precision"] for k, v in meta["formats"].items()} == {
        "savedmodel": "as trained", "onnx": "float32", "litert": "float32"}
    graph = onnx.load(str(tmp_path / "p" / "policy.onnx")).graph
    types = {t.type.tensor_type.elem_type for t in [*graph.value_info, *graph.output]} | {
        i.data_type for i in graph.initializer}
    assert onnx.TensorProto.BFLOAT16 not in types and onnx.TensorProto.FLOAT in types
    agent.close()


def test_a_new_export_replaces_a_previous_one_whole_or_not_at_all(tmp_path, monkeypatch):
    agent = tiny_agent("ppo")
    out = tmp_path / "p"
    export(agent, out, "onnx", check=16, latency=False)
    first = (out / "policy.onnx").read_bytes()
    # A failure while writing (a full disk) leaves the previous export as it was.
    write = fmts.write

    def full(fmt, *args, **kwargs):
        if fmt == "litert":
            raise OSError(28, "No space left on device")
        return write(fmt, *args, **kwargs)

    monkeypatch.setattr(fmts, "write", full)
    with pytest.raises(ExportError, match=f"writing the export into {out} failed: .*No space "
                                          f"left on device; {out} is as it was"):
        export(agent, out, "all", check=16, latency=False)
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "policy.onnx"]
    assert (out / "policy.onnx").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no temporary folders
    monkeypatch.setattr(fmts, "write", write)
    kernel = agent.model.pi.kernels[-1]
    kernel.assign(kernel + 1.0)  # another policy: the new files replace the old ones
    export(agent, out, ["savedmodel", "litert"], check=16, latency=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "assets", "fingerprint.pb", "metadata.json", "policy.tflite", "saved_model.pb", "variables"]
    # A folder with someone else's metadata.json is not an export to replace.
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "metadata.json").write_text('{"format": "something else"}')
    with pytest.raises(ConfigError, match="holds no exported policy"):
        export(agent, foreign, "onnx", check=16, latency=False)
    assert [p.name for p in foreign.iterdir()] == ["metadata.json"]
    agent.close()


class Lgamma(keras.layers.Layer):
    def call(self, x):
        return tf.math.lgamma(tf.abs(x) + 1.0)


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_an_op_the_runtime_lacks_is_one_error_naming_op_and_format(fmt, tmp_path):
    inputs = keras.Input((4,))
    encoder = keras.Model(inputs, keras.layers.Dense(8)(Lgamma()(inputs)), name="lgamma_enc")
    agent = tiny_agent("ppo", encoder=encoder)
    with pytest.raises(ExportError, match=rf"^{fmt} cannot convert this policy: .*Lgamma"):
        export(agent, tmp_path / "p", fmt, check=16)
    assert list(tmp_path.iterdir()) == []  # no half-written folder, no temporary one
    agent.close()


def test_a_failed_check_is_exit_2_naming_format_and_observation(tmp_path, monkeypatch, capsys):
    logdir = tmp_path / "runs"
    argv = ("train ppo CartPole-v1 --no-preset --n-envs 2 --steps 64 --no-progress --set "
            "n_steps=16 --set batch_size=32 --set eval_episodes=0 --set audit=false").split()
    assert cli.main([*argv, "--logdir", str(logdir)]) == 0
    (run_dir,) = logdir.iterdir()
    load = fmts.load

    def off_by_one(fmt, out, quantize=None):  # a runtime that answers another action
        runtime = load(fmt, out, quantize)
        return (lambda feeds: {"action": 1 - runtime(feeds)["action"]}) if fmt == "onnx" else runtime

    monkeypatch.setattr(fmts, "load", off_by_one)
    capsys.readouterr()
    assert cli.main(["export", str(run_dir), str(tmp_path / "out"), "--format", "all"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: onnx does not reproduce agent.predict: 1000 of 1000 greedy")
    assert "worst: observation 0 (a sample of the observation space)" in err
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_bad_arguments_are_one_line(tmp_path, capsys):
    agent = tiny_agent("ppo")
    with pytest.raises(ConfigError, match="unknown export format 'tflite'; choose from"):
        export(agent, tmp_path / "p", "tflite")
    with pytest.raises(ConfigError, match="quantize applies to the litert format"):
        export(agent, tmp_path / "p", "onnx", quantize="int8")
    with pytest.raises(ConfigError, match="quantize must be one of float16, int8"):
        export(agent, tmp_path / "p", "litert", quantize="int4")
    agent.close()
    assert cli.main(["export", str(tmp_path / "nope"), str(tmp_path / "o"), "--quantize", "int4"]) == 2
    assert "invalid choice: 'int4'" in capsys.readouterr().err


@pytest.mark.parametrize("algo, env", [("ppo", None), ("sac", None), ("ppo", MULTI_ID)])
def test_stochastic_export_samples_from_the_distribution_it_returns(algo, env, tmp_path):
    agent = tiny_agent(algo, env)
    report = export(agent, tmp_path / "p", ["onnx", "litert"], stochastic=True, check=64,
                    latency=False)
    assert all(e["check"]["passed"] for e in report["formats"].values())
    meta = json.loads((tmp_path / "p" / "metadata.json").read_text())
    names = [o["name"] for o in meta["outputs"]]
    assert meta["deterministic"] is False
    obs = np.repeat(raw_observations(agent, 1), 4000, axis=0)
    feeds = {"observation": obs}
    if agent.masked:
        mask = np.ones((4000, agent.layout.mask_dim), bool)
        mask[:, 1] = False  # the first component's second choice is forbidden
        feeds["action_mask"] = mask
    session = onnxruntime.InferenceSession(str(tmp_path / "p" / "policy.onnx"))
    lite = Interpreter(model_path=str(tmp_path / "p" / "policy.tflite")).get_signature_runner()
    for out in (dict(zip(names, session.run(names, feeds))), lite(**feeds)):
        sampled = np.asarray(out["sampled_action"])
        if algo == "sac":  # tanh(N(mean, std)) scaled to the bounds: check the pre-tanh moments
            assert names == ["action", "mean", "log_std", "sampled_action"]
            u = np.arctanh(np.clip(sampled / agent.action.high, -0.999999, 0.999999))
            mean, std = out["mean"][0], np.exp(out["log_std"][0])
            assert abs(u.mean() - mean) < 0.1 * std and abs(u.std() / std - 1) < 0.1
        else:
            logits = out["logits"][0][:agent.env.single_action_space.nvec[0]] if agent.masked \
                else out["logits"][0]
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            first = sampled.reshape(4000, -1)[:, 0]
            freq = np.bincount(first, minlength=len(probs)) / 4000
            np.testing.assert_allclose(freq, probs, atol=0.04)
            if agent.masked:
                assert freq[1] == 0 and probs[1] < 1e-6
        assert len(np.unique(sampled, axis=0)) > 1  # drawn anew, not a constant
    agent.close()


def test_a_deterministic_policy_refuses_stochastic_export(tmp_path):
    agent = tiny_agent("td3")
    with pytest.raises(ConfigError, match="td3's policy is deterministic"):
        export(agent, tmp_path / "p", "onnx", stochastic=True)
    agent.close()
