// Chained mbufs (scattered rx, frames larger than one mbuf) through the worker: the whole frame
// is judged, not its first segment, and what goes on is the chain as received, byte for byte.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/packet/frame.hpp"
#include "dataplane/port/dispatch.hpp"
#include "tests/unit/engine_worker/harness.hpp"
#include "tests/unit/packet/quic_test_util.hpp"

using namespace sluice;
using namespace sluice::test;
using engine::engine_event;
using match::action;

namespace {

constexpr std::string_view blocked_name = "telegram.org";
constexpr std::string_view allowed_name = "example.org";

std::size_t find(const buf& frame, std::string_view what) {
  const auto it = std::search(frame.begin(), frame.end(), what.begin(), what.end());
  REQUIRE(it != frame.end());
  return static_cast<std::size_t>(it - frame.begin());
}

// Client data of `c` carrying a ClientHello whose SNI name starts 4 bytes before `split` (a
// padding extension in front of the SNI puts it there), so a cut at `split` cuts the name.
buf hello_with_name_across(tcp_conv& c, std::string_view sni, std::size_t split) {
  auto hello = [&](std::size_t pad) {
    return tls_records(tls_client_hello({filler_ext(21, pad), {0, sni_data({sni})},
                                         {16, alpn_data({"h2"})}, filler_ext(51, 38)}),
                       1);
  };
  tcp_conv probe = c;
  const std::size_t at = find(probe.data(hello(16)), sni);
  REQUIRE(split >= at + 4 - 16);
  buf f = c.data(hello(16 + split - 4 - at));
  REQUIRE(find(f, sni) + 4 == split);
  return f;
}

void handshake(harness& h, tcp_conv& c) {
  h.from_client({c.syn()});
  h.from_internet({c.syn_ack()});
  h.from_client({c.ack()});
  CHECK(drain(h.inet()).size() == 2);
  CHECK(drain(h.sub()).size() == 1);
}

std::uint64_t parsed_ok(const harness& h) {
  return h.w->counters().parse[static_cast<std::size_t>(packet::frame_outcome::ok)];
}

}  // namespace

TEST_CASE("chained mbufs: a ClientHello spread over segments is judged whole") {
  struct row {
    const char* desc;
    bool v6;
    std::string_view sni;
    std::size_t name_split;          // a cut inside the SNI name at this offset
    std::vector<std::size_t> cuts;   // the other cuts (increasing, with name_split in order)
  };
  const row rows[] = {
      {"512 / 600 / rest, the name across the second cut", false, blocked_name, 1112, {512}},
      {"a cut inside the IPv4 header", false, blocked_name, 700, {20}},
      {"a cut inside the TCP header", false, blocked_name, 700, {40}},
      {"a cut right after the TCP header, one in the record header", false, blocked_name, 900,
       {54, 57}},
      {"a cut inside the IPv6 header", true, blocked_name, 700, {30}},
      {"jumbo: 5 segments, the name past the first 4 KB", false, blocked_name, 4500,
       {1000, 2000, 3000, 4000}},
      {"allowed name, 512 / 600 / rest", false, allowed_name, 1112, {512}},
      {"allowed name, a cut inside the IPv4 header", false, allowed_name, 700, {20}},
      {"allowed name over IPv6, jumbo", true, allowed_name, 4500, {30, 2000, 4000}},
  };
  for (const row& r : rows) {
    CAPTURE(r.desc);
    harness h;
    h.set_policy(policy_of({rule("tg", action::reset, {}, {std::string(blocked_name)})}));
    tcp_conv c;
    c.server = other_ip();  // the name decides, not the address
    if (r.v6) {
      c.client = v6(0x2001, 1);
      c.server = v6(0x2001, 2);
    }
    handshake(h, c);
    const buf hello = hello_with_name_across(c, r.sni, r.name_split);
    std::vector<std::size_t> cuts = r.cuts;
    cuts.push_back(r.name_split);
    std::sort(cuts.begin(), cuts.end());
    h.send_chained(hello, cuts, h.sub().id);
    const auto to_inet = drain(h.inet());
    const auto to_sub = drain(h.sub());
    CHECK(h.count(engine_event::multiseg_gathered) == 1);
    CHECK(h.count(engine_event::multiseg_too_long) == 0);
    CHECK(parsed_ok(h) == 4);  // the handshake's three packets and the chain
    if (r.sni == blocked_name) {
      CHECK(h.count(engine_event::dropped_by_rule) == 1);
      CHECK(h.count(engine_event::resets_sent) == 2);
      REQUIRE(to_inet.size() == 1);
      REQUIRE(to_sub.size() == 1);
      const auto rst = packet::parse_frame(to_inet[0]);
      CHECK((rst.tcp_flags & packet::tcp_rst) != 0);
      CHECK(rst.dst == c.server);
      CHECK(h.rule_counter(0).flows == 1);
    } else {
      CHECK(to_inet == std::vector<buf>{hello});  // the chain as received, byte for byte
      CHECK(to_sub.empty());
      CHECK(h.count(engine_event::dropped_by_rule) == 0);
      CHECK(h.count(engine_event::policy_unmatched_flows) == 1);  // named, and judged so
    }
    h.check_accounting();
  }
}

