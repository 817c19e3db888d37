#!/usr/bin/env python3
"""Writes the committed seed corpus of the fuzz targets.

decode_frame: every frame of testdata/anpx-vectors/frames.json, one file per
frame. reassemble: whole vector messages as WIRE records, plus SYNTH scripts
for the layouts and limits the vectors do not cover (record format: see
fuzz_targets/reassemble.rs). ws_frames: WebSocket frames as each side
receives them, after a role byte and a read size (fuzz_targets/ws_frames.rs).

Run from anywhere: python3 fuzz/make-seeds.py
"""

import json
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
VECTORS = FUZZ.parent / "testdata" / "anpx-vectors" / "frames.json"
# Larger seeds slow every fuzzing run down and bloat the repository.
MAX_SEED = 70000

WIRE, SYNTH, TICK, EXPIRE = 0, 1, 2, 3
REQUEST, RESPONSE, ERROR = 0, 1, 2
META, CHUNKED, NEXT = 0x20, 0x40, 0x80
FINAL_BYTE, FINAL_WORD, BODY = 1, 2, 4


def wire(frame):
    return bytes([WIRE]) + struct.pack(">H", len(frame)) + frame


def synth(kind, id_no, flags=0, index=0, total=0, final=0, body_len=None):
    a = kind | (id_no << 2) | flags
    d = final | (BODY if body_len is not None else 0)
    return bytes([SYNTH, a, index, total, d]) + struct.pack(">H", body_len or 0)


def tick(ms):
    return bytes([TICK]) + struct.pack(">H", ms)


def expire():
    return bytes([EXPIRE])


def write(target, name, data):
    out = FUZZ / "corpus" / target
    out.mkdir(parents=True, exist_ok=True)
    (out / f"seed-{name}").write_bytes(data)


def main():
    vectors = json.loads(VECTORS.read_text())["cases"]
    cases = {c["name"]: [bytes.fromhex(h) for h in c["frames_hex"]] for c in vectors}

    for name, frames in cases.items():
        for n, frame in enumerate(frames):
            if len(frame) <= MAX_SEED:
                write("decode_frame", f"{name}-{n}", frame)

    for name in ["request_chunked_small", "response_chunked"]:
        write("reassemble", f"wire-{name}", b"".join(wire(f) for f in cases[name]))
    singles = ["request_get_no_body", "response_200_json", "error_frame", "unknown_tag_skipped"]
    write("reassemble", "wire-single-frames", b"".join(wire(cases[n][0]) for n in singles))

    chunked = CHUNKED | NEXT
    write(
        "reassemble",
        "synth-request-meta-first",
        synth(REQUEST, 0, chunked | META, body_len=1000)
        + synth(REQUEST, 0, chunked, body_len=1000)
        + synth(REQUEST, 0, chunked, final=FINAL_WORD, body_len=1000),
    )
    write(
        "reassemble",
        "synth-response-meta-last",
        synth(RESPONSE, 1, chunked, total=3, body_len=700)
        + synth(RESPONSE, 1, chunked, total=3, body_len=700)
        + synth(RESPONSE, 1, chunked | META, total=3, final=FINAL_BYTE, body_len=10),
    )
    write(
        "reassemble",
        "synth-error-chunked",
        synth(ERROR, 2, chunked, body_len=5)
        + synth(ERROR, 2, chunked, final=FINAL_BYTE, body_len=5),
    )
    write(
        "reassemble",
        "synth-partials-and-expiry",
        b"".join(synth(REQUEST, i, chunked | META, body_len=10) for i in range(5))
        + tick(600)
        + synth(REQUEST, 0, chunked, body_len=10)
        + tick(600)
        + expire()
        + synth(REQUEST, 0, chunked, final=FINAL_BYTE)
        + synth(REQUEST, 4, chunked | META, body_len=10)
        + tick(1000)
        + expire(),
    )
    write(
        "reassemble",
        "synth-too-large",
        synth(REQUEST, 3, chunked | META, body_len=4000)
        + synth(REQUEST, 3, chunked, body_len=100)
        + synth(RESPONSE, 3, chunked, body_len=2000)
        + synth(RESPONSE, 3, chunked, body_len=100),
    )

    # receiver_budget: operations of three bytes, [op, a, b] (see
    # fuzz_targets/receiver_budget.rs); the input's length modulo 3 picks
    # the gateway's features, so each script is written with every one.
    request, window, cancel, respond, piece, fail, read, later = 0, 2, 3, 6, 7, 8, 9, 10
    scripts = {
        # Whole requests with their head, answered streamed in pieces.
        "whole-requests": [[request, i, 3] for i in range(6)]
        + [[respond, 0, 0], [piece, 0, 41], [piece, 0, 40], [read, 1, 5], [later, 0, 200]],
        # Chunked requests with and without their head, a window update,
        # a cancel, control messages and garbage.
        "chunked": [[request, 0x90, 0x40], [1, 0x10, 0x41], [1, 0x30, 0x81], [cancel, 0x10, 0],
                    [window, 0x90, 9], [4, 0, 0], [5, 1, 20]],
        # More requests than the cap, then failures and time.
        "past-the-cap": [[request, i, 1] for i in range(12)]
        + [[fail, 0, 0], [fail, 1, 0], [respond, 2, 0], [piece, 2, 201], [later, 0, 255]],
    }
    for name, ops in scripts.items():
        data = bytes(b for op in ops for b in op)
        for pad in range(3):
            write("receiver_budget", f"{name}-{pad}", data + bytes(pad))

    ws_frames()


def ws_frame(opcode, payload, key=None, fin=True):
    """One WebSocket frame; masked with `key` (a client's) if given."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        length = bytes([n])
    elif n < 65536:
        length = bytes([126]) + struct.pack(">H", n)
    else:
        length = bytes([127]) + struct.pack(">Q", n)
    if key is None:
        return bytes([first]) + length + payload
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([first, length[0] | 0x80]) + length[1:] + key + masked


def ws_frames():
    key = b"\x01\x02\x03\x04"
    server, client = 0, 1
    seeds = {
        # A receiver's messages at the gateway: binary, a ping, text.
        "to-gateway": bytes([server, 7])
        + ws_frame(2, b"hello", key) + ws_frame(9, b"p", key) + ws_frame(1, b"text", key),
        # A gateway's fragmented text with a ping between, then a close.
        "to-receiver": bytes([client, 3])
        + ws_frame(1, b"ab", fin=False) + ws_frame(9, b"x") + ws_frame(0, b"c")
        + ws_frame(8, struct.pack(">H", 1000) + b"bye"),
        # The 16-bit length form.
        "long-length": bytes([client, 50]) + ws_frame(2, bytes(range(256)) * 2),
    }
    for name, data in seeds.items():
        write("ws_frames", name, data)


if __name__ == "__main__":
    main()
