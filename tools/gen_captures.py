#!/usr/bin/python3
"""Writes synthetic captures for the evasion and precision cases no real capture has.

Usage: gen_captures.py --out DIR

One small pcap per case goes into DIR, plus DIR/MANIFEST.tsv with the columns
    file  description  expect  by_frame  policy_block  notes
where `expect` is `name:<lower-cased name as the classifier reports it>`, `nameless` or
`unrecognized`; `by_frame` is the 1-based frame that completes the real request (the frame by
which the name, or the nameless verdict, must be known); `policy_block` says whether a policy
blocking telegram.org, *.telegram.org, t.me, *.t.me must stop the flow.

Output is deterministic: fixed keys and randoms (derived from the case name), fixed timestamps,
fixed MACs, and addresses from the documentation ranges (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32). The one exception is `no_sni`, whose server address is in
Telegram's real 149.154.160.0/20 so that a by-address rule can match it: it is only data in a
file, nothing is sent anywhere. (AES-GCM over fixed keys, nonces and plaintext is deterministic
too, so the QUIC Initials are the same bytes on every run.)

Needs Debian's python3-scapy and python3-cryptography (QUIC Initial protection), hence
/usr/bin/python3 (the pyenv python3 lacks them).
"""

import argparse
import hashlib
import os
import struct
import sys

from scapy.config import conf

conf.verb = 0
from scapy.layers.inet import IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop, PadN  # noqa: E402
from scapy.layers.l2 import Ether, Dot1Q, Dot1AD  # noqa: E402
from scapy.layers.ppp import PPPoE  # noqa: E402
from scapy.packet import Raw  # noqa: E402
from scapy.layers.dns import DNS, DNSQR, DNSRR  # noqa: E402
from scapy.contrib.mpls import MPLS  # noqa: E402
from cryptography.hazmat.primitives import hashes, hmac  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

CLIENT_MAC = "02:00:5e:00:00:01"
SERVER_MAC = "02:00:5e:00:00:02"
CLIENT_V4 = "192.0.2.10"
SERVER_V4 = "203.0.113.10"
RESOLVER_V4 = "198.51.100.53"
CLIENT_V6 = "2001:db8::10"
SERVER_V6 = "2001:db8:1::10"
TELEGRAM_V4 = "149.154.167.91"  # Telegram's prefix, used as data only (see module doc)
# UDP tunnel endpoints: the access side (VXLAN VTEP / GTP-U gNB) and the core side (VTEP / UPF).
TUNNEL_ACCESS_V4 = "198.51.100.1"
TUNNEL_CORE_V4 = "198.51.100.2"
INNER_CLIENT_MAC = "02:00:5e:00:01:01"
INNER_SERVER_MAC = "02:00:5e:00:01:02"
VXLAN_VNI = 0x0A11CE
GTPU_TEID_UP = 0x1A2B3C4D  # chosen by the core end (UPF): uplink
GTPU_TEID_DOWN = 0x5E6F7081  # chosen by the access end (gNB): downlink

BASE_TIME = 1704067200  # 2024-01-01T00:00:00Z
CLIENT_TTL = 64
SERVER_TTL = 57


