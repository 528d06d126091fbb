"""network.matmul_precision of the off-policy agents: auto picks bfloat16 only on the CPUs where
it was measured faster (AMX bfloat16 units, AMD Zen 4) and without XLA; bfloat16 computes the
hidden-to-hidden products only, keeps every variable float32, and stays within bfloat16 rounding
of the float32 network. Also the ensemble's per-member evaluation (DenseStack)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rl_sever.core import resources
from rl_sever.errors import ConfigError
from rl_sever.nn.layers import DenseStack
from rl_sever.offpolicy import agent as offpolicy_agent
from tests.helpers import tiny_agent, tiny_config


@pytest.mark.parametrize("units, jit, expected", [
    (True, False, "bfloat16"), (False, False, "float32"), (True, True, "float32")])
def test_auto_precision(monkeypatch, units, jit, expected):
    monkeypatch.setattr(offpolicy_agent, "bf16_matmuls_pay", lambda: units)
    agent = tiny_agent("sac", fill=0, jit_compile=jit)
    assert agent.matmul_precision == expected
    assert agent.critic.hidden_dtype == agent.target_critic.hidden_dtype == expected
    assert agent.actor.hidden_dtype == expected
    explicit = tiny_agent("td3", fill=0, jit_compile=jit, **{"network.matmul_precision": "float32"})
    assert explicit.critic.hidden_dtype == "float32"


def test_cpu_flags_read_from_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert resources.cpu_flags(info) >= {"avx2", "amx_bf16"}  # the first processor's
    monkeypatch.setattr(resources, "CPUINFO", info)
    assert resources.has_bf16_matrix_units()
    info.write_text("flags\t\t: fpu avx2\n")
    assert not resources.has_bf16_matrix_units()
    monkeypatch.setattr(resources, "CPUINFO", tmp_path / "missing")
    assert resources.cpu_flags() == frozenset() and not resources.has_bf16_matrix_units()
    assert not resources.bf16_matmuls_pay()


@pytest.mark.parametrize("vendor, family, flags, pays", [
    ("GenuineIntel", "6", "avx512f avx512_bf16 amx_bf16 amx_tile", True),  # Sapphire Rapids on
    ("AuthenticAMD", "25", "avx512f avx512_bf16", True),  # Zen 4
    ("GenuineIntel", "6", "avx512f avx512_bf16", False),  # Cooper Lake: slower (emulated)
    ("AuthenticAMD", "25", "avx2 fma", False),  # Zen 3
    ("AuthenticAMD", "26", "avx512f avx512_bf16", False),  # Zen 5: not measured
])
def test_bfloat16_pays_only_where_measured(tmp_path, monkeypatch, vendor, family, flags, pays):
    info = tmp_path / "cpuinfo"
    info.write_text(f"\nprocessor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
                    f"model\t\t: 17\nflags\t\t: fpu sse2 {flags}\n\n")
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert resources.bf16_matmuls_pay(info) is pays
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN off: never bfloat16
    assert resources.bf16_matmuls_pay(info) is False


def test_cpuinfo_without_x86_flags_reads_as_no_bfloat16(tmp_path):
    info = tmp_path / "cpuinfo"  # aarch64 names its flags "Features"
    info.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd bf16\n"
                    "CPU implementer\t: 0x41\n\n")
    assert resources.cpu_flags(info) == frozenset()
    assert not resources.bf16_matmuls_pay(info)


def test_bad_precision_is_rejected():
    with pytest.raises(ConfigError, match="network.matmul_precision must be auto, float32 or "
                                          "bfloat16, got 'fp8'"):
        tiny_config("sac", **{"network.matmul_precision": "fp8"}).validate()
    with pytest.raises(ValueError, match="hidden_dtype"):
        DenseStack(4, [8], 1, hidden_dtype="float16")


@pytest.mark.parametrize("members", [0, 2])
def test_bfloat16_stack_matches_float32_within_rounding(members):
    f32 = DenseStack(5, [64, 64, 64], 3, members=members, seed=1)
    bf16 = DenseStack(5, [64, 64, 64], 3, members=members, seed=1, hidden_dtype="bfloat16")
    assert all(v.dtype == "float32" for v in bf16.weights)  # variables stay float32
    x = tf.random.stateless_normal([32, 5], seed=[1, 2])
    with tf.GradientTape(persistent=True) as tape:
        y32, y16 = f32(x), bf16(x)
        l32, l16 = tf.reduce_sum(tf.square(y32)), tf.reduce_sum(tf.square(y16))
    assert y16.dtype == tf.float32
    scale = float(tf.reduce_max(tf.abs(y32)))
    err = float(tf.reduce_max(tf.abs(y16 - y32)))
    assert 0 < err < 0.02 * scale  # rounded (not the float32 path), within bfloat16 precision
    for g32, g16 in zip(tape.gradient(l32, f32.weights), tape.gradient(l16, bf16.weights)):
        assert g16.dtype == tf.float32
        rel = np.linalg.norm(g16 - g32) / np.linalg.norm(g32)
        assert rel < 0.05


def test_ensemble_members_are_independent_mlps():
    stack = DenseStack(4, [16, 16], 1, members=3, seed=0)
    x = tf.random.stateless_normal([8, 4], seed=[3, 4])
    both = stack(x)
    assert both.shape == (3, 8, 1)
    for m in range(3):  # the stacked evaluation is each member's own MLP, bit for bit
        np.testing.assert_array_equal(both[m].numpy(), stack(x, member=m).numpy())
    xs = tf.random.stateless_normal([3, 8, 4], seed=[5, 6])  # one input per member
    per = stack(xs)
    for m in range(3):
        np.testing.assert_array_equal(per[m].numpy(), stack(xs[m], member=m).numpy())
    # A loss on member 1 reaches member 1's slice of every weight and nothing else, exactly.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(stack(x)[1])
    for g in tape.gradient(loss, stack.weights):
        g = g.numpy()
        assert np.any(g[1]) and not np.any(g[0]) and not np.any(g[2])
    # Severed weights: gradient still reaches the input, never the weights.
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        loss = tf.reduce_sum(stack(x, severed=True))
    assert tape.gradient(loss, x) is not None
    assert all(g is None for g in tape.gradient(loss, stack.weights))
