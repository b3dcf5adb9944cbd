"""Tests of the baseline method plugins (sidbench_baselines)."""
