"""Real services on loopback for tests and benchmarks: SeaweedFS S3, darkroom workers, the
`darkroom api` process, the fault-injection rig (redis-server itself is
`transport.embedded`).

`tests/fixtures` wraps these as pytest fixtures and `bench` drives them directly, so
neither of the two imports the other. Not installed with darkroom: it runs from a checkout.
"""
