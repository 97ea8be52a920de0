"""Benchmarks that are experiments: jobs run side by side with resume, and seed statistics."""
