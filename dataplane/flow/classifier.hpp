#pragma once
// Per-flow name extraction: feeds a flow's packets through the protocol readers and reports the
// name the flow asks for — TLS SNI (ClientHello across records, segments, out-of-order, TCP Fast
// Open), QUIC Initial SNI (CRYPTO frames across Initial packets), gQUIC CHLO SNI, HTTP Host
// (request split across segments; every name a request routes by: absolute-form or CONNECT
// target and Host, port stripped), the TLS ClientHello inside an HTTP CONNECT tunnel, DNS
// question names (UDP and TCP).
//
// The client side is whoever sends the request: the SYN sender, the side a SYN-ACK answers, or
// (when the capture or the flow table picked the flow up mid-handshake) the side whose first
// payload looks like a ClientHello / HTTP request / DNS query.
//
// Memory: per-flow state is `flow_state` (small, lives in the caller's flow table). A segment
// that completes a request by itself is parsed in place; only requests that span packets borrow
// a reassembly buffer from the worker's `buffer_pool`, whose buffer size is the per-flow byte
// cap. Past the cap, with the pool empty, or with a stream too scattered, the flow is given up
// (pass, and the reason is reported for counting).
//
// One `classifier` per worker thread; no allocation, no logging, no locks in on_packet.

#include <array>
#include <cstdint>
#include <string_view>

#include "dataplane/flow/stream_buffer.hpp"
#include "dataplane/packet/dns.hpp"
#include "dataplane/packet/frame.hpp"
#include "dataplane/packet/http.hpp"
#include "dataplane/packet/quic.hpp"

namespace sluice::flow {

#define SLUICE_NAME_KINDS(X) \
  X(none, "none")            \
  X(tls_sni, "tls_sni")      \
  X(quic_sni, "quic_sni")    \
  X(gquic_sni, "gquic_sni")  \
  X(http_host, "http_host")  \
  X(dns_qname, "dns_qname")

enum class name_kind : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_NAME_KINDS(SLUICE_X)
#undef SLUICE_X
      count
};

#define SLUICE_FLOW_STATES(X)                                                        \
  X(pending, "pending")           /* still reading; later packets may name it */     \
  X(named, "named")               /* name(s) found; final except for DNS/SSDP and */ \
                                  /* while a CONNECT tunnel is read for more names */ \
  X(nameless, "nameless")         /* request read completely and it has no name */   \
  X(unrecognized, "unrecognized") /* no protocol we read; final */                   \
  X(gave_up, "gave_up")           /* cap, pool, scattering or malformed; final */

enum class flow_status : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_FLOW_STATES(SLUICE_X)
#undef SLUICE_X
      count
};

#define SLUICE_GIVE_UP_REASONS(X)                   \
  X(none, "none")                                   \
  X(over_cap, "over_cap")                           \
  X(pool_empty, "pool_empty")                       \
  X(too_scattered, "too_scattered")                 \
  X(malformed, "malformed")                         \
  X(held_too_long, "held_too_long") /* buffer reclaimed: request unfinished */

enum class give_up_reason : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_GIVE_UP_REASONS(SLUICE_X)
#undef SLUICE_X
      count
};

// Why a packet's request bytes were not read: likely a fake injected to mislead DPI (it would
// not reach, or would be dropped by, the server).
enum class ignored_packet : std::uint8_t {
  none,
  bad_checksum,  // TCP/UDP checksum wrong: the server's stack drops it
  low_ttl,       // TTL below the client's handshake TTL: likely expires before the server
};

enum class flow_protocol : std::uint8_t {
  unknown,
  tls,
  sslv2,  // SSL 2.0-framed ClientHello
  http,
  dns_tcp,
  dns_udp,
  quic,
  gquic,
  ssdp,  // HTTP over UDP
};

[[nodiscard]] const char* to_string(name_kind k) noexcept;
[[nodiscard]] const char* to_string(flow_status s) noexcept;
[[nodiscard]] const char* to_string(give_up_reason r) noexcept;
[[nodiscard]] const char* to_string(flow_protocol p) noexcept;

// Which way a packet travels relative to the orientation the caller chose for the flow key.
enum class direction : std::uint8_t { forward = 0, reverse = 1 };

struct flow_state {
  stream_buffer stream;              // the client's stream (TCP) or CRYPTO stream (QUIC)
  std::uint32_t client_base_seq = 0; // TCP sequence number of the client's first payload byte
  flow_status status = flow_status::pending;
  flow_protocol protocol = flow_protocol::unknown;
  give_up_reason reason = give_up_reason::none;
  std::uint8_t client_dir = 0;       // 0 unknown, 1 + direction otherwise
  bool base_known = false;
  std::uint8_t idle_payloads = 0;    // payload packets seen without progress
  std::uint8_t handshake_ttl = 0;    // TTL of the client's SYN (0 = not seen)
  // QUIC only. Tags are 16-bit hashes of the DCID whose Initials fill `stream` and of an attempt
  // the client abandoned (0 = none).
  std::uint8_t quic_unreadable : 6 = 0;   // long headers we cannot read: VN, unknown versions
  bool quic_gquic_crypto : 1 = false;     // `stream` holds a QUIC-crypto CHLO (Q050), not TLS
  // TCP only, in the same byte: named by an HTTP CONNECT, still reading inside the tunnel.
  bool tunnel_open : 1 = false;
  std::uint16_t quic_dcid_tag = 0;
  std::uint16_t quic_stale_tag = 0;

