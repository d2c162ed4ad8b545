"""Dynamic membership: workers that pick their own layers (placement), move to heal holes in coverage
(healing), and leave gracefully. Pure decisions here; the worker daemon drives them (worker.agent)."""
