"""What people see: views of a result, tables, the summary, terminal heatmaps (rich is
used here and in the CLI only)."""
