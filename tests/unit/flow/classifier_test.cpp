// Flow classifier: whole conversations built frame by frame (Ethernet/IPv4 or IPv6, TCP or UDP,
// correct checksums) and fed through on_packet in order, out of order, duplicated and overlapped.
// Each case says at which frame the name must appear (not before, not never), the final status,
// and every case ends with all reassembly buffers back in the pool.

#include "dataplane/flow/classifier.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tests/unit/packet/quic_test_util.hpp"
#include "tests/unit/packet/quic_vectors.hpp"
#include "tests/unit/support/packet_builder.hpp"

namespace {

namespace pk = sluice::packet;
namespace fl = sluice::flow;
using namespace sluice::test;
using fl::direction;
using fl::flow_protocol;
using fl::flow_status;
using fl::give_up_reason;
using fl::name_kind;

// ---- conversations ------------------------------------------------------------------------------

struct step {
  buf frame;
  direction dir;
};
using steps = std::vector<step>;

steps operator+(steps a, const steps& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// One TCP connection. The client's stream offset `o` travels with sequence number cisn + 1 + o.
struct tcp_conv {
  pk::ip_address client = v4(10, 0, 0, 1);
  pk::ip_address server = v4(149, 154, 167, 99);
  std::uint16_t cport = 40000;
  std::uint16_t sport = 443;
  std::uint32_t cisn = 1000;
  std::uint32_t sisn = 500000;
  bool client_forward = true;  // orientation of the caller's flow key

  [[nodiscard]] direction dir(bool from_client) const {
    return from_client == client_forward ? direction::forward : direction::reverse;
  }
  [[nodiscard]] step seg(bool from_client, std::uint8_t flags, std::uint32_t seq, std::uint32_t ack,
                         const buf& payload) const {
    const auto& src = from_client ? client : server;
    const auto& dst = from_client ? server : client;
    const std::uint16_t sp = from_client ? cport : sport;
    const std::uint16_t dp = from_client ? sport : cport;
    return {eth_ip(ip(src, dst, 6, tcp(sp, dp, payload, flags, {}, seq, ack, 64240))),
            dir(from_client)};
  }
  [[nodiscard]] step syn(const buf& payload = {}) const {
    return seg(true, pk::tcp_syn, cisn, 0, payload);
  }
  // `acked` client bytes beyond the SYN (TCP Fast Open data the server took).
  [[nodiscard]] step syn_ack(std::uint32_t acked = 0) const {
    return seg(false, pk::tcp_syn | pk::tcp_ack, sisn, cisn + 1 + acked, {});
  }
  [[nodiscard]] step ack() const { return seg(true, pk::tcp_ack, cisn + 1, sisn + 1, {}); }
  [[nodiscard]] steps handshake() const { return {syn(), syn_ack(), ack()}; }
  [[nodiscard]] step data(std::size_t offset, const buf& payload) const {
    return seg(true, pk::tcp_ack | pk::tcp_psh, cisn + 1 + static_cast<std::uint32_t>(offset),
               sisn + 1, payload);
  }
  [[nodiscard]] step server_data(std::size_t offset, const buf& payload) const {
    return seg(false, pk::tcp_ack | pk::tcp_psh, sisn + 1 + static_cast<std::uint32_t>(offset),
               cisn + 1, payload);
  }
  [[nodiscard]] step rst(bool from_client, const buf& payload = {}) const {
    return from_client ? seg(true, pk::tcp_rst | pk::tcp_ack, cisn + 1, sisn + 1, payload)
                       : seg(false, pk::tcp_rst | pk::tcp_ack, sisn + 1, cisn + 1, payload);
  }
  // The client's stream cut at ascending offsets `cuts`, one segment per piece, in order.
  [[nodiscard]] steps segments(const buf& stream, const std::vector<std::size_t>& cuts) const {
    steps out;
    std::size_t from = 0;
    for (std::size_t i = 0; i <= cuts.size(); ++i) {
      const std::size_t to = i < cuts.size() ? cuts[i] : stream.size();
      out.push_back(data(from, slice(stream, from, to)));
      from = to;
    }
    return out;
  }
};

const pk::ip_address client6 = v6(0x2001, 0x1);
const pk::ip_address server6 = v6(0x2001, 0x67c);

step udp_step(const pk::ip_address& src, const pk::ip_address& dst, std::uint16_t sp,
              std::uint16_t dp, const buf& payload, direction d = direction::forward) {
  return {eth_ip(ip(src, dst, 17, udp(sp, dp, payload))), d};
}

// ---- running
// --------------------------------------------------------------------------------------

struct observed {
  flow_status status = flow_status::pending;
  give_up_reason reason = give_up_reason::none;
  name_kind kind = name_kind::none;
  std::vector<std::string> names;  // from the first step that revealed names
  int name_at = -1;
  int naming_steps = 0;
  int decided_at = -1;  // first step after which the status was no longer pending
  bool final = false;
};

observed run_steps(fl::classifier& cls, fl::flow_state& st, const steps& frames) {
  observed o;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const buf& f = frames[i].frame;
    const auto info = pk::parse_frame(f);
    REQUIRE(info.outcome == pk::frame_outcome::ok);
    CHECK(pk::l4_checksum_ok(f, info));  // the builder makes frames a real stack would accept
    const auto r = cls.on_packet(st, info, f, frames[i].dir);
    CHECK(r.status == st.status);
    if (r.name_count != 0) {
      if (o.name_at < 0) {
        o.name_at = static_cast<int>(i);
        o.kind = r.kind;
        for (std::size_t n = 0; n < r.name_count; ++n) o.names.emplace_back(r.names[n]);
      }
      ++o.naming_steps;
    }
    if (st.status != flow_status::pending && o.decided_at < 0) o.decided_at = static_cast<int>(i);
    if (st.final()) CHECK_FALSE(st.stream.attached());  // final flows hold no buffer
  }
  o.status = st.status;
  o.reason = st.reason;
  o.final = st.final();
  return o;
}

struct flow_case {
  std::string description;
  steps frames;
  flow_status status;
  name_kind kind = name_kind::none;
  std::vector<std::string> names{};
  int name_at = -1;     // the one step whose result carries the names (-1: none)
  int decided_at = -1;  // first step that leaves `pending` (-1: never)
  give_up_reason reason = give_up_reason::none;
  std::size_t pool_buffers = 4;
  std::size_t buffer_size = 4096;
};

std::string str(flow_status s) { return fl::to_string(s); }
std::string str(name_kind k) { return fl::to_string(k); }
std::string str(give_up_reason r) { return fl::to_string(r); }

void check_case(const flow_case& c) {
  CAPTURE(c.description);
  fl::buffer_pool pool(c.pool_buffers, c.buffer_size);
  auto cls = std::make_unique<fl::classifier>(pool);
  fl::flow_state st;
  const observed o = run_steps(*cls, st, c.frames);
  CHECK(str(o.status) == str(c.status));
  CHECK(str(o.reason) == str(c.reason));
  CHECK(str(o.kind) == str(c.kind));
  CHECK(o.names == c.names);
  CHECK(o.name_at == c.name_at);
  CHECK(o.naming_steps == (c.name_at >= 0 ? 1 : 0));
  CHECK(o.decided_at == c.decided_at);
  if (o.final) {
    // on_packet gave the buffer back by itself.
    CHECK(pool.available() == pool.capacity());
  }
  cls->release(st);
  CHECK(pool.available() == pool.capacity());
  CHECK_FALSE(st.stream.attached());
}

flow_case named_at(std::string description, steps frames, name_kind kind, std::string name,
                   int at) {
  return {std::move(description),
          std::move(frames),
          flow_status::named,
          kind,
          {std::move(name)},
          at,
          at};
}
flow_case decided(std::string description, steps frames, flow_status status, int at,
                  give_up_reason reason = give_up_reason::none) {
  return {std::move(description), std::move(frames), status, name_kind::none, {}, -1, at, reason};
}

std::size_t find(const buf& hay, std::string_view needle) {
  const auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end());
  REQUIRE(it != hay.end());
  return static_cast<std::size_t>(it - hay.begin());
}

const std::string sni = "web.telegram.org";
const buf hello_msg = tls_client_hello_for(sni);
const buf hello_stream = tls_records(hello_msg, 1);

}  // namespace

// ---- TLS over TCP
// ---------------------------------------------------------------------------------

