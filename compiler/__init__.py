"""The compiler: YAML to validated IR to DAG to plan."""
