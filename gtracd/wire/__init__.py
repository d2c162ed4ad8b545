"""Wire format (pure, no I/O): canonical msgpack, per-kind schemas, signed envelopes, stream frames,
the tensor codec and the verifier that drops bad messages and counts why."""

from .codec import packb, unpackb
from .envelope import Envelope, Signer, decode_envelope, encode_envelope
from .frames import decode_frame, encode_frame
from .limits import Limits
from .tensor import DTYPES, WireTensor, decode_tensor, encode_tensor
from .verifier import Verifier

__all__ = [
    "DTYPES", "Envelope", "Limits", "Signer", "Verifier", "WireTensor", "decode_envelope", "decode_frame",
    "decode_tensor", "encode_envelope", "encode_frame", "encode_tensor", "packb", "unpackb",
]