TEST_CASE("classifier: TLS ClientHello conversations") {
  const tcp_conv c;
  tcp_conv reversed;
  reversed.client_forward = false;
  tcp_conv wrap;  // the client's sequence numbers cross 2^32 inside the hello
  wrap.cisn = 0xffffff80u;
  tcp_conv v6c;
  v6c.client = client6;
  v6c.server = server6;

  const std::size_t n = hello_stream.size();
  const std::size_t sni_at = find(hello_stream, sni);
  const buf no_sni =
      tls_records(tls_client_hello({{16, alpn_data({"h2"})}, filler_ext(51, 38)}), 1);
  buf sslv2{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10};
  sslv2.resize(0x30, 0x07);
  const buf garbage = from_hex("5a17c3000102030405060708090a0b0c0d0e0f");
  const steps seg3 = c.segments(hello_stream, {40, 100});
  const buf other_hello = tls_records(tls_client_hello_for("www.example.org"), 1);

  const std::vector<flow_case> cases = {
      named_at("one segment after the handshake", c.handshake() + steps{c.data(0, hello_stream)},
               name_kind::tls_sni, sni, 3),
      named_at("client on the reverse side of the key",
               reversed.handshake() + steps{reversed.data(0, hello_stream)}, name_kind::tls_sni,
               sni, 3),
      named_at("IPv6", v6c.handshake() + steps{v6c.data(0, hello_stream)}, name_kind::tls_sni, sni,
               3),
      named_at("IPv6, split in two", v6c.handshake() + v6c.segments(hello_stream, {n / 2}),
               name_kind::tls_sni, sni, 4),
      named_at("split right inside the SNI", c.handshake() + c.segments(hello_stream, {sni_at + 4}),
               name_kind::tls_sni, sni, 4),
      named_at("sequence numbers wrap inside the hello",
               wrap.handshake() + wrap.segments(hello_stream, {60, 100, 128}), name_kind::tls_sni,
               sni, 6),
      named_at("three segments, last first", c.handshake() + steps{seg3[2], seg3[0], seg3[1]},
               name_kind::tls_sni, sni, 5),
      named_at("three segments, middle first", c.handshake() + steps{seg3[1], seg3[2], seg3[0]},
               name_kind::tls_sni, sni, 5),
      named_at("three segments reversed", c.handshake() + steps{seg3[2], seg3[1], seg3[0]},
               name_kind::tls_sni, sni, 5),
      named_at("duplicate segments",
               c.handshake() + steps{seg3[0], seg3[0], seg3[1], seg3[1], seg3[2]},
               name_kind::tls_sni, sni, 7),
      named_at("retransmission covering two segments",
               c.handshake() + steps{seg3[0], c.data(0, slice(hello_stream, 0, 120)), seg3[2]},
               name_kind::tls_sni, sni, 5),
      named_at("retransmission after the name changes nothing",
               c.handshake() + steps{c.data(0, hello_stream), c.data(0, hello_stream)},
               name_kind::tls_sni, sni, 3),
      named_at("TCP Fast Open: the whole hello in the SYN",
               steps{c.syn(hello_stream), c.syn_ack(static_cast<std::uint32_t>(n)), c.ack()},
               name_kind::tls_sni, sni, 0),
      named_at("TCP Fast Open: hello begins in the SYN, the SYN-ACK takes that data",
               steps{c.syn(slice(hello_stream, 0, 100)), c.syn_ack(100),
                     c.data(100, slice(hello_stream, 100, n))},
               name_kind::tls_sni, sni, 2),
      named_at("TCP Fast Open: SYN data refused, client sends it again",
               steps{c.syn(slice(hello_stream, 0, 100)), c.syn_ack(0), c.data(0, hello_stream)},
               name_kind::tls_sni, sni, 2),
      named_at("capture starts at the SYN-ACK",
               steps{c.syn_ack(), c.ack()} + c.segments(hello_stream, {50}), name_kind::tls_sni,
               sni, 3),
      named_at("capture starts at the client's data", steps{c.data(0, hello_stream)},
               name_kind::tls_sni, sni, 0),
      named_at("capture starts at the client's data, split", c.segments(hello_stream, {7, 90}),
               name_kind::tls_sni, sni, 2),
      named_at("capture starts with server data, then the client's hello",
               steps{c.server_data(0, text("x")), c.data(0, hello_stream)}, name_kind::tls_sni, sni,
               1),
      named_at("RST ignored", steps{c.syn(), c.syn_ack(), c.rst(false), c.data(0, hello_stream)},
               name_kind::tls_sni, sni, 3),
      named_at("RST carrying a hello is not read",
               c.handshake() + steps{c.rst(true, other_hello), c.data(0, hello_stream)},
               name_kind::tls_sni, sni, 4),
      decided("ClientHello without SNI", c.handshake() + steps{c.data(0, no_sni)},
              flow_status::nameless, 3),
      decided("SSLv2-framed ClientHello", c.handshake() + steps{c.data(0, sslv2)},
              flow_status::nameless, 3),
      decided("non-TLS garbage from the client", c.handshake() + steps{c.data(0, garbage)},
              flow_status::unrecognized, 3),
  };
  for (const auto& k : cases) check_case(k);
}

TEST_CASE("classifier: TLS hello split at every byte boundary completes at the last piece") {
  const tcp_conv plain;
  tcp_conv wrap;
  wrap.cisn = 0xffffffffu - 40;
  const buf two_records = tls_records(hello_msg, 2);
  const buf three_records = tls_records(hello_msg, 3);
  for (const tcp_conv* c : std::vector<const tcp_conv*>{&plain, &wrap}) {
    for (const buf* stream : std::vector<const buf*>{&hello_stream, &two_records, &three_records}) {
      const std::size_t n = stream->size();
      // Two segments, cut at every byte.
      for (std::size_t k = 1; k < n; ++k) {
        check_case(named_at("2 segments, cut at " + std::to_string(k) + " of " + std::to_string(n),
                            c->handshake() + c->segments(*stream, {k}), name_kind::tls_sni, sni,
                            4));
      }
      // 2..n segments of near-equal size (n: one byte per segment).
      for (std::size_t pieces = 2; pieces <= n; ++pieces) {
        std::vector<std::size_t> cuts;
        for (std::size_t i = 1; i < pieces; ++i) cuts.push_back(n * i / pieces);
        check_case(named_at(std::to_string(pieces) + " equal segments of " + std::to_string(n),
                            c->handshake() + c->segments(*stream, cuts), name_kind::tls_sni, sni,
                            static_cast<int>(3 + pieces - 1)));
      }
    }
  }
}

