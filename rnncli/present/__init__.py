"""What people see: views of a result, tables, the summary, heatmaps."""
