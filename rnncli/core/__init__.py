"""rnncli's numerical core: cells, the engine that runs them over time, layers, models and
their results. numpy only; no file formats, no printing (docs/architecture.md)."""
