"""Shared test set-up: quiet TensorFlow, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests are CPU-only and deterministic

import pytest  # noqa: E402

from envs.quiet import native_stderr_silenced  # noqa: E402

# TensorFlow's native start-up lines (oneDNN, CUDA probing) are printed before its logging is
# configured; a test worker process (pytest-xdist) would otherwise leave them after the summary.
with native_stderr_silenced():
    import tensorflow  # noqa: E402

# TensorFlow's thread pools fixed at their defaults before any test: an agent's
# intra_op_threads=auto (rl_sever.core.threads) then leaves them as they are, so no result
# depends on which test a worker ran first. tests/test_threads.py runs auto in fresh processes.
tensorflow.constant(0)


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(0)
    yield


from tests.helpers import TINY_MD_ID  # noqa: E402  (registers the test envs)


@pytest.fixture
def tiny_md_env_id() -> str:
    return TINY_MD_ID
