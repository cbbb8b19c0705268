"""Study, search space, objective, workers and the CLI (``python -m search``)."""
