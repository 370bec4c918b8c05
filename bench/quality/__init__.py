"""Quality benchmarks against simulated ground truth, and the tools that score and tabulate their runs."""
