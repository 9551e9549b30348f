"""Performance analytics: API latency and Core Web Vitals read from the rollups."""
