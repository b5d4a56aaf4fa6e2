"""mt-backend control plane: API, jobs, queue, workers and the translation engine."""

__version__ = "0.1.0"
