"""The JSON Schema of the saga language, shipped inside the package as data."""
