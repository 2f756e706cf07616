"""Celery workers: the app, the render task, lanes, GPU pinning, heartbeats and sweeps."""
