from gtracd.harness.launch import WorkerProc, start_workers, stop_all  # noqa: F401
