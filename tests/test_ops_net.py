"""Operating a real network: every role's /metrics scraped and parsed by prometheus-client's own text parser
while the network generates, with the counters moving as they should; /health saying why a seeker is not
ready; a request sent before the seeker heard any worker waiting for a route instead of failing (503 no
chain); JSON log lines in a rotating file."""

from __future__ import annotations

import json

import pytest
import trio

from gtracd.wire.versions import SPEAKS

pytest.importorskip("torch")
httpx = pytest.importorskip("httpx")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from gtracd.harness.controlnet import ControlNet, free_port  # noqa: E402
from gtracd.harness.launch import start_procs, stop_all  # noqa: E402

from .models import char_tokenizer, tiny_llama  # noqa: E402
from .waiting import until  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.procs, pytest.mark.timeout(240)]


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, through the Prometheus text parser."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(ss: dict, name: str, **labels) -> float | None:
    return ss.get((name, tuple(sorted(labels.items()))))


async def scrape(client, port: int) -> dict:
    r = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


async def published(get, pred, timeout: float = 10.0):
    """Poll `await get()` until `pred(result)` (bounded): what a daemon hears takes a heartbeat or two."""
    with trio.fail_after(timeout):
        while True:
            out = await get()
            if pred(out):
                return out
            await trio.sleep(0.2)


async def test_metrics_health_readiness_and_json_logs_on_a_real_network(tmp_path):
    folder = tiny_llama(tmp_path / "tiny", layers=6)
    char_tokenizer(folder)
    ports = {n: free_port() for n in ("anchor", "seeker", "w0", "w1", "api")}
    cn = ControlNet(root=tmp_path / "net", network="t-ops", heartbeat_s=1.0, sync_s=1.0, node_timeout_s=5.0)
    cn.anchor_extra = ["--metrics", str(ports["anchor"])]  # a bare port: loopback
    cn.start(["a1"])
    boot = ",".join(cn.anchor_addrs.values())
    common = ["--network", cn.network, "--bootstrap", boot, "--data-dir", str(cn.root), "--keystore", str(cn.keystore)]
    log_file = tmp_path / "seeker.log"
    seeker = start_procs([(["--role", "seeker", "--name", "s", "--log-level", "info", "--log-format", "json",
                            "--log-file", str(log_file), "--metrics", f"127.0.0.1:{ports['seeker']}"] + common
                           + ["serve", "--http", f"127.0.0.1:{ports['api']}", "--model", str(folder),
                              "--node-timeout-s", "5", "--sync-s", "1", "--route-wait-s", "90",
                              "--request-timeout-s", "120"], "s")], 60, cn.root)
    workers = []
    try:
        async with httpx.AsyncClient(timeout=150) as client, trio.open_nursery() as n:
            h = await client.get(f"http://127.0.0.1:{ports['seeker']}/health")
            assert h.status_code == 503 and not h.json()["ready"] and "discovering" in h.json()["why"]
            api_h = await client.get(f"http://127.0.0.1:{ports['api']}/health")
            assert api_h.status_code == 503 and api_h.json()["why"] == h.json()["why"]
            answer: list = []

            async def early_request():  # sent before any worker is up: waits for a route, then answers
                answer.append(await client.post(f"http://127.0.0.1:{ports['api']}/v1/completions",
                                                json={"model": str(folder), "prompt": "hello", "max_tokens": 8}))

            n.start_soon(early_request)
            ss = await published(lambda: scrape(client, ports["seeker"]),  # in, waiting for a route
                                 lambda ss: value(ss, "gtracd_seeker_requests_in_flight") == 1)
            assert value(ss, "gtracd_ready") == 0
            workers.extend(await trio.to_thread.run_sync(lambda: start_procs(
                [(["--role", "worker", "--layers", f"{a}:{b}", "--model", str(folder), "--ephemeral", "--name", f"w{i}",
                   "--heartbeat-s", "1", "--drain-s", "1", "--metrics", str(ports[f"w{i}"])] + common, f"w{i}")
                 for i, (a, b) in enumerate([(0, 3), (3, 6)])], 120, cn.root)))
            await until(lambda: answer or None, 150, "the early request to be answered")
        r = answer[0]
        assert r.status_code == 200, r.text
        tokens = r.json()["usage"]["completion_tokens"]
        assert tokens > 0
        async with httpx.AsyncClient(timeout=30) as client:
            h = await published(lambda: client.get(f"http://127.0.0.1:{ports['seeker']}/health"),
                                lambda h: h.status_code == 200)
            assert h.json()["ready"] and h.json()["role"] == "seeker"
            ss = await published(lambda: scrape(client, ports["seeker"]),
                                 lambda ss: value(ss, "gtracd_seeker_requests_total", outcome="ok") == 1)
            assert value(ss, "gtracd_seeker_tokens_total") == tokens
            assert value(ss, "gtracd_seeker_ttft_seconds_count") == 1
            assert value(ss, "gtracd_seeker_token_seconds_count") >= tokens - 1  # one per decoded token
            # speculative decoding (on by default): each trip checks drafts; kept drafts need no trip of their own
            trips, kept = (value(ss, "gtracd_seeker_speculation_total", event=e) for e in ("trips", "accepted"))
            passes = tokens - 1 - kept  # forward passes after the prefill: plain steps and speculative trips
            assert trips >= 0 and kept <= value(ss, "gtracd_seeker_speculation_total", event="drafted")
            assert value(ss, "gtracd_seeker_ttft_seconds_bucket", le="+Inf") == 1
            assert value(ss, "gtracd_ready") == 1 and value(ss, "gtracd_workers_alive") == 2
            info = [dict(k[1]) for k in ss if k[0] == "gtracd_build_info"]
            assert len(info) == 1 and info[0]["role"] == "seeker" and info[0]["network"] == "t-ops"
            assert (info[0]["wire_min"], info[0]["wire_max"]) == tuple(str(v) for v in SPEAKS)
            peers = {dict(k[1])["peer"] for k in ss if k[0] == "gtracd_worker_trust"}
            assert peers == {w.peer_id for w in workers}
            for i in range(len(workers)):
                ws = await scrape(client, ports[f"w{i}"])
                assert (value(ws, "gtracd_worker_frames_total") or 0) > passes  # open, prefill, a step per pass
                assert value(ws, "gtracd_worker_state", state="serving") == 1
                assert value(ws, "gtracd_worker_batch_size_count") >= passes - trips  # plain steps (trips: alone)
            # the seeker's trust report reaches the anchor: its admission counter moves
            a = await published(lambda: scrape(client, ports["anchor"]),
                                lambda a: (value(a, "gtracd_anchor_reports_admitted_total") or 0) >= 1, 30)
            assert value(a, "gtracd_ledger_reports") >= 1
            assert (await client.get(f"http://127.0.0.1:{ports['anchor']}/nope")).status_code == 404
            assert (await client.post(f"http://127.0.0.1:{ports['anchor']}/metrics")).status_code == 405
    finally:
        stop_all(seeker + workers)  # the seeker first: it closes its kept sessions, the workers then stop at once
        cn.stop_all()
    lines = log_file.read_text().splitlines()
    assert lines, "the seeker logged nothing at info"
    for line in lines:
        rec = json.loads(line)
        assert {"ts", "level", "logger", "msg"} <= set(rec)
