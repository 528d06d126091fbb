"""Env runners on Ray (config `runners`, `ray_address`, `runner_cpus`; docs/scaling.md).

Ray is imported only when a run has runners or learners. `runner` is the actor (a copy of the
agent that steps a share of the envs), `host_runner` the actor without TensorFlow where the
policy acts in NumPy, `share` what both share, `group` the learner's handle on the actors
(weights out, results in, restarts), `collectors` the on- and off-policy collectors built on them,
`inference` the central inference server (runner_inference: central), `learners` the learner
processes of a multiworker run (config `learners`), `cluster` the connection to Ray,
`normalizer` the merge of running statistics across runners.
"""
