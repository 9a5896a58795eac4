#!/usr/bin/env python3
"""Initial seeds for the fuzz targets, from real data: the documents recorded
from a private network (crates/dir/testdata/private-net), the messages and
cells Braid and C-tor exchange. Writes OUT/<target>/<name> files, each in
the target's input layout (arbitrary's: a leading u8 is one byte, a Vec
not in last position is "1, element" pairs ended by 0, the last &str or
&[u8] takes the rest).

    python3 fuzz/seeds.py OUT

The committed corpus (fuzz/corpus) is these seeds plus what short runs
found, minimised with `cargo fuzz cmin` (see fuzz/README.md).
"""

import os
import struct
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
NET = os.path.join(ROOT, "..", "crates", "dir", "testdata", "private-net")


def read(name):
    with open(os.path.join(NET, name), "rb") as f:
        return f.read()


CONSENSUS = read("consensus-microdesc")
CERTS = read("certs")
MICRODESCS = read("microdescs")


def split_at(text, keyword):
    """Documents of `text` starting at lines whose first word is `keyword`."""
    out, cur = [], None
    for line in text.splitlines(keepends=True):
        if line.split()[:1] == [keyword]:
            if cur is not None:
                out.append(cur)
            cur = b""
        if cur is not None:
            cur += line
    if cur is not None:
        out.append(cur)
    return out


def lines_starting(text, prefix):
    return [l for l in text.splitlines() if l.startswith(prefix)]


def corrupt_first_signature(text):
    """The consensus with one byte of its first signature changed."""
    i = text.index(b"-----BEGIN SIGNATURE-----\n") + len(b"-----BEGIN SIGNATURE-----\n") + 10
    c = b"A" if text[i : i + 1] != b"A" else b"B"
    return text[:i] + c + text[i + 1 :]


def var_cell(cmd, body, circ=0):
    return struct.pack(">IBH", circ, cmd, len(body)) + body


def fixed_cell(cmd, body, circ=0):
    return (struct.pack(">IB", circ, cmd) + body).ljust(514, b"\0")


def relay_body(cmd, stream, data):
    """A relay cell v0 plaintext: cmd, recognized 0, stream, digest, length."""
    return (struct.pack(">BHHIH", cmd, 0, stream, 0, len(data)) + data).ljust(509, b"\0")


