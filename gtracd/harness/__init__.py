"""Real-process networks on loopback for the demo, tests, the lab and benchmarks. Nothing in a daemon imports
this package."""
