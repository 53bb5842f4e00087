"""StudioVault benchmarks: `python -m bench --help`, and bench/README.md."""
