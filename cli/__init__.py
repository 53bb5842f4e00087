"""`studiovault`: run the pipeline (worker, ingress, migrate) and operate it (status, dead letters,
re-drive, billing closes, storage). Each command reads the settings once and gets its connections from
the composition root (`bootstrap`)."""
