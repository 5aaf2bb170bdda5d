"""Benchmarks: minise against PyTorch, side by side in one process."""