def det(label, case, n):
    """n deterministic bytes for (label, case)."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"sluice/{label}/{case}/{i}".encode()).digest()
        i += 1
    return out[:n]


# ---------------------------------------------------------------- TLS bytes, written by hand


def ext(ext_type, body):
    return struct.pack("!HH", ext_type, len(body)) + body


def u8_list(body):
    return struct.pack("!B", len(body)) + body


def u16_list(body):
    return struct.pack("!H", len(body)) + body


def client_hello(case, sni, quic=False):
    """A TLS 1.3-style ClientHello handshake message (type byte included); `quic` makes it a
    QUIC one (ALPN h3, quic_transport_parameters)."""
    suites = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8]
    sigalgs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    groups = [0x001D, 0x0017, 0x0018]
    exts = b""
    if sni is not None:
        host = sni.encode("ascii")
        exts += ext(0, u16_list(struct.pack("!BH", 0, len(host)) + host))
    exts += ext(23, b"")  # extended_master_secret
    exts += ext(65281, b"\x00")  # renegotiation_info
    exts += ext(10, u16_list(b"".join(struct.pack("!H", g) for g in groups)))
    exts += ext(11, u8_list(b"\x00"))  # ec_point_formats: uncompressed
    if quic:
        exts += ext(16, u16_list(u8_list(b"h3")))
        # initial_max_data 1 MiB, initial_max_streams_bidi 100 (RFC 9000 §18.2)
        exts += ext(57, b"\x04\x04\x80\x10\x00\x00" + b"\x08\x02\x40\x64")
    else:
        exts += ext(16, u16_list(u8_list(b"h2") + u8_list(b"http/1.1")))
    exts += ext(13, u16_list(b"".join(struct.pack("!H", s) for s in sigalgs)))
    exts += ext(51, u16_list(struct.pack("!HH", 0x001D, 32) + det("x25519", case, 32)))
    exts += ext(45, u8_list(b"\x01"))  # psk_dhe_ke
    exts += ext(43, u8_list(struct.pack("!HH", 0x0304, 0x0303)))
    body = struct.pack("!H", 0x0303) + det("random", case, 32)
    body += u8_list(det("session", case, 32))
    body += u16_list(b"".join(struct.pack("!H", s) for s in suites))
    body += u8_list(b"\x00")
    body += u16_list(exts)
    return struct.pack("!B", 1) + struct.pack("!I", len(body))[1:] + body


def records(message, cuts=(), content_type=22, version=0x0301):
    """The message in TLS records, split at the given offsets into the message."""
    edges = [0, *cuts, len(message)]
    return b"".join(
        struct.pack("!BHH", content_type, version, b - a) + message[a:b]
        for a, b in zip(edges, edges[1:]))


def server_flight(case):
    """ServerHello + ChangeCipherSpec + an opaque application-data record."""
    exts = ext(43, struct.pack("!H", 0x0304))
    exts += ext(51, struct.pack("!HH", 0x001D, 32) + det("server-x25519", case, 32))
    body = struct.pack("!H", 0x0303) + det("server-random", case, 32)
    body += u8_list(det("session", case, 32))
    body += struct.pack("!HB", 0x1301, 0) + u16_list(exts)
    hello = struct.pack("!B", 2) + struct.pack("!I", len(body))[1:] + body
    return (records(hello, version=0x0303) + records(b"\x01", content_type=20, version=0x0303) +
            records(det("server-encrypted", case, 96), content_type=23, version=0x0303))


def http_get(host_line):
    return (b"GET / HTTP/1.1\r\n" + host_line + b"\r\n"
            b"User-Agent: sluice-gen/1\r\nAccept: */*\r\n\r\n")


HTTP_RESPONSE = (b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.org/\r\n"
                 b"Content-Length: 0\r\n\r\n")


# ---------------------------------------------------------------- QUIC v1 client Initials
# RFC 9001 §5: keys from the client's Destination Connection ID by HKDF-SHA256 with the v1 salt,
# AES-128-GCM for the payload, AES-128-ECB over a ciphertext sample for header protection.

QUIC_V1_SALT = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")


def _hmac_sha256(key, data):
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def hkdf_expand_label(secret, label, length):
    """TLS 1.3 HKDF-Expand-Label (RFC 8446 §7.1) with an empty context."""
    info = struct.pack("!H", length) + u8_list(b"tls13 " + label) + u8_list(b"")
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = _hmac_sha256(secret, block + info + bytes([i]))
        out += block
        i += 1
    return out[:length]


def quic_client_keys(dcid):
    """(key, iv, hp) of a v1 client Initial sent to `dcid`."""
    initial = _hmac_sha256(QUIC_V1_SALT, dcid)  # HKDF-Extract(salt, DCID)
    client = hkdf_expand_label(initial, b"client in", 32)
    return (hkdf_expand_label(client, b"quic key", 16), hkdf_expand_label(client, b"quic iv", 12),
            hkdf_expand_label(client, b"quic hp", 16))


def quic_hp_mask(hp, sample):
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    return (enc.update(sample) + enc.finalize())[:5]


def quic_varint(v):
    if v < 0x40:
        return struct.pack("!B", v)
    if v < 0x4000:
        return struct.pack("!H", 0x4000 | v)
    assert v < 0x40000000
    return struct.pack("!I", 0x80000000 | v)


def quic_initial(crypto, dcid, scid, pn=0, size=1200):
    """A v1 client Initial carrying `crypto` in one CRYPTO frame, padded to a `size`-byte UDP
    payload (RFC 9000 §14.1), with a 4-byte packet number."""
    key, iv, hp = quic_client_keys(dcid)
    pn_len = 4
    first = 0xC0 | (pn_len - 1)  # long header, fixed bit, type Initial (0)
    head = struct.pack("!BI", first, 1) + u8_list(dcid) + u8_list(scid) + quic_varint(0)  # token
    frames = b"\x06" + quic_varint(0) + quic_varint(len(crypto)) + crypto
    plain_len = size - len(head) - 2 - pn_len - 16  # 2: the Length field's varint form
    assert plain_len >= len(frames), "ClientHello too long for one Initial"
    plain = frames + b"\x00" * (plain_len - len(frames))  # PADDING frames
    header = head + struct.pack("!H", 0x4000 | (pn_len + plain_len + 16)) + struct.pack("!I", pn)
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big")))
    sealed = AESGCM(key).encrypt(nonce, plain, header)
    # The sample starts 4 bytes after the packet number's first byte (RFC 9001 §5.4.2).
    mask = quic_hp_mask(hp, sealed[4 - pn_len:4 - pn_len + 16])
    pn_at = len(header) - pn_len
    protected = bytes([header[0] ^ (mask[0] & 0x0F)]) + header[1:pn_at] + bytes(
        b ^ m for b, m in zip(header[pn_at:], mask[1:1 + pn_len]))
    out = protected + sealed
    assert len(out) == size
    return out


def _quic_self_check():
    """RFC 9001 Appendix A: the client Initial keys for DCID 0x8394c8f03e515708, and A.2's
    header protection mask for its sample."""
    key, iv, hp = quic_client_keys(bytes.fromhex("8394c8f03e515708"))
    assert key.hex() == "1f369613dd76d5467730efcbe3b1a22d", key.hex()
    assert iv.hex() == "fa044b2f42a3fd3b46fb255c", iv.hex()
    assert hp.hex() == "9f50449e04a0e810283a1e9933adedd2", hp.hex()
    mask = quic_hp_mask(hp, bytes.fromhex("d1b1c98dd7689fb8ec11d242b123dc9b"))
    assert mask.hex() == "437b9aec36", mask.hex()


_quic_self_check()


# ---------------------------------------------------------------- frames


def udp_tunnel(l3, from_client, encap):
    """`l3` inside VXLAN (VNI VXLAN_VNI, inner Ethernet) or GTP-U (a G-PDU; uplink and downlink
    TEIDs differ, as on a real bearer) between the tunnel endpoints."""
    if encap == "vxlan":
        isrc, idst = ((INNER_CLIENT_MAC, INNER_SERVER_MAC) if from_client
                      else (INNER_SERVER_MAC, INNER_CLIENT_MAC))
        inner = bytes(Ether(src=isrc, dst=idst) / l3)
        payload = struct.pack("!BxxxI", 0x08, VXLAN_VNI << 8) + inner
        sport, dport = (49153 if from_client else 49154), 4789  # source: a flow hash, fixed here
    else:
        inner = bytes(l3)
        teid = GTPU_TEID_UP if from_client else GTPU_TEID_DOWN
        payload = struct.pack("!BBHI", 0x30, 0xFF, len(inner), teid) + inner
        sport, dport = 2152, 2152
    src, dst = ((TUNNEL_ACCESS_V4, TUNNEL_CORE_V4) if from_client
                else (TUNNEL_CORE_V4, TUNNEL_ACCESS_V4))
    return IP(src=src, dst=dst, ttl=64, id=0, flags="DF") / UDP(sport=sport, dport=dport) / Raw(
        payload)



def ether(l3, from_client, encap=None):
    src, dst = (CLIENT_MAC, SERVER_MAC) if from_client else (SERVER_MAC, CLIENT_MAC)
    if encap is None:
        return Ether(src=src, dst=dst) / l3
    if encap in ("vxlan", "gtpu"):
        return Ether(src=src, dst=dst) / udp_tunnel(l3, from_client, encap)
    if encap == "qinq":
        return (Ether(src=src, dst=dst, type=0x88A8) / Dot1AD(vlan=100, type=0x8100) /
                Dot1Q(vlan=200) / l3)
    if encap == "mpls":
        return (Ether(src=src, dst=dst, type=0x8847) / MPLS(label=1001, s=0, ttl=64) /
                MPLS(label=2002, s=1, ttl=64) / l3)
    if encap == "pppoe":
        # The PPP protocol field written in full (0x0021): scapy's PPP layer would compress it
        # to one byte, which real PPPoE access networks do not use.
        return (Ether(src=src, dst=dst, type=0x8864) / PPPoE(code=0, sessionid=0x2a) /
                Raw(b"\x00\x21") / l3)
    raise ValueError(encap)


class TcpConversation:
    """A client -> server TCP connection; tracks sequence numbers and builds its frames."""

    def __init__(self, case, index, dport=443, v6=False, server=None, encap=None, hbh=False):
        self.case = case
        self.v6 = v6
        self.client = CLIENT_V6 if v6 else CLIENT_V4
        self.server = server or (SERVER_V6 if v6 else SERVER_V4)
        self.sport = 40000 + index
        self.dport = dport
        self.encap = encap
        self.hbh = hbh
        self.cisn = 0x10000000 + index * 0x10000
        self.sisn = 0x70000000 + index * 0x10000
        self.cnext = self.cisn + 1  # next client byte after the SYN
        self.snext = self.sisn + 1
        self.ip_id = 0x100 + index * 0x100
        self.frames = []

    def _ip(self, from_client, ttl=None):
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        hops = ttl if ttl is not None else (CLIENT_TTL if from_client else SERVER_TTL)
        if self.v6:
            l3 = IPv6(src=src, dst=dst, hlim=hops)
            if self.hbh:
                l3 = l3 / IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\x00" * 4)])
            return l3
        self.ip_id += 1
        return IP(src=src, dst=dst, ttl=hops, id=self.ip_id, flags="DF")

    def tcp_packet(self, from_client, flags, seq, ack, payload=b"", options=(), ttl=None):
        """The L3 packet (scapy) for one TCP segment."""
        sport, dport = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq & 0xFFFFFFFF,
                  ack=(ack & 0xFFFFFFFF) if "A" in flags else 0,
                  window=64240 if from_client else 65160, options=list(options))
        return self._ip(from_client, ttl) / tcp / payload

    def add(self, l3, from_client):
        self.frames.append(bytes(ether(l3, from_client, self.encap)))

    def handshake(self, syn_payload=b"", syn_options=None):
        opts = syn_options or [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]
        self.add(self.tcp_packet(True, "S", self.cisn, 0, syn_payload, opts), True)
        self.cnext = self.cisn + 1 + len(syn_payload)
        self.add(self.tcp_packet(False, "SA", self.sisn, self.cnext, b"",
                                 [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]), False)
        self.add(self.tcp_packet(True, "A", self.cnext, self.snext), True)

    def client_segment(self, offset, data, ttl=None, seq=None, bad_checksum=False):
        """Client data at `offset` bytes after the first payload byte (ISN + 1)."""
        pkt = self.tcp_packet(True, "PA", seq if seq is not None else self.cisn + 1 + offset,
                              self.snext, data, ttl=ttl)
        if bad_checksum:
            good = (IPv6 if self.v6 else IP)(bytes(pkt))[TCP].chksum
            pkt[TCP].chksum = good ^ 0x5A5A
        self.add(pkt, True)

    def client_stream(self, data, cuts=(), order=None):
        """Sends `data` as segments split at `cuts`, in `order` (indices), updating cnext."""
        edges = [0, *cuts, len(data)]
        pieces = list(zip(edges, edges[1:]))
        for i in (order if order is not None else range(len(pieces))):
            a, b = pieces[i]
            self.client_segment(a, data[a:b])
        self.cnext = self.cisn + 1 + len(data)

    def finish(self, response):
        self.add(self.tcp_packet(False, "PA", self.snext, self.cnext, response), False)
        self.snext += len(response)
        self.add(self.tcp_packet(True, "FA", self.cnext, self.snext), True)
        self.cnext += 1
        self.add(self.tcp_packet(False, "FA", self.snext, self.cnext), False)
        self.snext += 1
        self.add(self.tcp_packet(True, "A", self.cnext, self.snext), True)


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # Ethernet
        for i, frame in enumerate(frames):
            usec = i * 1500  # 1.5 ms apart
            f.write(struct.pack("<IIII", BASE_TIME + usec // 1000000, usec % 1000000,
                                len(frame), len(frame)))
            f.write(frame)


# ---------------------------------------------------------------- cases


class Case:
    """One manifest row and its frames."""

    def __init__(self, file, description, expect, by_frame, block, notes, frames):
        self.file, self.description, self.expect = file, description, expect
        self.by_frame, self.block, self.notes, self.frames = by_frame, block, notes, frames


def tls_case(name, index, sni, description, block, notes="", cuts=(), order=None,
             record_cuts=(), **conv_args):
    """Handshake, the ClientHello stream in segments, the server's flight, FIN/ACK."""
    conv = TcpConversation(name, index, **conv_args)
    conv.handshake()
    stream = records(client_hello(name, sni), record_cuts)
    conv.client_stream(stream, cuts, order)
    by_frame = 3 + len(cuts) + 1  # the last piece sent completes the stream (or fills its gap)
    conv.finish(server_flight(name))
    expect = f"name:{sni.lower()}" if sni is not None else "nameless"
    return Case(f"{name}.pcap", description, expect, by_frame, block, notes, conv.frames)