  [[nodiscard]] bool final() const noexcept {
    return status != flow_status::pending && !tunnel_open &&
           !(status == flow_status::named &&
             (protocol == flow_protocol::dns_udp || protocol == flow_protocol::ssdp));
  }
};

// Lives in every flow-table entry: growing it costs memory per flow.
static_assert(sizeof(flow_state) <= 32, "flow_state grew; it is per-flow memory");

struct classify_result {
  static constexpr std::size_t max_names = packet::dns_questions::max_questions;
  flow_status status = flow_status::pending;  // the flow's status after this packet
  name_kind kind = name_kind::none;
  std::uint8_t name_count = 0;                // names this packet revealed (views valid until
  std::array<std::string_view, max_names> names{};  // the next on_packet or release call)
  bool has_ech = false;
  bool has_esni = false;
  ignored_packet ignored = ignored_packet::none;  // this packet's bytes were not read, and why
};

class classifier {
 public:
  struct config {
    std::uint8_t max_idle_payloads = 6;  // payload packets without a request before "unrecognized"
    // QUIC long headers that cannot be read (a client's reserved/unknown version, the server's
    // Version Negotiation) before "unrecognized"; counted apart so that version negotiation
    // does not use up max_idle_payloads before the client's real Initial. At most 63.
    std::uint8_t max_unreadable_quic = 16;
    // Ignore packets with a wrong TCP/UDP checksum (likely fakes). On for live traffic, where
    // every genuine packet on the wire has a correct checksum; off to replay captures taken
    // on an endpoint, whose outgoing packets carry checksum-offload artefacts.
    bool verify_checksums = true;
  };

  explicit classifier(buffer_pool& pool) : classifier(pool, config{}) {}
  classifier(buffer_pool& pool, config cfg);
  classifier(const classifier&) = delete;
  classifier& operator=(const classifier&) = delete;

  // `frame` is the whole frame `info` was parsed from. Packets of a flow whose state is final()
  // need not be passed (the result would repeat the status).
  //
  // Fakes: a packet with payload whose TCP/UDP checksum is wrong, or a TCP client packet whose
  // TTL is lower than the client's SYN had, is not read (result.ignored says why): a fake
  // request naming an allowed name must not decide the flow before the real one. Pass
  // `checksum_verified` when the NIC already checked the checksum and found it good. A first
  // IP fragment cannot be checked (its checksum covers the later fragments) and is read.
  [[nodiscard]] classify_result on_packet(flow_state& state, const packet::frame_info& info,
                                          packet::bytes frame, direction dir,
                                          bool checksum_verified = false) noexcept;

  // Gives the flow's reassembly buffer (if any) back to the pool. Call when the flow ends;
  // on_packet calls it itself once a flow reaches a final status.
  void release(flow_state& state) noexcept;

  // Gives the flow up (gave_up, `why`) and its reassembly buffer back to the pool: the caller's
  // reclaim of a buffer held by a request that never completes (half a ClientHello, a flood of
  // them). The flow's later packets are not read (final).
  void abandon(flow_state& state, give_up_reason why) noexcept;

 private:
  void on_tcp(flow_state& st, const packet::frame_info& info, packet::bytes payload, direction dir,
              classify_result& out) noexcept;
  void on_udp(flow_state& st, const packet::frame_info& info, packet::bytes payload,
              classify_result& out) noexcept;
  void parse_client_stream(flow_state& st, packet::bytes stream, bool stream_full,
                           classify_result& out) noexcept;
  void parse_quic(flow_state& st, packet::bytes payload, classify_result& out) noexcept;
  bool store(flow_state& st, std::uint64_t offset, packet::bytes data) noexcept;
  void store_failed(flow_state& st, give_up_reason why) noexcept;
  void report_dns(const packet::dns_questions& q, classify_result& out) noexcept;
  void report_http(const packet::http_request_info& req, classify_result& out) noexcept;
  static void add_name(classify_result& out, name_kind kind, std::string_view name) noexcept;
  void finish_hello(flow_state& st, name_kind kind, std::string_view sni,
                    classify_result& out) noexcept;
  void open_tunnel(flow_state& st, packet::bytes stream, std::size_t head_length,
                   classify_result& out) noexcept;
  void finish(flow_state& st, flow_status status, classify_result& out) noexcept;
  void give_up(flow_state& st, give_up_reason why, classify_result& out) noexcept;

  buffer_pool& pool_;
  config cfg_;
  packet::quic_initial_decryptor quic_;
  packet::dns_questions dns_{};
  std::array<std::uint8_t, 65536> quic_scratch_{};
  std::array<std::uint8_t, 65536> tls_scratch_{};
};

}  // namespace sluice::flow
