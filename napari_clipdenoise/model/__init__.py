"""Network, checkpoint formats and the model registry."""