def sni_offset(stream, sni):
    return stream.index(sni.encode("ascii"))


def build_cases():
    out = []
    idx = iter(range(1, 1000))

    out.append(tls_case("plain_sni", next(idx), "telegram.org",
                        "ClientHello with SNI telegram.org in one segment (control)", "yes"))
    for fname, sni in [("allowed_example_org", "example.org"),
                       ("allowed_nottelegram_org", "nottelegram.org"),
                       ("allowed_telegram_org_example_com", "telegram.org.example.com"),
                       ("allowed_at_me", "at.me")]:
        out.append(tls_case(fname, next(idx), sni,
                            f"ClientHello with SNI {sni}: must not be blocked", "no",
                            "lookalike; label boundaries" if sni != "example.org" else "control"))
    out.append(tls_case("sni_case", next(idx), "TeLeGrAm.OrG", "SNI in mixed case", "yes",
                        "names compare case-insensitively"))
    out.append(tls_case("sni_trailing_dot", next(idx), "telegram.org.",
                        "SNI with a trailing dot", "yes",
                        "the classifier reports the wire name; the matcher ignores one "
                        "trailing dot"))

    # 5. split inside the SNI host name bytes
    i = next(idx)
    stream = records(client_hello("split_at_sni", "telegram.org"))
    cut = sni_offset(stream, "telegram.org") + 5  # "teleg" | "ram.org"
    out.append(tls_case("split_at_sni", i, "telegram.org",
                        "ClientHello in two TCP segments split inside the SNI host name", "yes",
                        f"split at stream byte {cut}", cuts=(cut,)))

    # 6. 8-byte segments
    i = next(idx)
    stream = records(client_hello("split_tiny", "telegram.org"))
    cuts = tuple(range(8, len(stream), 8))
    out.append(tls_case("split_tiny", i, "telegram.org",
                        "ClientHello in 8-byte TCP segments", "yes",
                        f"{len(cuts) + 1} segments of {len(stream)} bytes", cuts=cuts))

    # 7. handshake message across TLS records
    i = next(idx)
    hs = client_hello("split_records", "telegram.org")
    rc = (sni_offset(hs, "telegram.org") + 3,)
    out.append(tls_case("split_records", i, "telegram.org",
                        "ClientHello message across 2 TLS records in one segment", "yes",
                        f"record split at message byte {rc[0]} (inside the SNI)",
                        record_cuts=rc))
    i = next(idx)
    hs = client_hello("split_records_segments", "telegram.org")
    third = len(hs) // 3
    rc = (third, 2 * third)
    stream = records(hs, rc)
    # Record k starts at message byte rc[k-1] + 5*k; cut the segments 3 bytes into each record's
    # body, so each segment ends with the header and first bytes of the next record.
    seg_cuts = (rc[0] + 5 + 5 + 3, rc[1] + 10 + 5 + 3)
    assert len(seg_cuts) == 2 and seg_cuts[1] < len(stream)
    out.append(tls_case("split_records_segments", i, "telegram.org",
                        "ClientHello across 3 TLS records in 3 segments, boundaries unaligned",
                        "yes", f"records cut at message bytes {rc}, segments at stream bytes "
                        f"{seg_cuts}", cuts=seg_cuts, record_cuts=rc))

    # 8. out of order
    i = next(idx)
    stream = records(client_hello("out_of_order", "telegram.org"))
    third = len(stream) // 3
    out.append(tls_case("out_of_order", i, "telegram.org",
                        "ClientHello in 3 segments sent 3,1,2", "yes",
                        "the name is known at the segment that fills the gap",
                        cuts=(third, 2 * third), order=[2, 0, 1]))

    # 9. retransmission of the first segment after the second
    i = next(idx)
    name = "retransmit_overlap"
    conv = TcpConversation(name, i)
    conv.handshake()
    stream = records(client_hello(name, "telegram.org"))
    a, b = len(stream) // 3, 2 * len(stream) // 3
    conv.client_segment(0, stream[:a])
    conv.client_segment(a, stream[a:b])
    conv.client_segment(0, stream[:a])  # identical retransmission
    conv.client_segment(b, stream[b:])
    conv.cnext = conv.cisn + 1 + len(stream)
    conv.finish(server_flight(name))
    out.append(Case(f"{name}.pcap", "ClientHello in 3 segments, the first retransmitted "
                    "(identical) after the second", "name:telegram.org", 7, "yes",
                    "segments 1,2,1,3", conv.frames))

    # 10-12. injected fakes before the real ClientHello
    for name, what, kw in [
            ("fake_bad_checksum", "with a wrong TCP checksum at the real sequence number",
             {"bad_checksum": True}),
            ("fake_low_ttl", "with IP TTL 2 (the SYN had 64), correct checksum", {"ttl": 2}),
            ("fake_out_of_window", "with sequence number real base + 0x40000000",
             {"seq_shift": 0x40000000})]:
        i = next(idx)
        conv = TcpConversation(name, i)
        conv.handshake()
        fake = records(client_hello(name + "/fake", "example.org"))
        shift = kw.pop("seq_shift", 0)
        if shift:
            kw["seq"] = conv.cisn + 1 + shift
        conv.client_segment(0, fake, **kw)
        real = records(client_hello(name, "telegram.org"))
        conv.client_stream(real)
        conv.finish(server_flight(name))
        out.append(Case(f"{name}.pcap", f"fake ClientHello (SNI example.org) {what}, then the "
                        "real one (telegram.org)", "name:telegram.org", 5, "yes",
                        "the fake must be ignored", conv.frames))

    # 13. IPv4 fragments
    for name, reverse in [("ip_fragments", False), ("ip_fragments_reordered", True)]:
        i = next(idx)
        conv = TcpConversation(name, i)
        conv.handshake()
        stream = records(client_hello(name, "telegram.org"))
        whole = conv.tcp_packet(True, "PA", conv.cisn + 1, conv.snext, stream)
        whole = IP(bytes(whole))  # checksums computed over the whole segment
        l4 = bytes(whole[TCP])
        host_at = 20 + sni_offset(stream, "telegram.org")  # TCP header has no options
        first = (host_at + 8) // 8 * 8  # a multiple of 8 inside the host name
        assert host_at < first < host_at + 12
        second = (first + (len(l4) - first) // 2) // 8 * 8
        edges = [0, first, second, len(l4)]
        frags = []
        for n, (a, b) in enumerate(zip(edges, edges[1:])):
            mf = b < len(l4)
            frags.append(IP(src=whole.src, dst=whole.dst, ttl=whole.ttl, id=whole.id,
                            flags="MF" if mf else 0, frag=a // 8, proto=6) / l4[a:b])
        for f in (reversed(frags) if reverse else frags):
            conv.add(f, True)
        conv.cnext = conv.cisn + 1 + len(stream)
        conv.finish(server_flight(name))
        out.append(Case(f"{name}.pcap", "ClientHello in one TCP segment whose IPv4 datagram is "
                        "in 3 fragments, the SNI across the first boundary" +
                        (", sent last-first" if reverse else ""), "name:telegram.org", 6, "yes",
                        f"needs IP reassembly; fragment edges at L4 bytes {edges}",
                        conv.frames))

    # 14. TCP Fast Open
    i = next(idx)
    name = "tfo"
    conv = TcpConversation(name, i)
    stream = records(client_hello(name, "telegram.org"))
    conv.handshake(syn_payload=stream, syn_options=[
        ("MSS", 1460), ("SAckOK", b""), ("WScale", 7), (34, det("tfo-cookie", name, 8))])
    conv.finish(server_flight(name))
    out.append(Case(f"{name}.pcap", "ClientHello in the SYN (TCP Fast Open, cookie option)",
                    "name:telegram.org", 1, "yes", "TFO cookie option kind 34", conv.frames))

    # 15. IPv6
    out.append(tls_case("ipv6_sni", next(idx), "telegram.org", "plain_sni over IPv6", "yes",
                        v6=True))
    out.append(tls_case("ipv6_ext_headers", next(idx), "telegram.org",
                        "plain_sni over IPv6 with a hop-by-hop options header", "yes",
                        "every packet carries the hop-by-hop header", v6=True, hbh=True))

    # 16. encapsulations
    out.append(tls_case("vlan_qinq_sni", next(idx), "telegram.org",
                        "plain_sni inside QinQ (0x88a8 outer, 0x8100 inner)", "yes",
                        "S-VLAN 100, C-VLAN 200", encap="qinq"))
    out.append(tls_case("mpls_sni", next(idx), "telegram.org",
                        "plain_sni inside a 2-label MPLS stack", "yes", "labels 1001, 2002",
                        encap="mpls"))
    out.append(tls_case("pppoe_sni", next(idx), "telegram.org",
                        "plain_sni inside a PPPoE session", "yes", "session 0x002a",
                        encap="pppoe"))

    # 17. HTTP
    for name, host_line, cut_in, desc in [
            ("http_host", b"Host: telegram.org", None, "HTTP GET with Host: telegram.org"),
            ("http_host_split", b"Host: telegram.org", b"Host: tele",
             "HTTP GET with the Host header split across two segments"),
            ("http_host_case", b"hOsT:   TELEGRAM.ORG  ", None,
             "HTTP GET with header `hOsT:   TELEGRAM.ORG  `")]:
        i = next(idx)
        conv = TcpConversation(name, i, dport=80)
        conv.handshake()
        req = http_get(host_line)
        cuts = (req.index(cut_in) + len(cut_in),) if cut_in else ()
        conv.client_stream(req, cuts)
        conv.finish(HTTP_RESPONSE)
        out.append(Case(f"{name}.pcap", desc, "name:telegram.org", 4 + len(cuts), "yes",
                        "split after 'Host: tele'" if cut_in else "", conv.frames))

    # 17b. HTTP requests that name more than one host, or a host with a port: each name counts
    # (a rule naming any of them stops the request), the port is not part of the name.
    connect_tls = (b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n" +
                   records(client_hello("http_connect_tls", "telegram.org")))
    for name, req, expect, block, desc in [
            ("http_host_port", http_get(b"Host: telegram.org:443"), "name:telegram.org", "yes",
             "HTTP GET with Host: telegram.org:443"),
            ("http_host_port_lookalike", http_get(b"Host: nottelegram.org:443"),
             "name:nottelegram.org", "no", "HTTP GET with Host: nottelegram.org:443 (control)"),
            ("http_absolute_form", b"GET http://telegram.org/ HTTP/1.1\r\nHost: example.org\r\n"
             b"Accept: */*\r\n\r\n", "name:example.org,telegram.org", "yes",
             "absolute-form target telegram.org, Host: example.org"),
            ("http_two_hosts", http_get(b"Host: example.org\r\nHost: telegram.org"),
             "name:example.org,telegram.org", "yes", "two Host headers, the second telegram.org"),
            ("http_connect", b"CONNECT telegram.org:443 HTTP/1.1\r\nHost: telegram.org:443\r\n\r\n",
             "name:telegram.org", "yes", "proxy CONNECT telegram.org:443"),
            ("http_connect_tls", connect_tls, "name:example.org,telegram.org", "yes",
             "proxy CONNECT example.org:443 with the ClientHello for telegram.org in the same "
             "segment")]:
        i = next(idx)
        conv = TcpConversation(name, i, dport=3128 if "connect" in name else 80)
        conv.handshake()
        conv.client_stream(req)
        conv.finish(HTTP_RESPONSE)
        out.append(Case(f"{name}.pcap", desc, expect, 4, block, "", conv.frames))

    # 18. DNS
    i = next(idx)
    name = "dns_query"
    sport = 40000 + i
    q = (IP(src=CLIENT_V4, dst=RESOLVER_V4, ttl=CLIENT_TTL, id=0x4000 + i) /
         UDP(sport=sport, dport=53) /
         DNS(id=0x1234, rd=1, qd=DNSQR(qname="web.telegram.org", qtype="A")))
    r = (IP(src=RESOLVER_V4, dst=CLIENT_V4, ttl=SERVER_TTL, id=0x5000 + i) /
         UDP(sport=53, dport=sport) /
         DNS(id=0x1234, qr=1, rd=1, ra=1, qd=DNSQR(qname="web.telegram.org", qtype="A"),
             an=DNSRR(rrname="web.telegram.org", type="A", ttl=300, rdata="203.0.113.80")))
    frames = [bytes(ether(q, True)), bytes(ether(r, False))]
    out.append(Case(f"{name}.pcap", "UDP DNS query (and answer) for web.telegram.org",
                    "name:web.telegram.org", 1, "yes", "matches *.telegram.org; answer uses "
                    "a documentation address", frames))

    # 19. UDP tunnels (issue 19): the flow inside is the one to judge.
    for encap, what in [("vxlan", f"VXLAN (UDP 4789, VNI {VXLAN_VNI:#x})"),
                        ("gtpu", "GTP-U (UDP 2152, a G-PDU per packet)")]:
        out.append(tls_case(f"{encap}_sni", next(idx), "telegram.org",
                            f"plain_sni inside {what}", "yes",
                            "tunnel endpoints 198.51.100.1/.2" +
                            ("; uplink and downlink TEIDs differ" if encap == "gtpu" else ""),
                            encap=encap))
    # The mobile core fragments GTP-U on the outer header (the inner packet fills the MTU).
    i = next(idx)
    name = "gtpu_ip_fragments"
    conv = TcpConversation(name, i, encap="gtpu")
    conv.handshake()
    stream = records(client_hello(name, "telegram.org"))
    inner = conv.tcp_packet(True, "PA", conv.cisn + 1, conv.snext, stream)
    outer = Ether(bytes(ether(inner, True, "gtpu")))[IP]
    l4 = bytes(outer.payload)  # outer UDP + GTP-U + inner IPv4 + TCP + ClientHello
    host_at = 8 + 8 + 20 + 20 + sni_offset(stream, "telegram.org")
    first = (host_at + 8) // 8 * 8  # a multiple of 8 inside the host name
    assert host_at < first < host_at + 12
    edges = [0, first, (first + (len(l4) - first) // 2) // 8 * 8, len(l4)]
    for a, b in zip(edges, edges[1:]):
        frag = IP(src=outer.src, dst=outer.dst, ttl=outer.ttl, id=0x0900 + i,
                  flags="MF" if b < len(l4) else 0, frag=a // 8, proto=17) / Raw(l4[a:b])
        conv.frames.append(bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / frag))
    conv.cnext = conv.cisn + 1 + len(stream)
    conv.finish(server_flight(name))
    out.append(Case(f"{name}.pcap", "gtpu_sni with the ClientHello's outer GTP-U datagram in 3 "
                    "IPv4 fragments, the SNI across the first boundary", "name:telegram.org", 6,
                    "yes", f"needs IP reassembly (outer header); fragment edges at outer UDP "
                    f"bytes {edges}", conv.frames))
    out.append(tls_case("allowed_gtpu_example_org", next(idx), "example.org",
                        "ClientHello with SNI example.org inside GTP-U: must not be blocked", "no",
                        "control for gtpu_sni", encap="gtpu"))
    for encap, what in [("vxlan", "VXLAN"), ("gtpu", "GTP-U")]:
        i = next(idx)
        name = f"quic_{encap}_sni"
        dcid, scid = det("quic-dcid", name, 8), det("quic-scid", name, 8)
        initial = quic_initial(client_hello(name, "telegram.org", quic=True), dcid, scid)
        sport = 40000 + i
        up = (IP(src=CLIENT_V4, dst=SERVER_V4, ttl=CLIENT_TTL, id=0x6000 + i) /
              UDP(sport=sport, dport=443) / Raw(initial))
        # The server's answer (opaque here: an Initial + Handshake flight would be as long).
        answer = (b"\xc0\x00\x00\x00\x01" + u8_list(scid) + u8_list(det("quic-server-cid", name, 8)) +
                  det("quic-server-flight", name, 1200 - 23))
        down = (IP(src=SERVER_V4, dst=CLIENT_V4, ttl=SERVER_TTL, id=0x7000 + i) /
                UDP(sport=443, dport=sport) / Raw(answer))
        frames = [bytes(ether(up, True, encap)), bytes(ether(down, False, encap))]
        out.append(Case(f"{name}.pcap", f"QUIC v1 Initial with SNI telegram.org inside {what}",
                        "name:telegram.org", 1, "yes",
                        "ClientHello in one 1200-byte Initial, then the server's answer",
                        frames))

    # 20. no SNI, Telegram address
    out.append(tls_case("no_sni", next(idx), None,
                        "ClientHello without SNI to a Telegram address (149.154.167.91)", "yes",
                        "blocked by address only (149.154.160.0/20); synthetic data",
                        server=TELEGRAM_V4))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cases = build_cases()
    files = [c.file for c in cases]
    assert len(files) == len(set(files)), "duplicate file names"
    rows = ["file\tdescription\texpect\tby_frame\tpolicy_block\tnotes"]
    for c in cases:
        assert 1 <= c.by_frame <= len(c.frames), c.file
        for field in (c.description, c.expect, c.notes):
            assert "\t" not in field and "\n" not in field, c.file
        write_pcap(os.path.join(args.out, c.file), c.frames)
        rows.append("\t".join([c.file, c.description, c.expect, str(c.by_frame), c.block,
                               c.notes or "-"]))
    # The manifest goes last and atomically: build systems use it as the output stamp.
    tmp = os.path.join(args.out, "MANIFEST.tsv.tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write("\n".join(rows) + "\n")
    os.replace(tmp, os.path.join(args.out, "MANIFEST.tsv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
