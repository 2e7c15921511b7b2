"""Benchmarks that print figures. Run each as a module from the project root, e.g.
`python -m bench.engine` (as a module, so that `bench/inspect.py` never shadows the stdlib)."""
