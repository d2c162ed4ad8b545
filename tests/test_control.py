"""Control plane on loopback with real processes: 3 anchors, a testbed fleet of 12 worker identities,
2 seekers emitting trust reports. Convergence, kill -9 and restart of an anchor (disk + anti-entropy, nothing
lost), a partition and its heal, identical derived trust everywhere, and `gtracd status`."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from gtracd.harness.controlnet import ControlNet

from .waiting import until

pytestmark = pytest.mark.procs

REPLICAS = ("a1", "a2", "a3", "s1", "s2")


def emitted(cn: ControlNet, after: float = 0.0, before: float = float("inf")) -> set[tuple]:
    return {tuple(e["key"]) for e in cn.events() if e["ev"] == "report" and after <= e["t"] < before}


def held_by_all(cn: ControlNet, keys: set[tuple], replicas=REPLICAS) -> bool:
    h = cn.holders()
    return bool(keys) and all(set(replicas) <= h.get(k, set()) for k in keys)


@pytest.fixture
def net(tmp_path):
    cn = ControlNet(root=tmp_path, network="t-control", heartbeat_s=1.0, sync_s=1.0, node_timeout_s=5.0)
    cn.start(["a1", "a2", "a3"], fleet=12, seekers={"s1": 2.0, "s2": 2.0})
    yield cn
    cn.stop_all()


@pytest.mark.smoke
async def test_reports_reach_every_replica_and_survive_anchor_crash_partition_and_heal(net):
    cn = net
    # 1. a report reaches every anchor and every seeker
    first = await until(lambda: emitted(cn), 30, "a first report")  # a fixed set: the emitted ones keep growing
    await until(lambda: held_by_all(cn, first), 30, "a first report on all 5 replicas")

    # 2. kill -9 one anchor: the others carry on
    cn.kill9("a3")
    t_kill = time.time()
    await until(lambda: len(emitted(cn, t_kill + 0.5)) >= 4, 20, "reports after the crash")
    after_kill = emitted(cn, t_kill + 0.5)
    await until(lambda: held_by_all(cn, after_kill, ("a1", "a2", "s1", "s2")), 20, "the survivors to converge")

    # 3. restart it: it reloads what it had from disk and anti-entropy brings the rest; nothing is lost
    cn.restart_anchor("a3")
    t_restart = time.time()
    on_disk = [e for e in cn.events("a3") if e["ev"] == "have" and e["via"] == "disk" and e["t"] >= t_kill]
    assert on_disk, "the restarted anchor should reload its fsync'd log"
    so_far = emitted(cn, 0, t_restart)
    await until(lambda: held_by_all(cn, so_far), 30, "the restarted anchor to hold every report")

    # 4. partition {a1, a2, s1, fleet} | {a3, s2}: both sides keep admitting; then heal and converge
    cn.partition([["a1", "a2", "s1", "fleet"], ["a3", "s2"]])
    t_cut = time.time()
    await until(lambda: len(emitted(cn, t_cut + 0.5)) >= 6, 20, "reports during the partition")

    def crossed_one_side_only():  # a report admitted on s1's side (a1 and a2 hold it) that a3 lacks
        h = cn.holders()
        return any({"a1", "a2"} <= h.get(k, set()) and "a3" not in h.get(k, set())
                   for k in emitted(cn, t_cut + 0.5))

    await until(crossed_one_side_only, 20, "the cut to keep s1's reports from a3")
    cn.heal()
    t_heal = time.time()
    upto = emitted(cn, 0, t_heal)
    await until(lambda: held_by_all(cn, upto), 30, "every replica to converge after the heal")

    # 5. identical derived trust on every replica once they hold the same reports
    #    (seekers restarted with no load: their replica comes back from disk and they pull the rest)
    cn.set_seeker_rate("s1", 0.0)
    cn.set_seeker_rate("s2", 0.0)  # a clean stop first: each outbox drains to an anchor
    all_reports = emitted(cn)
    await until(lambda: held_by_all(cn, all_reports), 30, "every emitted report on every replica")
    trust = await until(lambda: same_trust(cn), 15, "bit-identical trust on all 5 replicas")
    assert len(trust) >= 3 and all(0.0 <= t <= 1.0 for t in trust.values())  # at least one whole chain rated
    for name in ("s1", "s2"):  # a report the stop could not hand over in its 2 s (a loaded machine) is kept on
        # disk and handed over by the restarted seeker: its outbox empties either way
        def emptied(name=name):
            st = cn.status(name) or {}
            return st if st.get("outbox") == 0 else None

        st = await until(emptied, 20, f"{name}'s outbox to empty")
        assert st["ledger"]["loaded_from_disk"] > 0

    # 6. gtracd status: machine- and human-readable
    out = subprocess.run([sys.executable, "-m", "gtracd.cli", "status", "--json", "--data-dir", str(cn.root)],
                         capture_output=True, text=True, timeout=30)
    docs = json.loads(out.stdout)
    assert sorted(d["role"] for d in docs if not d["stale"]) == ["anchor"] * 3 + ["fleet", "seeker", "seeker"]
    a1 = next(d for d in docs if d["name"] == "a1")
    assert a1["ledger"]["reports"] == len(all_reports) and len(a1["anchors"]) == 2
    assert "dropped" in a1 and "admission_dropped" in a1
    s1 = next(d for d in docs if d["name"] == "s1")
    assert len(s1["workers"]) == 12 and all(w["alive"] for w in s1["workers"].values())
    human = subprocess.run([sys.executable, "-m", "gtracd.cli", "status", "--data-dir", str(cn.root)],
                           capture_output=True, text=True, timeout=30)
    assert human.returncode == 0 and "anchor a1" in human.stdout and "seeker s2" in human.stdout


def same_trust(cn):
    st = [cn.status(n) for n in REPLICAS]
    if any(s is None or "ledger" not in s for s in st) or len({s["ledger"]["reports"] for s in st}) != 1:
        return False
    trusts = {json.dumps(s["trust"], sort_keys=True) for s in st}
    return st[0]["trust"] if len(trusts) == 1 else False


@pytest.mark.model
async def test_seeker_generates_over_heartbeats_reports_to_anchors_and_routes_with_every_anchor_down(tmp_path):
    """Real inference (tiny Llama, 2 workers) on a network: the seeker finds the workers by heartbeat, its
    trust reports reach the anchors; with every anchor down it still routes (cached view, heartbeats straight
    from the workers) and keeps its report in the outbox, which the next run hands over."""
    from gtracd.harness.launch import start_workers, stop_all

    from .models import char_tokenizer, tiny_llama

    folder = char_tokenizer(tiny_llama(tmp_path / "tiny", layers=4))
    cn = ControlNet(root=tmp_path / "net", network="t-gen", heartbeat_s=1.0, sync_s=1.0, node_timeout_s=6.0)
    cn.start(["a1", "a2"])
    boot = ",".join(cn.anchor_addrs.values())
    net_flags = ["--network", cn.network, "--bootstrap", boot, "--data-dir", str(cn.root)]
    ws = start_workers(str(folder), [(0, 2), (2, 4)], extra=net_flags + ["--heartbeat-s", "1"])

    def generate(*what: str):
        cmd = [sys.executable, "-m", "gtracd.cli", "--role", "seeker", *net_flags, "--keystore", str(cn.keystore),
               "--key", "s1", "--name", "s1", "generate", "--model", str(folder), *(what or ("--prompt", "Hello")),
               "--max-new-tokens", "5", "--json", "--node-timeout-s", "6", "--sync-s", "1"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def anchor_reports(name):
        st = cn.status(name) or {}
        return st.get("ledger", {}).get("reports", 0)

    try:
        r = generate()
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout.splitlines()[-1])
        assert len(out["tokens"]) >= 1 and out["chain"] and "error" not in out
        await until(lambda: anchor_reports("a1") == 1 and anchor_reports("a2") == 1, 20, "the report on both anchors")

        cn.stop("a1")
        cn.stop("a2")
        r2 = generate()  # every anchor down
        assert r2.returncode == 0, r2.stderr
        assert "error" not in json.loads(r2.stdout.splitlines()[-1])
        assert "kept in the outbox" in r2.stderr

        cn.restart_anchor("a1")
        # until a1 hears both workers, it holds the reports naming them as pending (the seeker keeps them in its
        # outbox and retries: nothing is lost, but a run that ends first leaves them for the next one)
        await until(lambda: (cn.status("a1") or {}).get("known_workers", 0) >= 2, 60, "a1 to hear the workers")
        r3 = generate()  # the outbox from run 2 is handed over with run 3's report
        assert r3.returncode == 0, r3.stderr
        await until(lambda: anchor_reports("a1") == 3, 20, "all three reports on the restarted anchor")
        chat = generate("--chat", "--turn", "Hi", "--turn", "Again")  # two requests; the second reuses the first's
        assert chat.returncode == 0, chat.stderr
        turns = [json.loads(x) for x in chat.stdout.splitlines() if x.startswith("{")]
        assert len(turns) == 2 and turns[1]["cached_before"] > 0 and turns[1]["prompt_tokens"] > turns[0]["prompt_tokens"]
        await until(lambda: anchor_reports("a1") == 5, 20, "a report per chat turn on the anchor")
    finally:
        cn.stop_all()
        assert stop_all(ws) == [0, 0]