TEST_CASE("classifier: random segmentation, order and duplicates (coverage model)") {
  const tcp_conv c;
  const std::size_t n = hello_stream.size();
  std::uint32_t x = 2024;
  auto rnd = [&x](std::uint32_t bound) {
    x = x * 1664525u + 1013904223u;
    return (x >> 8) % bound;
  };
  for (int round = 0; round < 400; ++round) {
    // Up to 7 pieces so at most 7 islands: never too scattered.
    const std::uint32_t pieces = 1 + rnd(7);
    std::vector<std::size_t> cuts;
    while (cuts.size() + 1 < pieces) {
      const std::size_t k = 1 + rnd(static_cast<std::uint32_t>(n - 1));
      if (std::find(cuts.begin(), cuts.end(), k) == cuts.end()) cuts.push_back(k);
    }
    std::sort(cuts.begin(), cuts.end());
    steps segs = c.segments(hello_stream, cuts);
    std::vector<std::pair<std::size_t, std::size_t>> span_of;  // [from, to) of each piece
    std::size_t from = 0;
    for (std::size_t i = 0; i <= cuts.size(); ++i) {
      const std::size_t to = i < cuts.size() ? cuts[i] : n;
      span_of.emplace_back(from, to);
      from = to;
    }
    std::vector<std::size_t> order(segs.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (std::size_t i = order.size(); i > 1; --i)
      std::swap(order[i - 1], order[rnd(static_cast<std::uint32_t>(i))]);
    if (rnd(2) == 0)
      order.insert(order.begin() + rnd(static_cast<std::uint32_t>(order.size())),
                   order[rnd(static_cast<std::uint32_t>(order.size()))]);

    steps frames = c.handshake();
    std::vector<bool> have(n, false);
    int complete_at = -1;
    for (std::size_t i : order) {
      frames.push_back(segs[i]);
      std::fill(have.begin() + static_cast<std::ptrdiff_t>(span_of[i].first),
                have.begin() + static_cast<std::ptrdiff_t>(span_of[i].second), true);
      if (complete_at < 0 && std::all_of(have.begin(), have.end(), [](bool b) { return b; })) {
        complete_at = static_cast<int>(frames.size() - 1);
      }
    }
    std::string d = "round " + std::to_string(round) + ": order";
    for (std::size_t i : order) d += " " + std::to_string(span_of[i].first);
    check_case(named_at(d, frames, name_kind::tls_sni, sni, complete_at));
  }
}

TEST_CASE("classifier: overlapping retransmissions keep the first copy") {
  const tcp_conv c;
  const std::string first = "first.example.com";
  const std::string other = "other.example.com";  // same length: same layout
  const buf a = tls_records(tls_client_hello_for(first), 1);
  const buf b = tls_records(tls_client_hello_for(other), 1);
  REQUIRE(a.size() == b.size());
  const std::size_t name_at = find(a, first);
  const std::size_t name_end = name_at + first.size();
  const std::vector<flow_case> cases = {
      named_at("first piece holds the name, then a different full copy",
               c.handshake() + steps{c.data(0, slice(a, 0, name_end + 5)), c.data(0, b)},
               name_kind::tls_sni, first, 4),
      named_at("a different copy of the middle arrives first",
               c.handshake() +
                   steps{c.data(name_at - 8, slice(b, name_at - 8, name_end + 3)), c.data(0, a)},
               name_kind::tls_sni, other, 4),
      named_at("a different tail first, the name comes with the head",
               c.handshake() +
                   steps{c.data(name_end + 2, slice(b, name_end + 2, b.size())), c.data(0, a)},
               name_kind::tls_sni, first, 4),
  };
  for (const auto& k : cases) check_case(k);
}

TEST_CASE("classifier: TLS limits give up and return the buffer") {
  const tcp_conv c;
  // Announces more than a pool buffer holds: refused as soon as the header is read.
  const buf big = tls_records(tls_client_hello_for(sni, 3000), 1);
  // A message that fits a buffer, cut into 15-byte records whose headers push the stream past it.
  const buf small_records = tls_records(tls_client_hello_for(sni, 700), 60);
  REQUIRE(small_records.size() > 1024);
  // Twenty 20-byte pieces; the odd ones alone make nine islands.
  const buf scattered = tls_records(tls_client_hello_for(sni, 300), 1);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < 20; ++i) cuts.push_back(i * scattered.size() / 20);
  const steps pieces = c.segments(scattered, cuts);
  steps odd;
  for (std::size_t i = 1; i < pieces.size(); i += 2) odd.push_back(pieces[i]);
  REQUIRE(odd.size() >= 9);
  odd.resize(9);

  flow_case over_cap =
      decided("hello announces more than a buffer", c.handshake() + c.segments(big, {1000, 2000}),
              flow_status::gave_up, 3, give_up_reason::over_cap);
  over_cap.buffer_size = 1024;
  flow_case over_cap_records =
      decided("many small records fill the buffer before the hello completes",
              c.handshake() + c.segments(small_records, {500, 1000}), flow_status::gave_up, 5,
              give_up_reason::over_cap);
  over_cap_records.buffer_size = 1024;
  flow_case over_cap_ooo =
      decided("pieces beyond the buffer first, then the head",
              c.handshake() + steps{c.data(1100, slice(small_records, 1100, 1200)),
                                    c.data(0, slice(small_records, 0, 1100))},
              flow_status::gave_up, 4, give_up_reason::over_cap);
  over_cap_ooo.buffer_size = 1024;
  const flow_case too_scattered = decided("nine islands", c.handshake() + odd, flow_status::gave_up,
                                          11, give_up_reason::too_scattered);
  flow_case eight_islands = named_at("eight islands then the rest",
                                     c.handshake() + steps(odd.begin(), odd.begin() + 8) + pieces,
                                     name_kind::tls_sni, sni, 3 + 8 + 19);
  flow_case no_pool_split =
      decided("no buffers at all, split hello", c.handshake() + c.segments(hello_stream, {50}),
              flow_status::gave_up, 3, give_up_reason::pool_empty);
  no_pool_split.pool_buffers = 0;
  flow_case no_pool_whole =
      named_at("no buffers at all, hello in one segment",
               c.handshake() + steps{c.data(0, hello_stream)}, name_kind::tls_sni, sni, 3);
  no_pool_whole.pool_buffers = 0;
  for (const auto& k : {over_cap, over_cap_records, over_cap_ooo, too_scattered, eight_islands,
                        no_pool_split, no_pool_whole}) {
    check_case(k);
  }
}

TEST_CASE("classifier: first segments too short to tell wait for more") {
  tcp_conv c;
  buf sslv2{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10};
  sslv2.resize(0x30, 0x07);
  for (std::size_t k = 1; k < sslv2.size(); ++k) {
    // is_sslv2_client_hello needs 5 bytes.
    check_case(decided("SSLv2 hello cut at " + std::to_string(k),
                       c.handshake() + c.segments(sslv2, {k}), flow_status::nameless,
                       k >= 5 ? 3 : 4));
  }
  const buf req = http_get("t.me");
  check_case(named_at(
      "HTTP: one byte, then the rest out of order",
      c.handshake() + steps{c.data(1, slice(req, 1, req.size())), c.data(0, slice(req, 0, 1))},
      name_kind::http_host, "t.me", 4));
  check_case(decided("a lone 'G' is not yet unrecognized",
                     c.handshake() + steps{c.data(0, text("G"))}, flow_status::pending, -1));
  check_case(decided("'G' then not HTTP", c.handshake() + c.segments(text("GX\x01\x02 junk"), {1}),
                     flow_status::unrecognized, 4));
  check_case(decided("a lone 0x80 is not yet unrecognized",
                     c.handshake() + steps{c.data(0, buf{0x80})}, flow_status::pending, -1));
}

TEST_CASE("classifier: an exhausted pool gives up only the flow that needed a buffer") {
  fl::buffer_pool pool(1, 4096);
  auto cls = std::make_unique<fl::classifier>(pool);
  tcp_conv a;
  tcp_conv b;
  b.cport = 40001;
  const steps a_segs = a.segments(hello_stream, {60});
  const steps b_segs = b.segments(hello_stream, {60});
  fl::flow_state fa;
  fl::flow_state fb;
  fl::flow_state fc;

  auto oa = run_steps(*cls, fa, a.handshake() + steps{a_segs[0]});
  CHECK(oa.status == flow_status::pending);
  CHECK(pool.available() == 0);

  const auto ob = run_steps(*cls, fb, b.handshake() + steps{b_segs[0]});
  CHECK(str(ob.status) == "gave_up");
  CHECK(str(ob.reason) == "pool_empty");
  CHECK(ob.decided_at == 3);
  CHECK(fb.final());

  // A flow whose hello fits one segment needs no buffer and is still named.
  tcp_conv c;
  c.cport = 40002;
  const auto oc = run_steps(*cls, fc, c.handshake() + steps{c.data(0, hello_stream)});
  CHECK(oc.names == std::vector<std::string>{sni});

  oa = run_steps(*cls, fa, steps{a_segs[1]});
  CHECK(oa.names == std::vector<std::string>{sni});
  CHECK(oa.name_at == 0);
  CHECK(pool.available() == 1);

  // The buffer serves the next flow.
  fl::flow_state fd;
  tcp_conv d;
  d.cport = 40003;
  const auto od = run_steps(*cls, fd, d.handshake() + d.segments(hello_stream, {10}));
  CHECK(od.name_at == 4);
  CHECK(pool.available() == 1);
}

TEST_CASE("classifier: release() returns the buffer of a flow that ends while pending") {
  fl::buffer_pool pool(2, 4096);
  auto cls = std::make_unique<fl::classifier>(pool);
  const tcp_conv c;
  fl::flow_state st;
  const auto o = run_steps(*cls, st, c.handshake() + steps{c.data(0, slice(hello_stream, 0, 30))});
  CHECK(o.status == flow_status::pending);
  CHECK(st.stream.attached());
  CHECK(pool.available() == 1);
  cls->release(st);
  cls->release(st);  // twice is harmless
  CHECK(pool.available() == 2);
}

TEST_CASE("classifier: server talks, client does not ask") {
  tcp_conv smtp;
  smtp.sport = 25;
  steps banner = smtp.handshake();
  for (std::size_t i = 0; i < 12; ++i) {
    banner.push_back(smtp.server_data(i * 24, text("220 mail.example ESMTP\r\n")));
  }
  const std::vector<flow_case> cases = {
      // max_idle_payloads (6) * 2 server payloads.
      decided("server banner, then only more server data", banner, flow_status::unrecognized,
              3 + 11),
      decided("server banner, then the client answers something else",
              smtp.handshake() + steps{smtp.server_data(0, text("220 mail.example ESMTP\r\n")),
                                       smtp.data(0, text("EHLO client.example\r\n"))},
              flow_status::unrecognized, 4),
      decided("client data we do not read, no handshake seen (6 payloads)",
              steps{smtp.data(0, text("a\r\n")), smtp.data(3, text("b\r\n")),
                    smtp.data(6, text("c\r\n")), smtp.data(9, text("d\r\n")),
                    smtp.data(12, text("e\r\n")), smtp.data(15, text("f\r\n"))},
              flow_status::unrecognized, 5),
  };
  for (const auto& k : cases) check_case(k);
  // One banner alone leaves the flow undecided.
  check_case({"server banner only", smtp.handshake() + steps{banner[3]}, flow_status::pending});
}

// ---- HTTP and DNS over TCP
// ------------------------------------------------------------------------

