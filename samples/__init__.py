"""Sample data for the demo, the tests and the benchmarks: real photos, the damage old
photos suffer (made on purpose, deterministically), and the recipes darkroom ships.

`samples.photos` holds the photos and the damage; `samples.recipes` the recipes. Nothing
in the service's packages imports this one; `darkroom demo`, `tests/` and `bench/` do.
"""
