"""Size caps. Gossip payloads must stay well under 1 MiB: py-libp2p silently drops bigger ones."""

from __future__ import annotations

from dataclasses import dataclass

KIB, MIB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Limits:
    envelope: dict
    frame: dict
    tensor_elements: int = 1 << 24

    def envelope_cap(self, kind: str) -> int:
        return self.envelope.get(kind, 0)

    def frame_cap(self, kind: str) -> int:
        return self.frame.get(kind, 0)

    @property
    def max_envelope(self) -> int:
        return max(self.envelope.values())

    @property
    def max_frame(self) -> int:
        return max(self.frame.values())


DEFAULT_LIMITS = Limits(
    envelope={
        "heartbeat": 4 * KIB,
        "heartbeat_batch": 512 * KIB,
        "trust_report": 8 * KIB,
        "ledger_epoch": 8 * KIB,
        "ledger_delta": 768 * KIB,
        "ledger_checkpoint": 2 * KIB,
        "keyring_update": 32 * KIB,
    },
    frame={
        "open": 4 * KIB,
        "prefill": 64 * MIB + 4 * KIB,
        "step": 1 * MIB,
        "result": 64 * MIB + 4 * KIB,
        "error": 8 * KIB,
        "cancel": 1 * KIB,
        "close": 1 * KIB,
        "opened": 4 * KIB,
        "info": 1 * KIB,
        "info_reply": 4 * KIB,
        "card": 1 * KIB,
        "card_index": 4 * KIB,
        "card_part": 1 * KIB,
        "card_data": 1 * MIB + 4 * KIB,
        "submit": 2 * MIB + 4 * KIB,
        "ack": 4 * KIB,
        "sync_digest": 512 * KIB,  # 2048 heads of ~100 bytes
        "sync_checkpoint": 1 * MIB + 256 * KIB,  # a 1 MiB chunk of state + the proof
        "sync_diff": 1 * MIB,  # 4096 runs + up to 4096 reporter keys
        "sync_want": 1 * MIB,
        "reports": 2 * MIB + 4 * KIB,
    },
)
