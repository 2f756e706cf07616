"""Redis, as darkroom uses it: the embedded server, the job store and its Lua scripts,
the Celery-protocol render message, key names, finish notices and queue depths.

Imports `jobs` (the contract) and redis; `producer` and `workers` import this package,
`pipelines`, `storage` and `model_store` never do.
"""
