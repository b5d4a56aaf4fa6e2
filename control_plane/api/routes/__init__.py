"""Route tables, one module per feature."""