def seeds():
    s = {}
    # Directory documents.
    s["dir_consensus"] = {
        "all-certs": b"\x07" + CONSENSUS,
        "four-authorities": b"\x0f" + CONSENSUS,
        "five-authorities": b"\x17" + CONSENSUS,
        "two-authorities": b"\x1f" + CONSENSUS,
        "two-certs": b"\x03" + CONSENSUS,
        "one-cert": b"\x01" + CONSENSUS,
        "bad-signature": b"\x07" + corrupt_first_signature(CONSENSUS),
        "bad-signature-four": b"\x0f" + corrupt_first_signature(CONSENSUS),
    }
    certs = split_at(CERTS, b"dir-key-certificate-version")
    s["dir_authority_certs"] = {
        "all": b"\x07" + CERTS,
        "two-configured": b"\x03" + CERTS,
        "before": b"\x0f" + CERTS,
        "after": b"\x17" + CERTS,
        **{f"cert{i}": b"\x07" + c for i, c in enumerate(certs)},
    }
    mds = split_at(MICRODESCS, b"onion-key")
    s["dir_microdescs"] = {
        "all-listed": b"\xff" + MICRODESCS,
        "some-listed": b"\x55" + MICRODESCS,
        "none-listed": b"\x00" + MICRODESCS,
        **{f"md{i}": b"\x01" + m for i, m in enumerate(mds[:3])},
    }
    weights = lines_starting(CONSENSUS, b"bandwidth-weights")[0]
    s["dir_bandwidth_weights"] = {
        # (scale: 0 for the default, line)
        "recorded": b"\x00\x00" + weights,
        "recorded-scale": b"\xff\xff" + weights,
        "items": b"\x00\x00" + weights.split(b" ", 1)[1],
    }
    s["dir_port_policy"] = {
        f"p{i}": l[2:] for i, l in enumerate(sorted(set(lines_starting(MICRODESCS, b"p "))))
    }
    s["dir_port_policy"].update({"web": b"accept 80,443", "reject": b"reject 1-1024,6660-6669"})
    ids = {}
    for i, l in enumerate(lines_starting(CONSENSUS, b"r ")[:2]):
        ids[f"b64-{i}"] = l.split()[2]
    for i, l in enumerate(lines_starting(CONSENSUS, b"s ")[:2]):
        ids[f"flags-{i}"] = l[2:]
    ids["hex"] = read("authorities").splitlines()[0]
    ids["dollar-hex"] = b"$" + read("authorities").splitlines()[1]
    for i, l in enumerate(lines_starting(MICRODESCS, b"id ed25519")[:1]):
        ids[f"ed-{i}"] = l.split()[2]
    s["dir_relay_ids_and_flags"] = ids
    fp = read("authorities").splitlines()[0].decode()
    s["dir_guard_state"] = {
        "one": (
            f'version = 1\n\n[[guard]]\nrsa_id = "{fp}"\nnickname = "relay2"\n'
            f'sampled_on = 1795258000\nsampled_by = "0.1.0"\nlisted = true\n'
            f"confirmed_on = 1795258100\nconfirmed_idx = 0\n"
        ).encode(),
        "unlisted": (
            f'version = 1\n\n[[guard]]\nrsa_id = "{fp}"\nsampled_on = 1\nlisted = false\n'
            f"unlisted_since = 1795258000\npb_use_attempts = 3.5\n"
        ).encode(),
    }
    get = b"GET /tor/status-vote/current/consensus-microdesc HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    s["dir_serve_request"] = {
        "consensus": b"\x07\x01" + get,
        "consensus-bytewise": b"\x00\x01" + get,
        "micro": b"\x10\x00micro/d/" + b"A" * 43,
        "keys": b"\x10\x00keys/all",
        "keys-fp": b"\x10\x00keys/fp-sk/" + b"0123456789ABCDEF0123456789ABCDEF01234567-" + b"1" * 40,
    }
    # HTTP from a C-tor DirPort: (max_body / 32, repetitions, [no read sizes], response).
    head = (
        b"HTTP/1.0 200 OK\r\nDate: Sat, 21 Nov 2026 10:58:15 GMT\r\n"
        b"Content-Type: text/plain\r\nX-Your-Address-Is: 127.0.0.1\r\n"
        b"Content-Encoding: identity\r\nExpires: Sat, 21 Nov 2026 10:58:30 GMT\r\n\r\n"
    )
    s["client_http_response"] = {
        "consensus": b"\xff\x00\x00" + head + CONSENSUS[:4000],
        "microdescs": b"\xff\x00\x00" + head + MICRODESCS,
        "over-body-limit": b"\x10\x00\x00" + head + MICRODESCS,
        "over-head-limit": b"\xff\x3f\x00" + b"X-Padding: " + b"x" * 500 + b"\r\n",
        "repeated": b"\x80\x08\x01\x00\x10\x00" + head + b"onion-key\n",
        "not-found": b"\x10\x00\x00HTTP/1.0 404 Not found\r\n\r\n",
        "deflate": b"\x10\x00\x00HTTP/1.0 200 OK\r\nContent-Encoding: deflate\r\n\r\nx\x9c",
    }
    # SOCKS5 as curl and Tor Browser send it: ([no chunk sizes], bytes).
    s["client_socks"] = {
        "hostname": b"\x00" + b"\x05\x01\x00" + b"\x05\x01\x00\x03\x0bexample.com\x00\x50",
        "ipv4": b"\x00" + b"\x05\x01\x00" + b"\x05\x01\x00\x01\x7f\x00\x00\x01\x01\xbb",
        "ipv6": b"\x00" + b"\x05\x01\x00" + b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01\x00\x50",
        "userpass": b"\x00" + b"\x05\x02\x00\x02" + b"\x01\x04user\x04pass"
        + b"\x05\x01\x00\x03\x0bexample.com\x01\xbb",
        "resolve": b"\x00" + b"\x05\x01\x00" + b"\x05\xf0\x00\x03\x0bexample.com\x00\x00",
        "chunked": b"\x01\x01\x01\x02\x00" + b"\x05\x01\x00" + b"\x05\x01\x00\x03\x0bexample.com\x00\x50",
    }
    # Channel cells: VERSIONS, NETINFO, PADDING, CREATE2, RELAY.
    versions = b"\x00\x00\x07\x00\x04\x00\x04\x00\x05"
    netinfo = fixed_cell(8, struct.pack(">I", 1795258700) + bytes([4, 4, 127, 0, 0, 2, 1, 4, 4, 10, 0, 0, 1]))
    create2 = fixed_cell(10, struct.pack(">HH", 2, 84) + bytes(range(84)), circ=0x80000001)
    relay = fixed_cell(3, relay_body(2, 1, b"GET / HTTP/1.0\r\n\r\n"), circ=0x80000001)
    stream = versions + netinfo + fixed_cell(0, b"") + var_cell(128, b"\0" * 10) + create2 + relay
    s["core_cell_codec"] = {
        # (flags, max var body, max buffered, [no chunk sizes], bytes)
        "link": b"\x00\xff\xff\x00\x00\x10\x00\x00" + stream,
        "chunked": b"\x01\xff\xff\x00\x00\x10\x00\x01\x07\x00\x01\x00\x02\x00" + stream,
        "small-limits": b"\x02\x10\x00\x00\x04\x00\x00\x00" + stream,
    }
    # The link handshake targets build a valid answer themselves; the
    # first byte says how far, with which versions, by bytes or cells.
    s["core_link_handshake"] = {
        f"mode{m:02x}": bytes([m, 0]) for m in (0, 1, 2, 3, 4, 4 | 8, 4 | 16, 4 | 24, 4 | 32, 3 | 32)
    }
    s["core_link_handshake"]["chunked"] = bytes([4, 1, 3, 1, 200, 0])
    s["core_link_handshake"]["padding-after"] = bytes([4, 0]) + var_cell(128, b"\0" * 4)
    s["core_responder_handshake"] = {f"mode{m:02x}": bytes([m, 0]) for m in range(0, 0x40, 3)}
    s["core_certs"] = {f"mode{m:02x}": bytes([m]) for m in range(16)}
    s["core_handshake_replies"] = {f"mode{m:02x}": bytes([m, 0, 0]) for m in range(8)}
    s["core_sendme"] = {
        # (no consensus params, increment 31, ops)
        "v1": b"\x00\x1f" + bytes([1, 0, 20]) + b"\x00" * 20,
        "v0": b"\x00\x1f" + b"\x00",
        "cc": b"\x01\x00\x00\x00\x00\x01\x00\x1f" + bytes([1, 0, 20]) + b"\x11" * 20,
    }
    s["core_relay_cell"] = {
        "begin": relay_body(1, 1, b"example.com:443\0\x00\x00\x00\x00")[:64],
        "data": relay_body(2, 1, b"GET / HTTP/1.0\r\n\r\n"),
        "end": relay_body(3, 1, b"\x06")[:16],
        "connected": relay_body(4, 1, b"\x7f\x00\x00\x01\x00\x00\x0e\x10")[:24],
        "sendme-v1": relay_body(5, 0, b"\x01\x00\x14" + b"\x42" * 20)[:40],
        "extend2": relay_body(14, 0, b"\x01\x00\x06\x7f\x00\x00\x01\x23\x29" + b"\x00\x02\x00\x10" + b"\x01" * 16),
        "begin-dir": relay_body(13, 2, b"")[:11],
        "conflux-link": relay_body(19, 0, b"\x01" + b"\x07" * 32 + b"\x00" * 16 + b"\x00"),
    }
    link = b"\x01" + b"\x07" * 32 + b"\x00" * 7 + b"\x05" + b"\x00" * 7 + b"\x03" + b"\x02"
    s["core_conflux_ext"] = {"link": b"\x00" + link, "linked": b"\x01" + link}
    # README's seed: three hops that trade DATA and SENDMEs, and a longer one.
    built = bytes([0x02, 0x09, 0x01, 0x09, 0x13, 0x3F, 0x27, 0x1F, 0x00, 0x2C])
    burst = bytes([0x29, 0x3F, 0x00, 0x2B, 0xFF])
    tail = bytes([0x28, 0x28, 0x28, 0x27, 0x1F, 0x01, 0x14, 0x05, 0x2C])
    s["core_circuit_inbound"] = {
        "three-hops": built + burst * 6 + tail,
        "three-hops-long": built + burst * 40 + tail * 8,
        "one-hop": bytes([0x00, 0x09, 0x3F, 0x3F]) + burst * 10,
    }
    for t in ("core_conflux_set", "core_exit_streams", "core_stream_map", "core_relay_node"):
        s[t] = {
            "zeros": b"\x00" * 64,
            "ones": b"\x01" * 64,
            "counting": bytes(range(256)),
        }
    # (order, cached text as a length-prefixed string: empty, responses).
    s["dir_bootstrap_cache"] = {
        f"{name}-{order}": bytes([order]) + doc + b"\x00\x00"
        for name, doc in (("consensus", CONSENSUS), ("certs", CERTS), ("microdescs", MICRODESCS))
        for order in range(3)
    }
    s["relay_config"] = {f"field{i}": bytes([i]) + b"x" for i in range(13)}
    s["relay_config"]["whole"] = b"\xff" + (
        b'[braid_relay]\nnickname = "braidrelay0"\naddress = "127.0.0.1"\nor_port = 9001\n'
    )
    s["relay_keys"] = {f"sel{i}": bytes([i]) + b"\x00\x01" for i in range(0, 40, 3)}
    # (structured, status selector u16, declare, send, max_body u16, rest):
    # whole responses as a cache sends them, and made ones of each kind.
    head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    s["dir_http_response"] = {
        "consensus-200": b"\x00" + struct.pack("<HBBH", 0, 0, 0, 65535) + head + CONSENSUS[:60000],
        "not-modified": b"\x00" + struct.pack("<HBBH", 0, 0, 0, 100)
        + b"HTTP/1.0 304 Not modified\r\n\r\n",
        "busy": b"\x00" + struct.pack("<HBBH", 0, 0, 0, 100)
        + b"HTTP/1.0 503 Directory busy, try again later\r\n\r\n",
    }
    for status in range(6):
        for declare in range(3):
            for send in range(3):
                s["dir_http_response"][f"made-{status}-{declare}-{send}"] = (
                    b"\x01" + struct.pack("<HBBH", status, declare, send, 4096) + MICRODESCS[:2000]
                )
    return s


def main():
    out = sys.argv[1]
    for target, files in seeds().items():
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
