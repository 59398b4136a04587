"""Benchmarks and the device scripts, run as modules from the repository root
(``python -m benchmarks.bench_epoch``). Not part of the medsweep wheel: they import the
product, the product never imports them."""
