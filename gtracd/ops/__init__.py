"""Operating a daemon: what a monitoring system scrapes (`metrics`), logs a machine reads (`logs`), and the
bucketed histograms a role fills as requests end (`histogram`). Pure: the metrics are computed from a
daemon's status snapshot (the dict its status file holds), never from live objects."""
