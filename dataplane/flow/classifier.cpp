#include "dataplane/flow/classifier.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "dataplane/packet/gquic.hpp"
#include "dataplane/packet/http.hpp"
#include "dataplane/packet/tls.hpp"

namespace sluice::flow {

namespace {

template <typename E, std::size_t N>
const char* name_of(E e, const char* const (&names)[N]) noexcept {
  const auto i = static_cast<std::size_t>(e);
  return i < N ? names[i] : "invalid";
}

constexpr const char* name_kind_names[] = {
#define SLUICE_X(name, str) str,
    SLUICE_NAME_KINDS(SLUICE_X)
#undef SLUICE_X
};
constexpr const char* flow_status_names[] = {
#define SLUICE_X(name, str) str,
    SLUICE_FLOW_STATES(SLUICE_X)
#undef SLUICE_X
};
constexpr const char* give_up_names[] = {
#define SLUICE_X(name, str) str,
    SLUICE_GIVE_UP_REASONS(SLUICE_X)
#undef SLUICE_X
};
constexpr const char* protocol_names[] = {"unknown", "tls",  "sslv2", "http", "dns_tcp",
                                          "dns_udp", "quic", "gquic", "ssdp"};
static_assert(std::size(name_kind_names) == static_cast<std::size_t>(name_kind::count));
static_assert(std::size(flow_status_names) == static_cast<std::size_t>(flow_status::count));
static_assert(std::size(give_up_names) == static_cast<std::size_t>(give_up_reason::count));
static_assert(std::size(protocol_names) == static_cast<std::size_t>(flow_protocol::ssdp) + 1);

constexpr bool is_dns_port(std::uint16_t port) noexcept {
  return port == 53 || port == 5353 || port == 5355;  // DNS, mDNS, LLMNR
}

std::uint8_t dir_code(direction d) noexcept { return static_cast<std::uint8_t>(d) + 1; }

// Could these first bytes of a TCP stream be a client's request we read?
// By content alone, whatever the port: TLS on 8443 or 5222 is read like TLS on 443.
flow_protocol guess_tcp_protocol_bytes(packet::bytes payload) noexcept {
  if (packet::looks_like_tls_handshake(payload)) {
    // Handshake type 1 (ClientHello) when the first record's body has begun.
    if (payload.size() > 5 && payload[5] != 1) return flow_protocol::unknown;
    return flow_protocol::tls;
  }
  if (packet::is_sslv2_client_hello(payload)) return flow_protocol::sslv2;
  if (packet::looks_like_http_request(payload)) return flow_protocol::http;
  return flow_protocol::unknown;
}

flow_protocol guess_tcp_protocol(const packet::frame_info& info, packet::bytes payload) noexcept {
  const flow_protocol p = guess_tcp_protocol_bytes(payload);
  if (p == flow_protocol::unknown && is_dns_port(info.dst_port)) return flow_protocol::dns_tcp;
  return p;
}

// When guess_tcp_protocol says unknown: is the prefix merely too short to tell? A first segment
// of a few bytes ("GE", or the start of an SSLv2 header) is what DPI-evasion tools send on
// purpose; calling it unrecognized would let the rest of the request pass unread.
bool too_short_to_tell(packet::bytes prefix) noexcept {
  packet::http_request_info req;
  if (packet::parse_http_request(prefix, req) == packet::http_outcome::need_more) return true;
  const std::size_t n = prefix.size();
  return n > 0 && n < 5 && (prefix[0] & 0x80) != 0 && (n < 3 || prefix[2] == 1) &&
         (n < 4 || prefix[3] == 3);
}

}  // namespace

const char* to_string(name_kind k) noexcept { return name_of(k, name_kind_names); }
const char* to_string(flow_status s) noexcept { return name_of(s, flow_status_names); }
const char* to_string(give_up_reason r) noexcept { return name_of(r, give_up_names); }
const char* to_string(flow_protocol p) noexcept { return name_of(p, protocol_names); }

classifier::classifier(buffer_pool& pool, config cfg) : pool_(pool), cfg_(cfg) {}

classify_result classifier::on_packet(flow_state& st, const packet::frame_info& info,
                                      packet::bytes frame, direction dir,
                                      bool checksum_verified) noexcept {
  classify_result out;
  out.status = st.status;
  if (st.final() || info.outcome != packet::frame_outcome::ok) return out;
  const packet::bytes payload = info.payload(frame);
  // A first IP fragment's checksum covers bytes still to come: it cannot be checked here.
  if (!payload.empty() && cfg_.verify_checksums && !checksum_verified && !info.is_fragment &&
      !packet::l4_checksum_ok(frame, info)) {
    out.ignored = ignored_packet::bad_checksum;
    return out;
  }
  if (info.l4_proto == IPPROTO_TCP) {
    on_tcp(st, info, payload, dir, out);
  } else if (info.l4_proto == IPPROTO_UDP) {
    on_udp(st, info, payload, out);
  }
  out.status = st.status;
  return out;
}

void classifier::on_tcp(flow_state& st, const packet::frame_info& info, packet::bytes payload,
                        direction dir, classify_result& out) noexcept {
  const bool syn = info.tcp_flags & packet::tcp_syn;
  const bool ack = info.tcp_flags & packet::tcp_ack;
  if (info.tcp_flags & packet::tcp_rst) return;
  if (syn && !ack) {
    st.client_dir = dir_code(dir);
    st.client_base_seq = info.tcp_seq + 1;
    st.base_known = true;
    st.handshake_ttl = info.ttl;
  } else if (syn && ack) {
    // The SYN-ACK's sender is the server; it acknowledges the client's ISN + 1.
    st.client_dir = dir_code(dir == direction::forward ? direction::reverse : direction::forward);
    // Keep the base a SYN gave: with TCP Fast Open the SYN-ACK also acknowledges the SYN's
    // data, so its ack number is past the client's first payload byte.
    if (!st.base_known) {
      st.client_base_seq = info.tcp_ack;
      st.base_known = true;
    }
    return;  // a SYN-ACK carries no client bytes
  }
  if (payload.empty()) return;

  if (st.client_dir == 0) {
    // Picked up mid-handshake: the side whose first payload is a request is the client.
    if (guess_tcp_protocol(info, payload) == flow_protocol::unknown) {
      if (++st.idle_payloads >= cfg_.max_idle_payloads) finish(st, flow_status::unrecognized, out);
      return;
    }
    st.client_dir = dir_code(dir);
  }
  if (dir_code(dir) == st.client_dir && info.ttl < st.handshake_ttl) {
    out.ignored = ignored_packet::low_ttl;
    return;
  }
  if (dir_code(dir) != st.client_dir) {
    // The server spoke first (a banner) or answers; a request never follows a server's data
    // forever, so bound the wait.
    if (++st.idle_payloads >= cfg_.max_idle_payloads * 2) finish(st, flow_status::unrecognized, out);
    return;
  }
  if (!st.base_known) {
    st.client_base_seq = info.tcp_seq;
    st.base_known = true;
  }
  // Data in a SYN (TCP Fast Open) starts at ISN + 1 = base; otherwise seq - base.
  const std::uint32_t offset = syn ? 0u : info.tcp_seq - st.client_base_seq;
  if (offset > (1u << 30)) return;  // before the base: an old retransmission, nothing new

  if (st.protocol == flow_protocol::unknown && offset == 0) {
    st.protocol = guess_tcp_protocol(info, payload);
    if (st.protocol == flow_protocol::unknown && !too_short_to_tell(payload)) {
      finish(st, flow_status::unrecognized, out);
      return;
    }
  }

  if (!st.stream.attached() && offset == 0 && st.protocol != flow_protocol::unknown) {
    // Common case: the whole request is in this segment; parse it in place, copy nothing.
    parse_client_stream(st, payload, false, out);
    if (st.final() || out.name_count != 0) return;
  }
  if (!store(st, offset, payload)) {
    out.status = st.status;
    return;
  }
  if (st.protocol == flow_protocol::unknown) {
    // Bytes arrived ahead of the stream's first segment; decide once offset 0 is here.
    const packet::bytes head = st.stream.contiguous();
    if (head.empty()) return;
    st.protocol = guess_tcp_protocol(info, head);
    if (st.protocol == flow_protocol::unknown) {
      if (!too_short_to_tell(head)) finish(st, flow_status::unrecognized, out);
      return;
    }
  }
  const packet::bytes stream = st.stream.contiguous();
  if (stream.empty()) return;
  parse_client_stream(st, stream, stream.size() == st.stream.capacity(), out);
}

bool classifier::store(flow_state& st, std::uint64_t offset, packet::bytes data) noexcept {
  if (!st.stream.attached()) {
    const auto buffer = pool_.acquire();
    if (buffer.empty()) {
      store_failed(st, give_up_reason::pool_empty);
      return false;
    }
    st.stream.attach(buffer);
  }
  switch (st.stream.insert(offset, data)) {
    case stream_buffer::insert_result::ok:
    case stream_buffer::insert_result::clipped:
      return true;
    case stream_buffer::insert_result::beyond_cap:
      // Bytes past the cap cannot matter while the prefix is still incomplete; the parse of
      // the prefix decides whether we have run out of room.
      return true;
    case stream_buffer::insert_result::too_scattered:
      store_failed(st, give_up_reason::too_scattered);
      return false;
  }
  return false;
}

void classifier::abandon(flow_state& st, give_up_reason why) noexcept { store_failed(st, why); }

// The flow is given up (final), also inside a CONNECT tunnel: the target still names it.
void classifier::store_failed(flow_state& st, give_up_reason why) noexcept {
  st.status = flow_status::gave_up;
  st.reason = why;
  st.tunnel_open = false;
  release(st);
}

void classifier::parse_client_stream(flow_state& st, packet::bytes stream, bool stream_full,
                                     classify_result& out) noexcept {
  switch (st.protocol) {
    case flow_protocol::tls: {
      std::size_t len = 0;
      const std::size_t room = std::min(tls_scratch_.size(), pool_.buffer_size());
      auto r = packet::tls_handshake_from_records(stream, {tls_scratch_.data(), room}, len);
      if (r == packet::tls_outcome::client_hello) {
        packet::client_hello_info ch;
        r = packet::parse_client_hello({tls_scratch_.data(), len}, ch);
        if (r == packet::tls_outcome::client_hello) {
          out.has_ech = ch.has_ech;
          out.has_esni = ch.has_esni;
          finish_hello(st, name_kind::tls_sni, ch.has_sni ? ch.sni : std::string_view{}, out);
          return;
        }
      }
      if (r == packet::tls_outcome::need_more) {
        if (stream_full) give_up(st, give_up_reason::over_cap, out);
        return;
      }
      if (r == packet::tls_outcome::too_large) {
        give_up(st, give_up_reason::over_cap, out);
      } else if (r == packet::tls_outcome::not_client_hello || r == packet::tls_outcome::not_tls) {
        finish(st, flow_status::unrecognized, out);
      } else {
        give_up(st, give_up_reason::malformed, out);
      }
      return;
    }
    case flow_protocol::sslv2:
      finish(st, flow_status::nameless, out);  // SSLv2 framing cannot carry extensions
      return;
    case flow_protocol::http: {
      packet::http_request_info req;
      switch (packet::parse_http_request(stream, req)) {
        case packet::http_outcome::host:
          report_http(req, out);
          // One tunnel per flow: a CONNECT inside the tunnel (the flow is named already) adds
          // its names and ends the reading.
          if (req.method == "CONNECT" && req.head_length != 0 && out.name_count != 0 &&
              st.status != flow_status::named) {
            open_tunnel(st, stream, req.head_length, out);
            return;
          }
          finish(st, out.name_count != 0 ? flow_status::named : flow_status::nameless, out);
          return;
        case packet::http_outcome::no_host:
          finish(st, flow_status::nameless, out);
          return;
        case packet::http_outcome::need_more:
          if (!stream_full) return;
          // The header block outgrew the per-flow buffer: a name read before that still names
          // the request (padding after the Host header must not buy a pass).
          report_http(req, out);
          if (out.name_count != 0) {
            finish(st, flow_status::named, out);
          } else {
            give_up(st, give_up_reason::over_cap, out);
          }
          return;
        case packet::http_outcome::not_http:
          finish(st, flow_status::unrecognized, out);
          return;
        default:
          give_up(st, give_up_reason::malformed, out);
          return;
      }
    }
    case flow_protocol::dns_tcp: {
      switch (packet::parse_dns_tcp(stream, dns_)) {
        case packet::dns_outcome::question:
          report_dns(dns_, out);
          finish(st, flow_status::named, out);
          return;
        case packet::dns_outcome::need_more:
          if (stream_full) give_up(st, give_up_reason::over_cap, out);
          return;
        case packet::dns_outcome::no_question:
          finish(st, flow_status::nameless, out);
          return;
        default:
          finish(st, flow_status::unrecognized, out);
          return;
      }
    }
    default:
      return;
  }
}

void classifier::on_udp(flow_state& st, const packet::frame_info& info, packet::bytes payload,
                        classify_result& out) noexcept {
  if (payload.empty()) return;
  if (st.protocol == flow_protocol::unknown || st.protocol == flow_protocol::dns_udp) {
    if (is_dns_port(info.dst_port) || is_dns_port(info.src_port)) {
      // Every DNS datagram is read on its own: a flow (a resolver's 5-tuple) asks many names.
      // Only queries name the flow: a response echoes a question someone already asked.
      const auto r = packet::parse_dns_message(payload, dns_);
      if (r == packet::dns_outcome::question || r == packet::dns_outcome::truncated ||
          r == packet::dns_outcome::no_question) {
        st.protocol = flow_protocol::dns_udp;
        if (!dns_.is_response && dns_.count > 0) {
          report_dns(dns_, out);
          st.status = flow_status::named;
        }
        return;
      }
      if (st.protocol == flow_protocol::dns_udp) return;
    }
  }
  if (st.protocol == flow_protocol::unknown || st.protocol == flow_protocol::quic) {
    // Either side may send long-header packets; only the client's Initials decrypt with keys
    // derived from their own DCID, so the server's simply fail and are skipped.
    if (packet::looks_like_quic_initial(payload)) {
      parse_quic(st, payload, out);
      return;
    }
  }
  if (st.protocol == flow_protocol::unknown || st.protocol == flow_protocol::gquic) {
    packet::gquic_info g;
    const auto r = packet::parse_gquic_chlo(payload, g);
    if (r == packet::gquic_outcome::chlo) {
      st.protocol = flow_protocol::gquic;
      finish_hello(st, name_kind::gquic_sni, g.sni, out);
      return;
    }
    if (r == packet::gquic_outcome::no_chlo) {
      st.protocol = flow_protocol::gquic;
      if (++st.idle_payloads >= cfg_.max_idle_payloads) finish(st, flow_status::unrecognized, out);
      return;
    }
  }
  if (st.protocol == flow_protocol::unknown || st.protocol == flow_protocol::ssdp) {
    // HTTP over UDP (SSDP M-SEARCH / NOTIFY) carries a Host header too.
    packet::http_request_info req;
    if (packet::looks_like_http_request(payload) &&
        packet::parse_http_request(payload, req) == packet::http_outcome::host) {
      st.protocol = flow_protocol::ssdp;
      report_http(req, out);
      if (out.name_count != 0) st.status = flow_status::named;
      return;
    }
  }
  if (st.protocol == flow_protocol::unknown &&
      ++st.idle_payloads >= cfg_.max_idle_payloads) {
    finish(st, flow_status::unrecognized, out);
  }
}

namespace {

// QUIC helpers for parse_quic.

// 16-bit FNV-1a tag of a DCID, never 0 (0 means "no DCID yet" in flow_state). Collisions only
// make a restart look like a continuation, which a client could get anyway by reusing a DCID.
std::uint16_t quic_dcid_tag(packet::bytes dcid) noexcept {
  std::uint32_t h = 2166136261u ^ static_cast<std::uint32_t>(dcid.size());
  for (std::uint8_t b : dcid) h = (h ^ b) * 16777619u;
  const auto tag = static_cast<std::uint16_t>(h ^ (h >> 16));
  return tag == 0 ? 1 : tag;
}

// Does any CRYPTO chunk disagree with the bytes held from offset 0 where they overlap?
bool quic_conflicts_with_held(const stream_buffer& stream,
                              const packet::quic_initial_result& q) noexcept {
  const packet::bytes held = stream.contiguous();
  for (std::size_t i = 0; i < q.chunk_count; ++i) {
    const auto& c = q.chunks[i];
    if (c.offset >= held.size() || c.data.empty()) continue;
    const std::size_t n = std::min<std::size_t>(c.data.size(), held.size() - c.offset);
    if (!std::equal(c.data.begin(), c.data.begin() + static_cast<std::ptrdiff_t>(n),
                    held.begin() + static_cast<std::ptrdiff_t>(c.offset)))
      return true;
  }
  return false;
}

}  // namespace

void classifier::parse_quic(flow_state& st, packet::bytes payload, classify_result& out) noexcept {
  packet::quic_initial_result q;
  const auto r = quic_.decrypt(payload, quic_scratch_, q);
  if (r == packet::quic_outcome::reserved_version ||
      r == packet::quic_outcome::unsupported_version ||
      (r == packet::quic_outcome::not_initial && q.version == 0)) {
    // A client opening with a version we cannot read (reserved, to force version negotiation,
    // or unknown) or the server's Version Negotiation: QUIC with nothing to read until the
    // client's next Initial. Counted apart from idle payloads, and bounded.
    if (st.protocol == flow_protocol::unknown &&
        ++st.quic_unreadable >= std::min<std::uint8_t>(cfg_.max_unreadable_quic, 63)) {
      finish(st, flow_status::unrecognized, out);
    }
    return;
  }
  if (r != packet::quic_outcome::initial && r != packet::quic_outcome::too_many_chunks) {
    // Not the client's Initial (a server packet, 0-RTT, Retry): not evidence against QUIC.
    if (st.protocol == flow_protocol::unknown && ++st.idle_payloads >= cfg_.max_idle_payloads) {
      finish(st, flow_status::unrecognized, out);
    }
    return;
  }
  st.protocol = flow_protocol::quic;

  // One CRYPTO stream per flow, across DCIDs: a client switches DCID after the server's first
  // Initial or a Retry and goes on sending the same ClientHello (same bytes, same offsets), so
  // chunks under a new DCID join what is held. A client that instead restarts with a new
  // ClientHello (new random or key share) under the new DCID sends bytes that conflict with
  // the old ones; stream_buffer keeps first copies, so the old attempt is dropped and the new
  // one read alone, and late packets of the abandoned DCID are ignored. (Every chunk of one
  // result shares its DCID: decrypt skips coalesced packets with another.)
  const bool gquic_crypto = q.handshake == packet::quic_handshake::gquic_crypto;
  const std::uint16_t tag = quic_dcid_tag(q.dcid);
  if (st.quic_dcid_tag != 0 && tag != st.quic_dcid_tag) {
    if (tag == st.quic_stale_tag) return;
    if (st.stream.attached() &&
        (gquic_crypto != st.quic_gquic_crypto || quic_conflicts_with_held(st.stream, q))) {
      st.quic_stale_tag = st.quic_dcid_tag;
      st.stream.attach(st.stream.storage());  // same buffer, nothing held
    }
  }
  st.quic_dcid_tag = tag;
  st.quic_gquic_crypto = gquic_crypto;

  packet::bytes hello;
  if (!st.stream.attached() && q.chunk_count == 1 && q.chunks[0].offset == 0) {
    hello = q.chunks[0].data;  // the whole handshake message in one frame: parse in place
  } else {
    for (std::size_t i = 0; i < q.chunk_count; ++i) {
      if (!store(st, q.chunks[i].offset, q.chunks[i].data)) {
        out.status = st.status;
        return;
      }
    }
    hello = st.stream.contiguous();
  }
  if (hello.empty()) return;
  // The name views may point into the stream buffer that finish() returns to the pool; pool
  // memory is only rewritten by a later acquire, i.e. a later on_packet call.
  if (gquic_crypto) {
    // Q050: a QUIC-crypto CHLO, named like the plaintext CHLOs of Q043/Q046.
    packet::gquic_info g;
    const auto c = packet::parse_gquic_chlo_message(hello, g);
    if (c == packet::gquic_outcome::chlo) {
      finish_hello(st, name_kind::gquic_sni, g.sni, out);
      return;
    }
    if (c != packet::gquic_outcome::need_more) {
      give_up(st, give_up_reason::malformed, out);
      return;
    }
  } else {
    packet::client_hello_info ch;
    const auto t = packet::parse_client_hello(hello, ch);
    if (t == packet::tls_outcome::client_hello) {
      out.has_ech = ch.has_ech;
      out.has_esni = ch.has_esni;
      finish_hello(st, name_kind::quic_sni, ch.has_sni ? ch.sni : std::string_view{}, out);
      return;
    }
    if (t != packet::tls_outcome::need_more) {
      give_up(st, give_up_reason::malformed, out);
      return;
    }
  }
  // The message continues in later Initials; a buffer already full of it never will hold it.
  if (!st.stream.attached()) {
    if (!store(st, 0, hello)) return;
    hello = st.stream.contiguous();
  }
  if (hello.size() >= st.stream.capacity()) give_up(st, give_up_reason::over_cap, out);
}

void classifier::add_name(classify_result& out, name_kind kind, std::string_view name) noexcept {
  if (out.name_count >= classify_result::max_names) return;
  if (out.name_count == 0) out.kind = kind;  // a packet naming hosts of two kinds: the first's
  out.names[out.name_count++] = name;
}

// A hello read whole (ClientHello, CHLO): named by its SNI if it has one, else nameless.
void classifier::finish_hello(flow_state& st, name_kind kind, std::string_view sni,
                              classify_result& out) noexcept {
  if (sni.empty()) {
    finish(st, flow_status::nameless, out);
    return;
  }
  add_name(out, kind, sni);
  finish(st, flow_status::named, out);
}

void classifier::report_http(const packet::http_request_info& req, classify_result& out) noexcept {
  std::string_view names[3];
  const std::size_t n = req.names(names);
  for (std::size_t i = 0; i < n; ++i) add_name(out, name_kind::http_host, names[i]);
}

// A proxy's CONNECT opens a tunnel whose first bytes are the client's real request (a TLS
// ClientHello, mostly): the CONNECT target names the flow now, and the tunnel is read on as a
// new client stream starting right after the request head, for the names it adds.
void classifier::open_tunnel(flow_state& st, packet::bytes stream, std::size_t head_length,
                             classify_result& out) noexcept {
  st.tunnel_open = true;
  st.client_base_seq += static_cast<std::uint32_t>(head_length);
  st.protocol = flow_protocol::unknown;
  st.status = flow_status::named;
  out.status = st.status;
  // Bytes the client sent past the head (without waiting for the proxy's 200) restart the
  // stream at offset 0. Islands beyond the contiguous prefix are dropped with it: a client
  // cannot have sent much before the tunnel opened; a hole left by them ends in a give-up,
  // and the CONNECT target still names the flow.
  const packet::bytes rest = stream.subspan(head_length);
  if (st.stream.attached()) {
    const std::size_t n = std::min(rest.size(), tls_scratch_.size());
    std::memmove(tls_scratch_.data(), rest.data(), n);
    st.stream.attach(st.stream.storage());
    if (n == 0) return;
    if (!store(st, 0, {tls_scratch_.data(), n})) return;
  } else if (rest.empty()) {
    return;
  } else if (!store(st, 0, rest)) {
    return;
  }
  const packet::bytes tunnel = st.stream.contiguous();
  st.protocol = guess_tcp_protocol_bytes(tunnel);
  if (st.protocol == flow_protocol::unknown) {
    if (!too_short_to_tell(tunnel)) finish(st, flow_status::unrecognized, out);
    return;
  }
  parse_client_stream(st, tunnel, tunnel.size() == st.stream.capacity(), out);
}

void classifier::report_dns(const packet::dns_questions& q, classify_result& out) noexcept {
  out.kind = name_kind::dns_qname;
  out.name_count = std::min<std::uint8_t>(q.count, classify_result::max_names);
  for (std::size_t i = 0; i < out.name_count; ++i) out.names[i] = q.names[i].view();
}

void classifier::finish(flow_state& st, flow_status status, classify_result& out) noexcept {
  // Inside a CONNECT tunnel the flow is already named by the CONNECT target: what the tunnel
  // carries adds names or nothing, it never makes the flow nameless.
  if (st.tunnel_open) {
    st.tunnel_open = false;
    if (status == flow_status::nameless || status == flow_status::unrecognized) {
      status = flow_status::named;
    }
  }
  st.status = status;
  out.status = status;
  if (st.final()) release(st);
}

void classifier::give_up(flow_state& st, give_up_reason why, classify_result& out) noexcept {
  st.reason = why;
  finish(st, flow_status::gave_up, out);
}

void classifier::release(flow_state& st) noexcept {
  if (!st.stream.attached()) return;
  pool_.release(st.stream.storage());
  st.stream.attach({});
}

}  // namespace sluice::flow
