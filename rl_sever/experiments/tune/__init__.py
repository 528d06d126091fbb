"""`rl-sever tune`: hyperparameter search on Optuna (docs/tuning.md). space: search spaces;
trial: one trial and a worker's loop; study: the folder, workers, resume; results: best.yaml
and the report."""