TEST_CASE("chained mbufs: the forwarded chain keeps its segments") {
  harness h;
  tcp_conv c;
  handshake(h, c);
  const buf hello = hello_with_name_across(c, allowed_name, 1112);
  rte_mbuf* m = chained(h.env.pool, hello, {512, 1112});
  m->port = h.sub().id;
  h.w->process_burst(&m, 1, h.sub().id);
  h.w->flush();
  void* out = nullptr;
  REQUIRE(rte_ring_dequeue(h.inet().tx, &out) == 0);
  auto* fwd = static_cast<rte_mbuf*>(out);
  CHECK(fwd == m);  // the same mbuf: never rewritten or linearised
  CHECK(fwd->nb_segs == 3);
  CHECK(rte_pktmbuf_pkt_len(fwd) == hello.size());
  rte_pktmbuf_free(fwd);
  h.check_accounting();
}

TEST_CASE("chained mbufs: longer than the gather buffer, forwarded unread and counted") {
  harness h;
  h.w.reset();
  h.cfg.gather_bytes = 1024;
  h.w = std::make_unique<engine::worker>(h.cfg, h.shared);
  h.set_policy(policy_of({rule("tg", action::reset, {}, {std::string(blocked_name)})}));
  tcp_conv c;
  c.server = other_ip();
  handshake(h, c);
  const buf hello = hello_with_name_across(c, blocked_name, 1112);
  h.send_chained(hello, {512, 1112}, h.sub().id);
  CHECK(drain(h.inet()) == std::vector<buf>{hello});  // fail open
  CHECK(h.count(engine_event::multiseg_too_long) == 1);
  CHECK(h.count(engine_event::multiseg_gathered) == 0);
  CHECK(h.count(engine_event::dropped_by_rule) == 0);
  // A chain that fits is still judged (another flow: that one's stream now lacks its start).
  tcp_conv c2 = c;
  c2.cport = 40001;
  c2.cseq = 1000;
  handshake(h, c2);
  const buf small = hello_with_name_across(c2, blocked_name, 600);
  h.send_chained(small, {100, 600}, h.sub().id);
  CHECK(drain(h.inet()).size() == 1);  // the reset, not the hello
  CHECK(h.count(engine_event::multiseg_gathered) == 1);
  CHECK(h.count(engine_event::dropped_by_rule) == 1);
  h.check_accounting();
}

TEST_CASE("chained mbufs: an HTTP request whose Host header is in the last segment") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::drop, {}, {std::string(blocked_name)})}));
  for (std::string_view host : {blocked_name, allowed_name}) {
    CAPTURE(host);
    tcp_conv c;
    c.cport = host == blocked_name ? 41000 : 41001;
    c.sport = 80;
    handshake(h, c);
    const buf get = c.data(http_get(host, "/" + std::string(1400, 'a')));
    REQUIRE(find(get, host) > 1112);
    h.send_chained(get, {512, 1112}, h.sub().id);
    const auto out = drain(h.inet());
    if (host == blocked_name) {
      CHECK(out.empty());
    } else {
      CHECK(out == std::vector<buf>{get});
    }
  }
  CHECK(h.count(engine_event::multiseg_gathered) == 2);
  CHECK(h.count(engine_event::dropped_by_rule) == 1);
  h.check_accounting();
}