TEST_CASE("classifier: HTTP requests") {
  tcp_conv c;
  c.sport = 80;
  const buf req = http_get("t.me");
  const buf http10 = text("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n");
  const std::vector<flow_case> cases = {
      named_at("request in one segment", c.handshake() + steps{c.data(0, req)},
               name_kind::http_host, "t.me", 3),
      decided("HTTP/1.0 without Host", c.handshake() + steps{c.data(0, http10)},
              flow_status::nameless, 3),
      decided("HTTP/1.0 without Host, headers end in the second segment",
              c.handshake() + c.segments(http10, {20}), flow_status::nameless, 4),
  };
  for (const auto& k : cases) check_case(k);

  // Cut at every byte: the names appear with the segment that completes the header block (a
  // second Host header could still follow the first).
  for (std::size_t k = 1; k < req.size(); ++k) {
    check_case(named_at("request split, cut at " + std::to_string(k),
                        c.handshake() + c.segments(req, {k}), name_kind::http_host, "t.me", 4));
  }
}

// Every step's names, for flows that reveal names in more than one packet (CONNECT tunnels).
struct named_step {
  int at;
  std::vector<std::string> names;
  bool operator==(const named_step&) const = default;
};

std::vector<named_step> names_per_step(const steps& frames, fl::flow_state& st,
                                       std::size_t pool_buffers = 4) {
  fl::buffer_pool pool(pool_buffers, 4096);
  auto cls = std::make_unique<fl::classifier>(pool);
  std::vector<named_step> out;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const auto info = pk::parse_frame(frames[i].frame);
    const auto r = cls->on_packet(st, info, frames[i].frame, frames[i].dir);
    if (r.name_count == 0) continue;
    named_step ns{static_cast<int>(i), {}};
    for (std::size_t n = 0; n < r.name_count; ++n) ns.names.emplace_back(r.names[n]);
    out.push_back(ns);
  }
  cls->release(st);
  CHECK(pool.available() == pool.capacity());
  return out;
}

TEST_CASE("classifier: HTTP names every host a request routes by, port stripped") {
  tcp_conv c;
  c.sport = 8080;
  const buf absolute = text("GET http://telegram.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n");
  const buf with_port = text("GET / HTTP/1.1\r\nHost: telegram.org:443\r\n\r\n");
  const buf two_hosts = text("GET / HTTP/1.1\r\nHost: example.org\r\nHost: t.me\r\n\r\n");
  struct row {
    const char* description;
    buf request;
    std::vector<std::string> names;
  } rows[] = {
      {"absolute-form target and a different Host", absolute, {"telegram.org", "example.org"}},
      {"Host: name:port", with_port, {"telegram.org"}},
      {"two Host headers", two_hosts, {"example.org", "t.me"}},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string{r.description});
    fl::flow_state st;
    const auto got = names_per_step(c.handshake() + steps{c.data(0, r.request)}, st);
    CHECK(got == std::vector<named_step>{{3, r.names}});
    CHECK(st.status == flow_status::named);
  }
}

TEST_CASE("classifier: padding after the Host header past the per-flow buffer does not hide it") {
  tcp_conv c;
  c.sport = 80;
  const buf req = text("GET / HTTP/1.1\r\nHost: telegram.org\r\nX-Pad: " + std::string(6000, 'a') +
                       "\r\n\r\n");
  fl::flow_state st;
  const auto got = names_per_step(c.handshake() + c.segments(req, {1400, 2800, 4200}), st);
  // The 4096-byte buffer fills with the third data segment (step 5).
  CHECK(got == std::vector<named_step>{{5, {"telegram.org"}}});
  CHECK(st.status == flow_status::named);
  fl::flow_state st2;
  const buf no_host = text("GET / HTTP/1.1\r\nX-Pad: " + std::string(6000, 'a') + "\r\n\r\n");
  CHECK(names_per_step(c.handshake() + c.segments(no_host, {1400, 2800, 4200}), st2).empty());
  CHECK(st2.status == flow_status::gave_up);
  CHECK(st2.reason == give_up_reason::over_cap);
}

TEST_CASE("classifier: an HTTP CONNECT tunnel is named by its target and by the TLS inside") {
  tcp_conv c;
  c.sport = 3128;
  const buf connect_t = text("CONNECT telegram.org:443 HTTP/1.1\r\nHost: telegram.org:443\r\n\r\n");
  const buf connect_e = text("CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n");
  const buf established = text("HTTP/1.1 200 Connection established\r\n\r\n");
  const buf hello_t = tls_records(tls_client_hello_for("web.telegram.org"), 1);
  const buf hello_e = tls_records(tls_client_hello_for("example.org"), 1);
  const buf hello_nosni = tls_records(tls_client_hello({}), 1);

  SUBCASE("blocked target, allowed ClientHello: both names, in their packets") {
    fl::flow_state st;
    const auto got = names_per_step(
        c.handshake() + steps{c.data(0, connect_t), c.server_data(0, established),
                              c.data(connect_t.size(), hello_e)},
        st);
    CHECK(got == std::vector<named_step>{{3, {"telegram.org"}}, {5, {"example.org"}}});
    CHECK(st.status == flow_status::named);
    CHECK(st.final());
  }
  SUBCASE("allowed target, blocked SNI split in two segments") {
    fl::flow_state st;
    const steps tunnel = [&] {
      steps s;
      const std::size_t base = connect_e.size(), cut = hello_t.size() / 2;
      s.push_back(c.data(base, slice(hello_t, 0, cut)));
      s.push_back(c.data(base + cut, slice(hello_t, cut, hello_t.size())));
      return s;
    }();
    const auto got = names_per_step(c.handshake() + steps{c.data(0, connect_e),
                                                          c.server_data(0, established)} + tunnel,
                                    st);
    CHECK(got == std::vector<named_step>{{3, {"example.org"}}, {6, {"web.telegram.org"}}});
    CHECK(st.status == flow_status::named);
  }
  SUBCASE("ClientHello in the same segment as the CONNECT head") {
    fl::flow_state st;
    const auto got = names_per_step(c.handshake() + steps{c.data(0, cat({connect_e, hello_t}))}, st);
    CHECK(got == std::vector<named_step>{{3, {"example.org", "web.telegram.org"}}});
    CHECK(st.status == flow_status::named);
  }
  SUBCASE("CONNECT head split, then the ClientHello") {
    fl::flow_state st;
    const auto got = names_per_step(c.handshake() + c.segments(connect_e, {10}) +
                                        steps{c.data(connect_e.size(), hello_t)},
                                    st);
    CHECK(got == std::vector<named_step>{{4, {"example.org"}}, {5, {"web.telegram.org"}}});
  }
  SUBCASE("a ClientHello without SNI leaves the flow named by the target") {
    fl::flow_state st;
    const auto got = names_per_step(
        c.handshake() + steps{c.data(0, connect_t), c.data(connect_t.size(), hello_nosni)}, st);
    CHECK(got == std::vector<named_step>{{3, {"telegram.org"}}});
    CHECK(st.status == flow_status::named);
    CHECK(st.final());
  }
  SUBCASE("non-TLS bytes in the tunnel: named by the target, reading ends") {
    fl::flow_state st;
    const auto got = names_per_step(
        c.handshake() + steps{c.data(0, connect_t), c.data(connect_t.size(), text("SSH-2.0-x\r\n"))},
        st);
    CHECK(got == std::vector<named_step>{{3, {"telegram.org"}}});
    CHECK(st.status == flow_status::named);
    CHECK(st.final());
  }
  SUBCASE("a CONNECT inside the tunnel names it but opens no second tunnel") {
    fl::flow_state st;
    const auto got = names_per_step(
        c.handshake() + steps{c.data(0, connect_e), c.data(connect_e.size(), connect_t),
                              c.data(connect_e.size() + connect_t.size(), hello_e)},
        st);
    CHECK(got == std::vector<named_step>{{3, {"example.org"}}, {4, {"telegram.org"}}});
    CHECK(st.final());
  }
  SUBCASE("a tunnel ClientHello past the per-flow cap gives up, the target still names it") {
    fl::flow_state st;
    const buf huge = tls_records(tls_client_hello_for("example.org", 6000), 1);
    const std::size_t base = connect_t.size();
    const auto got = names_per_step(
        c.handshake() + steps{c.data(0, connect_t), c.data(base, slice(huge, 0, 1400)),
                              c.data(base + 1400, slice(huge, 1400, 2800)),
                              c.data(base + 2800, slice(huge, 2800, 4200))},
        st);
    CHECK(got == std::vector<named_step>{{3, {"telegram.org"}}});
    CHECK(st.status == flow_status::gave_up);
    CHECK(st.reason == give_up_reason::over_cap);
    CHECK(st.final());
  }
  SUBCASE("no reassembly buffer for the tunnel: given up and final, the target still names it") {
    fl::flow_state st;
    const auto got = names_per_step(
        c.handshake() + steps{c.data(0, cat({connect_t, slice(hello_e, 0, 100)}))}, st, 0);
    CHECK(got == std::vector<named_step>{{3, {"telegram.org"}}});
    CHECK(st.status == flow_status::gave_up);
    CHECK(st.reason == give_up_reason::pool_empty);
    CHECK(st.final());
  }
  SUBCASE("a tunnel too scattered to hold: given up and final") {
    fl::flow_state st;
    steps s = c.handshake() + steps{c.data(0, connect_t)};
    const buf piece(10, 0x16);
    for (std::size_t i = 0; i < 10; ++i) {  // islands past the 8 the stream tracks
      s.push_back(c.data(connect_t.size() + 100 + i * 20, piece));
    }
    const auto got = names_per_step(s, st);
    CHECK(got == std::vector<named_step>{{3, {"telegram.org"}}});
    CHECK(st.status == flow_status::gave_up);
    CHECK(st.reason == give_up_reason::too_scattered);
    CHECK(st.final());
  }
  SUBCASE("after the CONNECT head the flow is named, and not final until the tunnel is read") {
    fl::buffer_pool pool(2, 4096);
    fl::classifier cls(pool);
    fl::flow_state st;
    for (const auto& s : c.handshake() + steps{c.data(0, connect_e)}) {
      (void)cls.on_packet(st, pk::parse_frame(s.frame), s.frame, s.dir);
    }
    CHECK(st.status == flow_status::named);
    CHECK_FALSE(st.final());
    CHECK_FALSE(st.stream.attached());  // the head was read in place; nothing is held
    const auto s = c.data(connect_e.size(), hello_t);
    const auto r = cls.on_packet(st, pk::parse_frame(s.frame), s.frame, s.dir);
    REQUIRE(r.name_count == 1);
    CHECK(r.kind == name_kind::tls_sni);
    CHECK(st.final());
  }
  SUBCASE("a retransmitted CONNECT head after the tunnel opened is not read again") {
    fl::flow_state st;
    const auto got = names_per_step(
        c.handshake() + steps{c.data(0, connect_e), c.data(0, connect_e),
                              c.data(connect_e.size(), hello_t)},
        st);
    CHECK(got == std::vector<named_step>{{3, {"example.org"}}, {5, {"web.telegram.org"}}});
  }
}

