"""Sub-commands of the `sagac` CLI, one module per group."""
