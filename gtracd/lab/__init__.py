"""The lab: an emulated edge network of many virtual peers on one machine, and the paper's experiments.

    profiles.py   behaviour profiles and host types (profiles/*.toml)                      (pure)
    plan.py       deployment plans: the reference's CSV columns, validation, a seeded generator (pure)
    behaviour.py  what a virtual peer does on each stage: delay, stall, CPU, corruption, crash (pure)
    stats.py      Wilson intervals, percentiles                                             (pure)
    host.py       `gtracd lab host`: one process serving many virtual peers on real shards (torch)
    network.py    `gtracd lab up`: anchors + host processes on loopback, stopped as one
    sweep.py      `gtracd lab sweep`: modes x lengths through a real seeker, epochs, the logs
    logs.py       the reference's three CSV logs and summary.json                            (pure)
    figures.py    the paper's figures (matplotlib, optional extra `lab`)
"""