TEST_CASE("classifier: TLS is read by content on any port, ECH beside a plain SNI is flagged") {
  for (const std::uint16_t port : {443, 8443, 5222, 80, 53, 12345}) {
    CAPTURE(port);
    tcp_conv c;
    c.sport = port;
    check_case(named_at("ClientHello on port " + std::to_string(port),
                        c.handshake() + steps{c.data(0, hello_stream)}, name_kind::tls_sni, sni, 3));
  }
  tcp_conv c;
  fl::buffer_pool pool(2, 4096);
  fl::classifier cls(pool);
  for (const std::uint16_t ext_type : {std::uint16_t{0xfe0d}, std::uint16_t{0xffce}}) {
    CAPTURE(ext_type);
    fl::flow_state st;
    const buf hello = tls_records(
        tls_client_hello({tls_ext{0, sni_data({"telegram.org"})}, tls_ext{ext_type, buf(40, 0x5a)}}), 1);
    fl::classify_result last;
    for (const auto& s : c.handshake() + steps{c.data(0, hello)}) {
      last = cls.on_packet(st, pk::parse_frame(s.frame), s.frame, s.dir);
    }
    REQUIRE(last.name_count == 1);
    CHECK(last.names[0] == "telegram.org");
    CHECK(last.has_ech == (ext_type == 0xfe0d));
    CHECK(last.has_esni == (ext_type == 0xffce));
  }
}

TEST_CASE("classifier: DNS over TCP with the length prefix split") {
  tcp_conv c;
  c.sport = 53;
  const buf stream = dns_tcp(dns_message({"t.me", "telegram.org"}));
  check_case({"query in one segment",
              c.handshake() + steps{c.data(0, stream)},
              flow_status::named,
              name_kind::dns_qname,
              {"t.me", "telegram.org"},
              3,
              3});
  for (std::size_t k = 1; k < stream.size(); ++k) {
    check_case({"cut at " + std::to_string(k),
                c.handshake() + c.segments(stream, {k}),
                flow_status::named,
                name_kind::dns_qname,
                {"t.me", "telegram.org"},
                4,
                4});
  }
  check_case({"length prefix in three pieces",
              c.handshake() + c.segments(stream, {1, 2}),
              flow_status::named,
              name_kind::dns_qname,
              {"t.me", "telegram.org"},
              5,
              5});
}

// ---- UDP
// ------------------------------------------------------------------------------------------

TEST_CASE("classifier: UDP flows") {
  const auto cli = v4(10, 0, 0, 1);
  const auto res = v4(10, 0, 0, 53);
  const auto mcast = v4(224, 0, 0, 251);
  const auto ssdp_group = v4(239, 255, 255, 250);
  const auto srv = v4(198, 51, 100, 7);
  const buf msearch = text(
      "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n"
      "MX: 1\r\nST: ssdp:all\r\n\r\n");
  buf noise;
  for (int i = 0; i < 64; ++i) noise.push_back(static_cast<std::uint8_t>(i * 37 + 11));
  noise[0] = 0x17;  // not a long header, not a gQUIC public flag we read
  steps random_udp;
  for (int i = 0; i < 6; ++i) random_udp.push_back(udp_step(cli, srv, 50000, 40000, noise));

  const std::vector<flow_case> cases = {
      {"DNS query with several questions",
       steps{
           udp_step(cli, res, 50000, 53, dns_message({"t.me", "web.telegram.org", "example.com"}))},
       flow_status::named,
       name_kind::dns_qname,
       {"t.me", "web.telegram.org", "example.com"},
       0,
       0},
      {"DNS response alone names nothing",
       steps{udp_step(res, cli, 53, 50000, dns_message({"t.me"}, true), direction::reverse)},
       flow_status::pending},
      {"query, then its response",
       steps{udp_step(cli, res, 50000, 53, dns_message({"t.me"})),
             udp_step(res, cli, 53, 50000, dns_message({"t.me"}, true), direction::reverse)},
       flow_status::named,
       name_kind::dns_qname,
       {"t.me"},
       0,
       0},
      {"mDNS on 5353",
       steps{udp_step(cli, mcast, 5353, 5353, dns_message({"_googlecast._tcp.local"}, false, 0))},
       flow_status::named,
       name_kind::dns_qname,
       {"_googlecast._tcp.local"},
       0,
       0},
      {"SSDP M-SEARCH",
       steps{udp_step(cli, ssdp_group, 50000, 1900, msearch)},
       flow_status::named,
       name_kind::http_host,
       {"239.255.255.250"},  // the port is not part of the name,
       0,
       0},
      decided("random UDP: unrecognized after max_idle_payloads", random_udp,
              flow_status::unrecognized, 5),
      {"random UDP: five datagrams are not enough",
       steps(random_udp.begin(), random_udp.begin() + 5), flow_status::pending},
  };
  for (const auto& k : cases) check_case(k);
}

// A DNS-SD browse as Apple devices send it: many PTR questions in one message, the QU
// (unicast-response) bit in the class, names compressed against the first question.
buf dns_sd_query(std::size_t services) {
  buf b;
  put16(b, 0);       // mDNS queries carry id 0
  put16(b, 0x0000);  // standard query
  put16(b, services + 1);
  put16(b, 0);
  put16(b, 0);
  put16(b, 0);
  const std::size_t first = b.size();  // "_tcp.local" of the first question is at first + 9
  put_dns_name(b, "_airplay._tcp.local");
  put16(b, 12);      // PTR
  put16(b, 0x8001);  // QU, IN
  for (std::size_t i = 0; i < services; ++i) {
    const std::string label = "_svc" + std::to_string(i);
    b.push_back(static_cast<std::uint8_t>(label.size()));
    append(b, label);
    put16(b, 0xc000 | (first + 9));  // -> "_tcp.local"
    put16(b, 12);
    put16(b, 0x0001);
  }
  return b;
}

TEST_CASE("classifier: mDNS / DNS-SD queries name the flow like DNS") {
  const auto cli = v4(192, 168, 1, 75);
  const auto mcast = v4(224, 0, 0, 251);
  const auto cli6 = v6(0xfe80, 0x75);
  const auto mcast6 = v6(0xff02, 0xfb);
  std::vector<std::string> want{"_airplay._tcp.local"};
  for (int i = 0; i < 11; ++i) want.push_back("_svc" + std::to_string(i) + "._tcp.local");
  const buf query = dns_sd_query(11);
  const std::vector<flow_case> cases = {
      {"twelve compressed PTR questions with the QU bit", steps{udp_step(cli, mcast, 5353, 5353, query)},
       flow_status::named, name_kind::dns_qname, want, 0, 0},
      {"over IPv6 to ff02::fb", steps{udp_step(cli6, mcast6, 5353, 5353, query)}, flow_status::named,
       name_kind::dns_qname, want, 0, 0},
      {"one-shot query from an ephemeral port", steps{udp_step(cli, mcast, 49152, 5353, query)},
       flow_status::named, name_kind::dns_qname, want, 0, 0},
      {"instance name with a space", steps{udp_step(cli, mcast, 5353, 5353,
                                                     dns_message({"Living Room._airplay._tcp.local"}))},
       flow_status::named, name_kind::dns_qname, {"Living Room._airplay._tcp.local"}, 0, 0},
  };
  for (const auto& k : cases) check_case(k);
}

