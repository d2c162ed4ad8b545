"""What every daemon process runs, whatever its role: the libp2p node, status files, options, signals and
the ready file."""
