"""Read models for operators: pipeline status, dead letters and storage usage, read through the
`store.Database` port (the CLI and the metrics show them)."""
