"""Benchmarks run by `gtracd bench NAME`. They measure and print; they never assert a timing."""
