"""tests/tools holds scripts run by hand against external code (e.g. NVIDIA's EDM), never collected."""

collect_ignore_glob = ["*.py"]
