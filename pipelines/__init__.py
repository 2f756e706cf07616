"""Image operations, one module per op family. Knows nothing of Celery, Redis or storage."""
