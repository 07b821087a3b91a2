"""Reading inputs and writing results: atomic files, export sinks, data formats."""