TEST_CASE("classifier: DNS and SSDP flows stay open for more names") {
  fl::buffer_pool pool(1, 4096);
  auto cls = std::make_unique<fl::classifier>(pool);
  const auto cli = v4(10, 0, 0, 1);
  const auto res = v4(10, 0, 0, 53);
  fl::flow_state st;
  const steps frames = {
      udp_step(cli, res, 50000, 53, dns_message({"t.me"})),
      udp_step(res, cli, 53, 50000, dns_message({"t.me"}, true), direction::reverse),
      udp_step(cli, res, 50000, 53, dns_message({"telegram.org", "telesco.pe"}, false, 7)),
  };
  std::vector<std::vector<std::string>> seen;
  for (const auto& s : frames) {
    const auto info = pk::parse_frame(s.frame);
    const auto r = cls->on_packet(st, info, s.frame, s.dir);
    std::vector<std::string> names;
    for (std::size_t i = 0; i < r.name_count; ++i) names.emplace_back(r.names[i]);
    seen.push_back(names);
    CHECK(r.kind == (r.name_count ? name_kind::dns_qname : name_kind::none));
  }
  CHECK(seen ==
        std::vector<std::vector<std::string>>{{"t.me"}, {}, {"telegram.org", "telesco.pe"}});
  CHECK(st.status == flow_status::named);
  CHECK(st.protocol == flow_protocol::dns_udp);
  CHECK_FALSE(st.final());

  fl::flow_state ssdp;
  const buf notify =
      text("NOTIFY * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nNT: upnp:rootdevice\r\n\r\n");
  const auto o = run_steps(*cls, ssdp,
                           {udp_step(cli, v4(239, 255, 255, 250), 1900, 1900, notify),
                            udp_step(cli, v4(239, 255, 255, 250), 1900, 1900, notify)});
  CHECK(o.naming_steps == 2);
  CHECK(ssdp.protocol == flow_protocol::ssdp);
  CHECK(ssdp.status == flow_status::named);
  CHECK_FALSE(ssdp.final());
  CHECK(pool.available() == 1);
}

TEST_CASE("flow_state::final") {
  struct row {
    flow_status status;
    flow_protocol protocol;
    bool final;
  };
  const row rows[] = {
      {flow_status::pending, flow_protocol::tls, false},
      {flow_status::pending, flow_protocol::unknown, false},
      {flow_status::named, flow_protocol::tls, true},
      {flow_status::named, flow_protocol::quic, true},
      {flow_status::named, flow_protocol::http, true},
      {flow_status::named, flow_protocol::dns_tcp, true},
      {flow_status::named, flow_protocol::dns_udp, false},
      {flow_status::named, flow_protocol::ssdp, false},
      {flow_status::nameless, flow_protocol::dns_udp, true},
      {flow_status::unrecognized, flow_protocol::unknown, true},
      {flow_status::gave_up, flow_protocol::ssdp, true},
  };
  for (const auto& r : rows) {
    CAPTURE(str(r.status));
    CAPTURE(std::string(fl::to_string(r.protocol)));
    fl::flow_state st;
    st.status = r.status;
    st.protocol = r.protocol;
    CHECK(st.final() == r.final);
  }
}

TEST_CASE("classifier: names of statuses, kinds and reasons") {
  CHECK(str(flow_status::gave_up) == "gave_up");
  CHECK(str(name_kind::quic_sni) == "quic_sni");
  CHECK(str(give_up_reason::too_scattered) == "too_scattered");
  CHECK(std::string(fl::to_string(flow_protocol::ssdp)) == "ssdp");
  CHECK(std::string(fl::to_string(static_cast<flow_status>(200))) == "invalid");
}

// ---- QUIC
// -----------------------------------------------------------------------------------------

namespace {

namespace qt = sluice::packet::quic_test;

// A client Initial carrying CRYPTO bytes [from, to) of `hello`, padded to a 1200-byte datagram.
buf initial_with(pk::quic_initial_decryptor& d, const buf& dcid, std::uint8_t pn, const buf& hello,
                 std::size_t from, std::size_t to) {
  const std::string_view part(reinterpret_cast<const char*>(hello.data()) + from, to - from);
  buf payload = qt::crypto_frame(from, part);
  const std::size_t overhead = 1 + 4 + 1 + dcid.size() + 1 + 1 + 2 + 1 + 16;
  if (payload.size() + overhead < 1200) payload.resize(1200 - overhead, 0);  // PADDING frames
  return qt::seal_long(d, 1, 0, dcid, pn, payload);
}

}  // namespace

TEST_CASE("classifier: QUIC Initials") {
  const auto cli = v4(10, 0, 0, 1);
  const auto srv = v4(142, 250, 74, 4);
  const buf rfc = from_hex(sluice::packet::quic_vectors::rfc9001_a2);
  pk::quic_initial_decryptor d;
  const buf dcid = from_hex("0011223344556677");
  const buf hello = tls_client_hello_for("quic.example.net");
  const std::size_t cut = hello.size() / 2;
  const buf first = initial_with(d, dcid, 0, hello, 0, cut);
  const buf second = initial_with(d, dcid, 1, hello, cut, hello.size());
  const buf whole = initial_with(d, dcid, 0, hello, 0, hello.size());
  CHECK(first.size() == 1200);
  auto q = [&](const buf& datagram) { return udp_step(cli, srv, 50000, 443, datagram); };
  // A long-header packet that does not open with the client's keys, as a server's Initial:
  // skipped, not evidence against QUIC.
  buf server_initial = qt::seal_long(d, 1, 0, from_hex("99"), 0, buf(60, 0));
  server_initial.back() ^= 1;
  const step server_pkt = udp_step(srv, cli, 443, 50000, server_initial, direction::reverse);
  const buf big = tls_client_hello_for("quic.example.net", 400);
  const steps big_three = {q(initial_with(d, dcid, 0, big, 0, 200)),
                           q(initial_with(d, dcid, 1, big, 200, 400)),
                           q(initial_with(d, dcid, 2, big, 400, big.size()))};
  flow_case over_cap = decided("hello larger than the buffer", big_three, flow_status::gave_up, 1,
                               give_up_reason::over_cap);
  over_cap.buffer_size = 256;
  flow_case no_pool =
      decided("hello over two Initials, no buffer to be had", steps{q(first), q(second)},
              flow_status::gave_up, 0, give_up_reason::pool_empty);
  no_pool.pool_buffers = 0;
  flow_case no_pool_whole = named_at("hello in one Initial needs no buffer", steps{q(whole)},
                                     name_kind::quic_sni, "quic.example.net", 0);
  no_pool_whole.pool_buffers = 0;

  const std::vector<flow_case> cases = {
      named_at("RFC 9001 A.2 client Initial", steps{q(rfc)}, name_kind::quic_sni, "example.com", 0),
      named_at("hello in one sealed Initial", steps{q(whole)}, name_kind::quic_sni,
               "quic.example.net", 0),
      named_at("hello over two Initials in order", steps{q(first), q(second)}, name_kind::quic_sni,
               "quic.example.net", 1),
      named_at("hello over two Initials reversed", steps{q(second), q(first)}, name_kind::quic_sni,
               "quic.example.net", 1),
      named_at("first Initial repeated, server packet between",
               steps{q(first), q(first), server_pkt, q(second)}, name_kind::quic_sni,
               "quic.example.net", 3),
      named_at("server packets before the client's", steps{server_pkt, server_pkt, q(whole)},
               name_kind::quic_sni, "quic.example.net", 2),
      over_cap,
      no_pool,
      no_pool_whole,
  };
  for (const auto& k : cases) check_case(k);

  // Split at every 7th byte of the hello, both orders.
  for (std::size_t k = 1; k < hello.size(); k += 7) {
    const buf a = initial_with(d, dcid, 0, hello, 0, k);
    const buf b = initial_with(d, dcid, 1, hello, k, hello.size());
    check_case(named_at("two Initials cut at " + std::to_string(k), steps{q(a), q(b)},
                        name_kind::quic_sni, "quic.example.net", 1));
    check_case(named_at("two Initials cut at " + std::to_string(k) + ", reversed",
                        steps{q(b), q(a)}, name_kind::quic_sni, "quic.example.net", 1));
  }
}

// ---- fakes ----------------------------------------------------------------------------------

