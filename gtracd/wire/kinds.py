"""Per-kind body schemas: signed envelopes (gossip, anchors) and stream frames (inference)."""

from __future__ import annotations

from dataclasses import replace

from .schema import F

MAX_LAYERS = 100_000  # layer indices and model depths anywhere on the wire (and in status files)

PEER_ID = F("str", minlen=1, maxlen=64)
SESSION = F("bin", minlen=16, maxlen=16)
MODES = ("g-trac", "sp", "mr", "larac", "naive", "given")
U63 = 2**63 - 1
BIN_ENVELOPE = F("bin", maxlen=8192)
# a worker's lifecycle as its heartbeat announces it: joining (surveying, no range yet), loading (its chosen
# range, not serving yet), serving, draining (leaving, or moving to `target`: no new sessions)
WORKER_STATES = ("joining", "loading", "serving", "draining")

# every error code a frame may carry (a closed set: a worker cannot invent one to choose its own blame;
# seeker/blame.py decides what each costs)
ERROR_CODES = (
    "bad_frame", "bad_tensor", "unknown_session", "too_long", "busy", "cancelled", "wrong_model",
    "wrong_layers", "internal", "timeout", "closed", "wrong_network", "not_anchor", "unknown_peer", "unbound",
    "injected_failure", "draining",
)

SAMPLING = {
    "temperature": F("float", lo=0.0, hi=100.0),
    "top_k": F("int", lo=0, hi=1_000_000),
    "top_p": F("float", lo=0.0, hi=1.0),
    "seed": F("int", lo=0, hi=U63),
}

ENVELOPE_KINDS: dict[str, dict[str, F]] = {
    "heartbeat": {
        "network": F("str", minlen=1, maxlen=64),
        "model": F("str", maxlen=128, text=True),
        "start": F("int", lo=0, hi=MAX_LAYERS),
        "end": F("int", lo=0, hi=MAX_LAYERS),  # start == end: no range yet (state joining)
        "addrs": F("list", maxlen=16, item=F("str", maxlen=256)),
        "free_tokens": F("int", lo=0, hi=U63),
        "load": F("float", lo=0.0, hi=1e6),
        "version": F("str", maxlen=32),
        "name": F("str", maxlen=64, optional=True, text=True),
        "total_layers": F("int", lo=1, hi=MAX_LAYERS, optional=True),
        # dynamic membership (gtracd.membership); absent: serving, placed by hand
        "state": F("str", choices=WORKER_STATES, optional=True),
        "target": F("list", minlen=2, maxlen=2, item=F("int", lo=0, hi=MAX_LAYERS), optional=True),  # moving to
        "auto": F("bool", optional=True),  # self-placing (--layers auto): it may move to heal a hole
        "max_layers": F("int", lo=0, hi=MAX_LAYERS, optional=True),  # its budget (0: none), for joint placement
        "memory_mib": F("int", lo=0, hi=1 << 40, optional=True),
    },
    # many identities hosted by one process: one gossip message carrying each identity's own signed heartbeat
    "heartbeat_batch": {"network": F("str", minlen=1, maxlen=64),
                        "items": F("list", minlen=1, maxlen=256, item=F("bin", maxlen=4096))},
    "trust_report": {
        "network": F("str", minlen=1, maxlen=64),
        "request_id": SESSION,
        "model": F("str", maxlen=128),
        "mode": F("str", choices=MODES),
        "chain": F("list", minlen=1, maxlen=64, item=PEER_ID),
        # seeker-measured latency of each hop it completed, in chain order (may be shorter than chain)
        "latency_ms": F("list", maxlen=64, item=F("float", lo=0.0, hi=1e7)),
        "outcome": F("str", choices=("success", "failure", "wrong_output")),
        "culprit": F("int", lo=-1, hi=63),  # index into chain; -1 unknown / none
        "tokens": F("int", lo=0, hi=1 << 31),
        # wrong_output (a spot check, seeker/spotcheck.py): chain = [accused, witness, arbiter] (the same layer
        # range), culprit 0; sha256 of the hop input and of each one's output, in chain order
        "evidence": F("map", optional=True, fields={"input": F("bin", minlen=32, maxlen=32),
                                                     "outputs": F("list", minlen=3, maxlen=3,
                                                                  item=F("bin", minlen=32, maxlen=32))}),
    },
    # a fresh ledger epoch, signed by a keyring anchor (the operator's): derivation restarts at it, with these
    # per-peer trust priors (e.g. an experiment's plan); long prior lists are split into several records of
    # the same epoch. Never a worker's claim about itself: only keyring anchors' records are admitted.
    "ledger_epoch": {"network": F("str", minlen=1, maxlen=64), "epoch": F("int", lo=1, hi=U63),
                     "priors": F("dict", maxlen=96, item=F("float", lo=0.0, hi=1.0)),
                     "note": F("str", maxlen=256, optional=True)},
    # an anchor's signature on a ledger checkpoint it computed itself (ledger/checkpoint.py): replicas prune
    # the reports below `boundary` once a quorum of keyring anchors signed the same (boundary, digest, state)
    "ledger_checkpoint": {"network": F("str", minlen=1, maxlen=64), "boundary": F("float", lo=0.0, hi=1e12),
                          "digest": F("bin", minlen=32, maxlen=32), "state_hash": F("bin", minlen=32, maxlen=32),
                          "count": F("int", lo=0, hi=U63)},
    # anchors forward the reporter-signed reports they admitted (each verifiable on its own)
    "ledger_delta": {"network": F("str", minlen=1, maxlen=64),
                     "reports": F("list", maxlen=96, item=BIN_ENVELOPE)},
    # a change of the anchor keyring (gtracd.keyring): the update's signed bytes and a quorum of current anchors'
    # signatures on them; any peer may relay it
    "keyring_update": {"network": F("str", minlen=1, maxlen=64), "update": F("bin", minlen=1, maxlen=16 * 1024),
                       "sigs": F("list", minlen=1, maxlen=64, item=F("map", fields={
                           "key": F("bin", minlen=32, maxlen=32), "sig": F("bin", minlen=64, maxlen=64)}))},
}

