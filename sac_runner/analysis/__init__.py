"""After-training analysis, importable without a CLI: run discovery and grouping, statistics, figures and tables."""
