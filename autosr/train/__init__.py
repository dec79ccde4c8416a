"""The runtime: training loop, data, losses, metrics, checkpoints."""
