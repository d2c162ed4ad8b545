"""Which model a network serves, torch-free: the built-in names, the local model cache, and the fingerprints
by which seekers pin a model and workers chain (the weights themselves are engine/'s)."""