TEST_CASE("classifier: fake ClientHellos do not decide the flow before the real one") {
  // A DPI-evasion tool sends a ClientHello naming an allowed host that the server will never
  // accept (bad checksum, or a TTL that expires on the way), then the real one.
  const tcp_conv c;
  const buf fake_stream = tls_records(tls_client_hello_for("example.org"), 1);
  struct fake_case {
    const char* description;
    void (*spoil)(buf& frame);
    fl::ignored_packet expected;
  };
  const fake_case cases[] = {
      {"bad TCP checksum", [](buf& f) { f[f.size() - 1] ^= 0x5a; }, fl::ignored_packet::bad_checksum},
      {"TTL below the SYN's", [](buf& f) { f[14 + 8] = 2; }, fl::ignored_packet::low_ttl},
  };
  for (const auto& fc : cases) {
    CAPTURE(std::string(fc.description));
    step fake = c.data(0, fake_stream);
    fc.spoil(fake.frame);
    const steps frames = c.handshake() + steps{fake, c.data(0, hello_stream)};
    fl::buffer_pool pool(2, 4096);
    fl::classifier cls(pool);
    fl::flow_state st;
    std::vector<fl::classify_result> results;
    for (const auto& s : frames) {
      const auto info = pk::parse_frame(s.frame);
      REQUIRE(info.outcome == pk::frame_outcome::ok);
      results.push_back(cls.on_packet(st, info, s.frame, s.dir));
    }
    REQUIRE(results.size() == 5);
    CHECK(results[3].ignored == fc.expected);
    CHECK(results[3].name_count == 0);
    CHECK(results[3].status == flow_status::pending);
    REQUIRE(results[4].name_count == 1);
    CHECK(results[4].names[0] == sni);
    CHECK(results[4].ignored == fl::ignored_packet::none);
    CHECK(st.status == flow_status::named);
  }

  SUBCASE("with the filter off (endpoint captures), a bad checksum is read") {
    step fake = c.data(0, fake_stream);
    fake.frame[fake.frame.size() - 1] ^= 0x5a;
    fl::buffer_pool pool(2, 4096);
    fl::classifier::config cfg;
    cfg.verify_checksums = false;
    fl::classifier cls(pool, cfg);
    fl::flow_state st;
    for (const auto& s : c.handshake() + steps{fake}) {
      const auto info = pk::parse_frame(s.frame);
      const auto r = cls.on_packet(st, info, s.frame, s.dir);
      CHECK(r.ignored == fl::ignored_packet::none);
    }
    CHECK(st.status == flow_status::named);
  }
  SUBCASE("a checksum the NIC already verified is not recomputed") {
    step fake = c.data(0, fake_stream);
    fake.frame[fake.frame.size() - 1] ^= 0x5a;  // a lie the caller vouches for: it is believed
    fl::buffer_pool pool(2, 4096);
    fl::classifier cls(pool);
    fl::flow_state st;
    for (const auto& s : c.handshake() + steps{fake}) {
      const auto info = pk::parse_frame(s.frame);
      (void)cls.on_packet(st, info, s.frame, s.dir, /*checksum_verified=*/true);
    }
    CHECK(st.status == flow_status::named);
  }
}

// ---- QUIC: more versions, version negotiation, changing DCIDs ---------------------------------

namespace {

constexpr std::uint32_t q050 = 0x51303530;
constexpr std::uint32_t t050 = 0x54303530;
constexpr std::uint32_t t051 = 0x54303531;

// A client Initial of `version` carrying CRYPTO bytes [from, to) of `msg` under `dcid`, padded to
// a 1200-byte datagram (Google versions get Google QUIC frames).
buf initial_of(pk::quic_initial_decryptor& d, std::uint32_t version, const buf& dcid,
               std::uint8_t pn, const buf& msg, std::size_t from, std::size_t to) {
  const std::string_view part(reinterpret_cast<const char*>(msg.data()) + from, to - from);
  const bool gquic = version == q050 || version == t050 || version == t051;
  buf payload = gquic ? qt::gquic_crypto_frame(from, part) : qt::crypto_frame(from, part);
  const std::size_t overhead = 1 + 4 + 1 + dcid.size() + 1 + 1 + 2 + 1 + 16;
  if (payload.size() + overhead < 1200) payload.resize(1200 - overhead, 0);  // PADDING
  return qt::seal_initial(d, version, dcid, pn, payload);
}

// A QUIC-crypto CHLO message (what Q050 carries in CRYPTO frames).
buf chlo_message(const std::string& sni, std::size_t pad) {
  const std::string values[] = {std::string(pad, '-'), sni, "Q050"};
  const char* tags[] = {"PAD\0", "SNI\0", "VER\0"};
  const std::size_t n = sni.empty() ? 1 : 3;
  buf m{'C', 'H', 'L', 'O', static_cast<std::uint8_t>(n), 0, 0, 0};
  std::uint32_t end = 0;
  for (std::size_t i = 0; i < n; ++i) {
    m.insert(m.end(), tags[i], tags[i] + 4);
    end += static_cast<std::uint32_t>(values[i].size());
    for (int b = 0; b < 4; ++b) m.push_back(static_cast<std::uint8_t>(end >> (8 * b)));
  }
  for (std::size_t i = 0; i < n; ++i) m.insert(m.end(), values[i].begin(), values[i].end());
  return m;
}

// `datagram` with its version field replaced (no longer decryptable).
buf with_version(buf datagram, std::uint32_t version) {
  for (int i = 0; i < 4; ++i) datagram[1 + i] = static_cast<std::uint8_t>(version >> (24 - 8 * i));
  return datagram;
}

}  // namespace

TEST_CASE("classifier: QUIC drafts 23-26, mvfst and Google versions are named") {
  const auto cli = v4(10, 0, 0, 1);
  const auto srv = v4(157, 240, 1, 35);
  pk::quic_initial_decryptor d;
  const buf dcid = from_hex("c0c1c2c3c4c5c6c7");
  auto q = [&](const buf& datagram) { return udp_step(cli, srv, 50000, 443, datagram); };
  const buf hello = tls_client_hello_for("edge-chat.facebook.com");
  const std::size_t cut = hello.size() / 2;
  const std::uint32_t tls_versions[] = {0xff000016, 0xff000017, 0xff000018, 0xff000019,
                                        0xff00001a, 0xfaceb001, 0xfaceb002, 0xfaceb003,
                                        0xfaceb00e, 0xfaceb010, 0xfaceb011, 0xfaceb012,
                                        0xfaceb013, t050,       t051};
  for (const std::uint32_t v : tls_versions) {
    const buf a = initial_of(d, v, dcid, 0, hello, 0, cut);
    const buf b = initial_of(d, v, dcid, 1, hello, cut, hello.size());
    const std::string what = "version " + to_hex(buf{static_cast<std::uint8_t>(v >> 24),
                                                     static_cast<std::uint8_t>(v >> 16),
                                                     static_cast<std::uint8_t>(v >> 8),
                                                     static_cast<std::uint8_t>(v)});
    check_case(named_at(what + ", hello over two Initials", steps{q(a), q(b)}, name_kind::quic_sni,
                        "edge-chat.facebook.com", 1));
    check_case(named_at(what + ", reversed", steps{q(b), q(a)}, name_kind::quic_sni,
                        "edge-chat.facebook.com", 1));
  }

  // Q050: the CRYPTO stream is a QUIC-crypto CHLO; its SNI tag names the flow like Q046's.
  const buf chlo = chlo_message("www.youtube.com", 600);
  const std::size_t half = chlo.size() / 2;
  const buf c_whole = initial_of(d, q050, dcid, 1, chlo, 0, chlo.size());
  const buf c_a = initial_of(d, q050, dcid, 1, chlo, 0, half);
  const buf c_b = initial_of(d, q050, dcid, 2, chlo, half, chlo.size());
  const buf no_sni = chlo_message("", 40);
  const buf big = chlo_message("www.youtube.com", 1500);
  flow_case chlo_over_cap =
      decided("Q050 CHLO larger than the buffer",
              steps{q(initial_of(d, q050, dcid, 1, big, 0, 900)),
                    q(initial_of(d, q050, dcid, 2, big, 900, big.size()))},
              flow_status::gave_up, 0, give_up_reason::over_cap);
  chlo_over_cap.buffer_size = 512;

  // Hostile and damaged variants.
  const buf t051_garbage = qt::seal_initial(d, t051, dcid, 0, from_hex("9c3e77d1a04f1b2c0d0e0f"));
  pk::quic_initial_keys v1_keys;
  REQUIRE(d.derive_client_keys(1, dcid, v1_keys));
  const buf whole_t051 = initial_of(d, t051, dcid, 1, hello, 0, hello.size());
  buf payload = qt::gquic_crypto_frame(0, std::string_view(reinterpret_cast<const char*>(
                                                               hello.data()), hello.size()));
  payload.resize(1100, 0);
  const buf t051_wrong_salt = qt::seal_long_with(v1_keys, t051, 0, dcid, 0, payload);
  const buf t051_cut = slice(whole_t051, 0, 700);
  const buf far_offset =
      qt::seal_initial(d, t051, dcid, 0,
                       cat({from_hex("08" "c000010000000000" "05"), text("hello")}));
  const buf q050_tls = initial_of(d, q050, dcid, 1, hello, 0, hello.size());

  const std::vector<flow_case> cases = {
      named_at("Q050 CHLO in one Initial", steps{q(c_whole)}, name_kind::gquic_sni,
               "www.youtube.com", 0),
      named_at("Q050 CHLO over two Initials", steps{q(c_a), q(c_b)}, name_kind::gquic_sni,
               "www.youtube.com", 1),
      named_at("Q050 CHLO over two Initials, reversed", steps{q(c_b), q(c_a)},
               name_kind::gquic_sni, "www.youtube.com", 1),
      decided("Q050 CHLO without SNI",
              steps{q(initial_of(d, q050, dcid, 1, no_sni, 0, no_sni.size()))},
              flow_status::nameless, 0),
      decided("Q050 CRYPTO carrying a TLS ClientHello", steps{q(q050_tls)}, flow_status::gave_up,
              0, give_up_reason::malformed),
      chlo_over_cap,
      named_at("T051 Initial with garbage frames, then the real one",
               steps{q(t051_garbage), q(whole_t051)}, name_kind::quic_sni,
               "edge-chat.facebook.com", 1),
      named_at("T051 Initial with a wrong salt, then the real one",
               steps{q(t051_wrong_salt), q(whole_t051)}, name_kind::quic_sni,
               "edge-chat.facebook.com", 1),
      named_at("T051 Initial cut short, then the real one", steps{q(t051_cut), q(whole_t051)},
               name_kind::quic_sni, "edge-chat.facebook.com", 1),
      named_at("CRYPTO offset past the cap, then the hello", steps{q(far_offset), q(whole_t051)},
               name_kind::quic_sni, "edge-chat.facebook.com", 1),
      decided("T051 garbage only: unrecognized after max_idle_payloads",
              steps(6, q(t051_garbage)), flow_status::unrecognized, 5),
  };
  for (const auto& k : cases) check_case(k);
}

