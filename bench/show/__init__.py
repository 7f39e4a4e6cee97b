"""Output: tables (report: rich and markdown), plots, one flat row per cell (tidy), exports for CI
dashboards (export)."""
