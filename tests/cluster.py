from gtracd.launch import WorkerProc, start_workers, stop_all  # noqa: F401
