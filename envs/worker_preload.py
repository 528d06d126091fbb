"""Preloaded by the fork server that envs.worker_pool starts its worker processes from.

Importing the env code once in the server means every worker forks with it (and the
TensorFlow it pulls in) already loaded, instead of importing it again. TensorFlow's native
start-up lines are hidden as the CLI hides them (envs.quiet). Nothing imports this module.
"""

from envs.quiet import native_stderr_silenced

with native_stderr_silenced():
    import envs.worker_pool  # noqa: F401
