"""The `medsweep` command line: the top layer, above `analysis` (docs/ARCHITECTURE.md, "Layers")."""