TOKENS = F("list", maxlen=1 << 20, item=F("int", lo=0, hi=1 << 31))
NETWORK = F("str", minlen=1, maxlen=64)
# a page of seq runs [a, b) per reporter (hex key); protocols/ledgersync.py caps the runs of a page in total
RUNS = F("dict", maxlen=4096, item=F("list", maxlen=4096, item=F("list", minlen=2, maxlen=2,
                                                                  item=F("int", lo=0, hi=U63))))
REPORT_LIST = F("list", maxlen=256, item=BIN_ENVELOPE)
HEADS = F("dict", maxlen=2048, item=F("map", fields={"n": F("int", lo=0, hi=U63), "h": F("bin", minlen=16, maxlen=16)}))

WIRE_DTYPES = ("float32", "float16", "bfloat16")  # what hidden states may travel as
MAX_VERIFY = 33  # positions of a speculative step: the last token and at most 32 drafts (seeker.speculation)
STEP_HIDDEN = 1 << 18  # values of a step's hidden state (1 MiB in float32: the step frame's cap)
# a speculative step: the last hop answers the token it chooses after every position, not only the last
VERIFY = F("bool", optional=True, since=2)

FRAME_KINDS: dict[str, dict[str, F]] = {
    "open": {
        "session": SESSION,
        "model": F("str", maxlen=128),
        "start": F("int", lo=0, hi=MAX_LAYERS),
        "end": F("int", lo=1, hi=MAX_LAYERS),
        "max_length": F("int", lo=1, hi=1 << 20),
        "sampling": F("map", fields=SAMPLING, optional=True),
        # the identity the seeker wants (a process may serve many) and a fresh nonce it must sign
        "peer": replace(PEER_ID, optional=True),
        "nonce": F("bin", minlen=16, maxlen=32, optional=True),
        # the dtype of the hidden states this session answers (slow links: half the bytes); absent: float32
        "wire_dtype": F("str", choices=WIRE_DTYPES, optional=True, since=2),
    },
    "opened": {"session": SESSION, "cached": F("int", lo=0, hi=1 << 20),
               "max_length": F("int", lo=1, hi=1 << 20, optional=True),  # granted (<= requested)
               "proof": F("bin", minlen=64, maxlen=64, optional=True)},  # wire.binding: identity <-> this host
    # prefill and step both extend the session at absolute position `pos` (positions >= pos are dropped
    # from the cache first). Hop 0 takes `tokens`; later hops take `hidden`.
    "prefill": {
        "session": SESSION,
        "pos": F("int", lo=0, hi=1 << 20),
        "tokens": replace(TOKENS, optional=True),
        "hidden": F("tensor", optional=True),
        "sample": F("bool", optional=True),
        "verify": VERIFY,
    },
    "step": {
        "session": SESSION,
        "pos": F("int", lo=0, hi=1 << 20),
        "tokens": F("list", maxlen=64, item=F("int", lo=0, hi=1 << 31), optional=True),
        "hidden": F("tensor", hi=STEP_HIDDEN, optional=True),
        "sample": F("bool", optional=True),
        "verify": VERIFY,
    },
    "result": {
        "session": SESSION,
        "cached": F("int", lo=0, hi=1 << 20),
        "hidden": F("tensor", optional=True),
        "token": F("int", lo=0, hi=1 << 31, optional=True),  # last hop: sampled token (the seeker reads it)
        # last hop, a `verify` call: the token chosen after each of its positions (speculative decoding)
        "tokens": F("list", maxlen=MAX_VERIFY, item=F("int", lo=0, hi=1 << 31), optional=True, since=2),
        "compute_ms": F("float", lo=0.0, hi=1e9),
    },
    "error": {
        "session": F("bin", maxlen=16, optional=True),
        "code": F("str", choices=ERROR_CODES),
        "message": F("str", maxlen=2048),
        "retry_after_s": F("float", lo=0.0, hi=3600.0, optional=True),  # `busy`: when to try this worker again
    },
    "cancel": {"session": SESSION},
    "close": {"session": SESSION},
    # worker capabilities (what a seeker needs before routing to it)
    "info": {},
    "info_reply": {
        "peer_id": PEER_ID,
        "name": F("str", maxlen=64, text=True),
        "model": F("str", maxlen=128),
        "family": F("str", maxlen=32),
        "start": F("int", lo=0, hi=MAX_LAYERS),
        "end": F("int", lo=1, hi=MAX_LAYERS),
        "total_layers": F("int", lo=1, hi=MAX_LAYERS),
        "hidden_size": F("int", lo=1, hi=1 << 20),
        "free_tokens": F("int", lo=0, hi=U63),
        "sessions": F("int", lo=0, hi=1 << 20),
        "version": F("str", maxlen=32),
    },
    # the model card (catalog/fingerprint.py): which files, then each in parts; the seeker checks them and the
    # weights digest against the fingerprint it pinned, then reads every text with them (tokens/)
    "card": {},
    "card_index": {"weights": F("str", minlen=64, maxlen=64), "files": F("dict", maxlen=16, item=F("int", lo=0, hi=1 << 30))},
    "card_part": {"name": F("str", minlen=1, maxlen=64), "offset": F("int", lo=0, hi=1 << 30)},
    "card_data": {"name": F("str", minlen=1, maxlen=64), "offset": F("int", lo=0, hi=1 << 30), "data": F("bin", maxlen=1 << 20)},
    # ---- ledger protocol (/gtrac/ledger/2.0.0): seeker -> anchor submissions, anti-entropy, seeker pulls.
    # Reports travel as the reporter-signed envelope bytes, so every receiver re-verifies each one.
    "submit": {"network": NETWORK, "reports": REPORT_LIST},
    "ack": {"admitted": F("int", lo=0, hi=1 << 20), "duplicate": F("int", lo=0, hi=1 << 20),
            "pending": F("int", lo=0, hi=1 << 20), "dropped": F("dict", maxlen=32, item=F("int", lo=0, hi=1 << 20)),
            # per submitted report, in order: admitted | duplicate | pending | the drop reason
            "results": F("list", maxlen=256, item=F("str", maxlen=32)),
            # the anchor's clock, in the answer to an empty submission only (`gtracd doctor`: clock skew)
            "now": F("float", lo=0.0, hi=1e11, optional=True)},
    # anti-entropy (protocols/ledgersync.py), every frame a bounded page with `last` on the final one:
    # the asker's heads per reporter (hex public key): how many reports it holds and an XOR set hash
    "sync_digest": {"network": NETWORK, "heads": HEADS, "last": F("bool"),
                    "checkpoint": F("float", lo=0.0, hi=1e12, optional=True)},  # the asker's adopted boundary
    # a later certified checkpoint than the asker's, before the diff: the fold state in chunks, the quorum's
    # signed `ledger_checkpoint` envelopes on the first page
    "sync_checkpoint": {"boundary": F("float", lo=0.0, hi=1e12), "digest": F("bin", minlen=32, maxlen=32),
                        "state_hash": F("bin", minlen=32, maxlen=32),
                        "count": F("int", lo=0, hi=U63), "state": F("bin", maxlen=1 << 20),
                        "proof": F("list", maxlen=64, item=F("bin", maxlen=2048), optional=True),
                        "last": F("bool")},
    # the responder's seqs, as runs, for every reporter whose head differs (empty: none held)
    "sync_diff": {"runs": RUNS, "last": F("bool")},
    # the seqs the asker lacks, as runs; answered by `reports` pages
    "sync_want": {"runs": RUNS, "last": F("bool")},
    "reports": {"reports": REPORT_LIST, "more": F("bool")},
}

