"""Measuring: the one timing primitive, sweeps (a process per backend), tuning, charts."""