TEST_CASE("classifier: a client that forces version negotiation is read at its real Initial") {
  const auto cli = v4(10, 0, 0, 1);
  const auto srv = v4(149, 154, 167, 99);
  pk::quic_initial_decryptor d;
  const buf dcid = from_hex("1011121314151617");
  const buf hello = tls_client_hello_for("web.telegram.org");
  auto q = [&](const buf& datagram) { return udp_step(cli, srv, 50000, 443, datagram); };
  const buf real = initial_of(d, 1, dcid, 0, hello, 0, hello.size());
  const buf greased = with_version(initial_of(d, 1, dcid, 0, hello, 0, hello.size()), 0x3a4a5a6a);
  const buf unknown = with_version(greased, 0xff000040);
  // The server's Version Negotiation (version 0) lists what it speaks; its first-byte bits
  // other than the form bit are random, so both shapes occur.
  const buf vn = from_hex("c000000000" "08" "a0a1a2a3a4a5a6a7" "08" "1011121314151617"
                          "00000001" "6b3343cf");
  buf vn_no_fixed_bit = vn;
  vn_no_fixed_bit[0] = 0x8d;
  const step vn_step = udp_step(srv, cli, 443, 50000, vn, direction::reverse);
  const step vn2_step = udp_step(srv, cli, 443, 50000, vn_no_fixed_bit, direction::reverse);

  steps retries;
  for (int i = 0; i < 8; ++i) retries.push_back(q(greased));  // more than max_idle_payloads
  steps flood;
  for (int i = 0; i < 16; ++i) flood.push_back(i % 2 ? vn2_step : q(unknown));

  const std::vector<flow_case> cases = {
      named_at("greased Initial, server VN, v1 Initial", steps{q(greased), vn_step, q(real)},
               name_kind::quic_sni, "web.telegram.org", 2),
      named_at("greased Initial, VN with the fixed bit clear, v1 Initial",
               steps{q(greased), vn2_step, q(real)}, name_kind::quic_sni, "web.telegram.org", 2),
      named_at("unknown version first", steps{q(unknown), vn_step, q(real)}, name_kind::quic_sni,
               "web.telegram.org", 2),
      named_at("eight greased retransmissions, VN, v1 Initial",
               retries + steps{vn_step, q(real)}, name_kind::quic_sni, "web.telegram.org", 9),
      decided("a flood of unreadable versions ends unrecognized", flood,
              flow_status::unrecognized, 15),
      {"fifteen of them are not enough", steps(flood.begin(), flood.begin() + 15),
       flow_status::pending},
  };
  for (const auto& k : cases) check_case(k);
}

TEST_CASE("classifier: a ClientHello across Initials with different DCIDs") {
  const auto cli = v4(10, 0, 0, 1);
  const auto srv = v4(149, 154, 167, 99);
  pk::quic_initial_decryptor d;
  const buf a = from_hex("a0a1a2a3a4a5a6a7");
  const buf b = from_hex("b0b1b2b3b4b5b6b7b8b9");  // the server's choice (Retry SCID), longer
  auto q = [&](const buf& datagram) { return udp_step(cli, srv, 50000, 443, datagram); };
  const buf hello = tls_client_hello_for("web.telegram.org");
  const std::size_t cut = hello.size() / 2;
  const buf a0 = initial_of(d, 1, a, 0, hello, 0, cut);
  const buf a1 = initial_of(d, 1, a, 1, hello, cut, hello.size());
  const buf b0 = initial_of(d, 1, b, 2, hello, 0, cut);
  const buf b1 = initial_of(d, 1, b, 3, hello, cut, hello.size());
  // A client that restarts after a Retry with a new ClientHello (new random and key share;
  // here also a new length), from offset 0, under the new DCID.
  const buf old_hello = tls_client_hello_for("old.example.org", 60);
  const std::size_t old_cut = old_hello.size() / 2;
  const buf old0 = initial_of(d, 1, a, 0, old_hello, 0, old_cut);
  const buf old1 = initial_of(d, 1, a, 1, old_hello, old_cut, old_hello.size());
  const std::size_t new_cut = hello.size() / 3;
  const buf new0 = initial_of(d, 1, b, 2, hello, 0, new_cut);
  const buf new1 = initial_of(d, 1, b, 3, hello, new_cut, hello.size());
  // A decoy coalesced behind the real first packet, under another DCID: a server ignores it.
  const buf decoy = initial_of(d, 1, b, 0, tls_client_hello_for("allowed.example"), 0,
                               tls_client_hello_for("allowed.example").size());

  const std::vector<flow_case> cases = {
      named_at("(a) first half under A, second half under B", steps{q(a0), q(b1)},
               name_kind::quic_sni, "web.telegram.org", 1),
      named_at("(a) second half under B first", steps{q(b1), q(a0)}, name_kind::quic_sni,
               "web.telegram.org", 1),
      named_at("after a Retry the same bytes again under B", steps{q(a0), q(b0), q(b1)},
               name_kind::quic_sni, "web.telegram.org", 2),
      named_at("duplicate of A's first packet after the switch", steps{q(a0), q(b1), q(a0)},
               name_kind::quic_sni, "web.telegram.org", 1),
      named_at("(b) attempt under A lost after its first packet, new hello under B",
               steps{q(old0), q(new0), q(new1)}, name_kind::quic_sni, "web.telegram.org", 2),
      named_at("(b) the old attempt's tail arrives late", steps{q(old0), q(new0), q(old1), q(new1)},
               name_kind::quic_sni, "web.telegram.org", 3),
      named_at("(b) the new attempt's second packet first",
               steps{q(old0), q(new1), q(new0)}, name_kind::quic_sni, "web.telegram.org", 2),
      named_at("(c) decoy under B coalesced behind A's first half",
               steps{q(cat({a0, decoy})), q(a1)}, name_kind::quic_sni, "web.telegram.org", 1),
      named_at("(c) both halves under A with a decoy between", steps{q(cat({a0, decoy, a1}))},
               name_kind::quic_sni, "web.telegram.org", 0),
  };
  for (const auto& k : cases) check_case(k);
}

TEST_CASE("classifier: DNS queries inside VXLAN and GTP-U name the inner flow") {
  const auto cli = v4(10, 1, 0, 7);
  const auto res = v4(198, 51, 100, 53);
  const auto vtep_a = v4(192, 0, 2, 1);
  const auto vtep_b = v4(192, 0, 2, 2);
  const buf query = ip(cli, res, 17, udp(50000, 53, dns_message({"web.telegram.org"})));
  const buf vx = eth_ip(ip(vtep_a, vtep_b, 17, udp(49152, 4789, vxlan(77, eth_ip(query)))));
  const buf gt = eth_ip(ip(vtep_a, vtep_b, 17, udp(2152, 2152, gtpu(0x1001, query))));
  for (const buf* f : {&vx, &gt}) {
    const auto info = pk::parse_frame(*f);
    REQUIRE(info.outcome == pk::frame_outcome::ok);
    CHECK(info.dst == res);  // the inner flow is the one classified
    fl::buffer_pool pool(1, 4096);
    fl::classifier cls(pool);
    fl::flow_state st;
    const auto r = cls.on_packet(st, info, *f, direction::forward);
    REQUIRE(r.name_count == 1);
    CHECK(r.kind == name_kind::dns_qname);
    CHECK(r.names[0] == "web.telegram.org");
  }
}