TEST_CASE("chained mbufs: a QUIC Initial datagram over three segments") {
  namespace qt = sluice::packet::quic_test;
  harness h;
  h.set_policy(policy_of({rule("tg", action::drop, {}, {std::string(blocked_name)})}));
  packet::quic_initial_decryptor d;
  const buf dcid = from_hex("0011223344556677");
  std::uint16_t cport = 50000;
  for (std::string_view sni : {blocked_name, allowed_name}) {
    CAPTURE(sni);
    const buf hello = tls_client_hello_for(sni);
    const std::string_view crypto(reinterpret_cast<const char*>(hello.data()), hello.size());
    buf payload = qt::crypto_frame(0, crypto);
    payload.resize(1200 - (1 + 4 + 1 + dcid.size() + 1 + 1 + 2 + 1 + 16), 0);  // PADDING
    const buf initial = qt::seal_long(d, 1, 0, dcid, 0, payload);
    REQUIRE(initial.size() == 1200);
    const buf frame = eth_ip(test::ip(client_ip(), other_ip(), 17, udp(cport++, 443, initial)));
    h.send_chained(frame, {300, 900}, h.sub().id);
    const auto out = drain(h.inet());
    if (sni == blocked_name) {
      CHECK(out.empty());
    } else {
      CHECK(out == std::vector<buf>{frame});
    }
  }
  CHECK(h.count(engine_event::multiseg_gathered) == 2);
  CHECK(h.count(engine_event::dropped_by_rule) == 1);
  h.check_accounting();
}

TEST_CASE("chained mbufs: IP fragments that are chains are reassembled from every segment") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::reset, {}, {std::string(blocked_name)})}));
  tcp_conv c;
  c.server = other_ip();
  handshake(h, c);
  const auto frags = fragment(c.data(client_hello(blocked_name)), {0, 64, 128}, 0x4243);
  REQUIRE(frags.size() == 3);
  // The first fragment cut inside its IP header, the second inside its data; one burst.
  rte_mbuf* ms[] = {chained(h.env.pool, frags[0], {20}), chained(h.env.pool, frags[1], {40, 60}),
                    chained(h.env.pool, frags[2], {})};
  for (rte_mbuf* m : ms) m->port = h.sub().id;
  h.w->process_burst(ms, 3, h.sub().id);
  CHECK(h.count(engine_event::fragments_reassembled) == 1);
  h.w->flush();
  CHECK(drain(h.inet()).size() == 1);  // the reset towards the server only
  CHECK(drain(h.sub()).size() == 1);
  CHECK(h.count(engine_event::dropped_by_rule) == 3);
  CHECK(h.count(engine_event::fragments_passed) == 0);
  CHECK(h.count(engine_event::multiseg_gathered) == 2);
  h.check_accounting();
}

TEST_CASE("software dispatch: a chain with a short first segment hashes like the whole frame") {
  harness h;  // the environment's mempool
  tcp_conv v4c;
  tcp_conv v6c;
  v6c.client = v6(0x2001, 1);
  v6c.server = v6(0x2001, 2);
  const buf frames[] = {
      v4c.data(client_hello(blocked_name)),
      v6c.data(client_hello(blocked_name)),
      eth_ip(test::ip(v4(192, 0, 2, 1), v4(192, 0, 2, 2), 17,
                      udp(1234, 4789, vxlan(7, v4c.data(client_hello(blocked_name)))))),
  };
  for (const buf& f : frames) {
    const std::uint32_t flat = port::symmetric_flow_hash(packet::bytes(f));
    CHECK(flat != 0);
    for (std::size_t cut : {std::size_t{8}, std::size_t{20}, std::size_t{30}, std::size_t{60}}) {
      CAPTURE(cut);
      rte_mbuf* m = chained(h.env.pool, f, {cut, cut + 10});
      CHECK(port::symmetric_flow_hash(m) == flat);
      rte_pktmbuf_free(m);
    }
  }
}
