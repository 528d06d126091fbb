"""Experiments over runs: several seeds (seeds), the report with confidence intervals (report,
results, figures, references) and hyperparameter tuning on Optuna (tune)."""
