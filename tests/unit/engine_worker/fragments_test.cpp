// IP fragments through the worker: a request split into fragments is reassembled (a copy),
// judged like any packet of its flow, and the original fragments follow the verdict unchanged, in
// arrival order; whatever cannot be reassembled is forwarded unchanged (fail open).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/packet/frame.hpp"
#include "tests/unit/engine_worker/harness.hpp"

using namespace sluice;
using namespace sluice::test;
using engine::engine_event;
using match::action;

namespace {

// One burst, no flush (flush() releases whatever is held).
void burst(harness& h, const std::vector<buf>& frames, std::uint16_t port) {
  std::vector<rte_mbuf*> ms;
  for (const buf& f : frames) {
    rte_mbuf* m = rte_pktmbuf_alloc(h.env.pool);
    REQUIRE(m != nullptr);
    char* d = rte_pktmbuf_append(m, static_cast<std::uint16_t>(f.size()));
    REQUIRE(d != nullptr);
    std::memcpy(d, f.data(), f.size());
    m->port = port;
    ms.push_back(m);
  }
  h.w->process_burst(ms.data(), static_cast<std::uint16_t>(ms.size()), port);
}

bool contains(const std::vector<buf>& v, const buf& f) {
  return std::find(v.begin(), v.end(), f) != v.end();
}

// Opens a TCP flow (handshake), as the worker sees it.
void handshake(harness& h, tcp_conv& c) {
  h.from_client({c.syn()});
  h.from_internet({c.syn_ack()});
  h.from_client({c.ack()});
  CHECK(drain(h.inet()).size() == 2);
  CHECK(drain(h.sub()).size() == 1);
}

}  // namespace

TEST_CASE("IP fragments: a ClientHello split into fragments is judged after reassembly") {
  struct row {
    const char* desc;
    bool v6;
    const char* sni;
    std::vector<std::size_t> cuts;
    std::vector<int> order;  // arrival order of the fragments (datagram order indices)
    bool split_bursts;       // each fragment in its own burst
  };
  const row rows[] = {
      {"v4 blocked, in order", false, "t.me", {0, 64, 128}, {0, 1, 2}, false},
      {"v4 blocked, reversed", false, "t.me", {0, 64, 128}, {2, 1, 0}, false},
      {"v4 blocked, first cut inside TCP header", false, "t.me", {0, 16, 96}, {1, 0, 2}, false},
      {"v4 blocked, one burst each", false, "t.me", {0, 64, 128}, {2, 0, 1}, true},
      {"v4 allowed, in order", false, "example.com", {0, 64, 128}, {0, 1, 2}, false},
      {"v4 allowed, reversed", false, "example.com", {0, 64, 128}, {2, 1, 0}, true},
      {"v6 blocked, reversed", true, "t.me", {0, 64, 128}, {2, 1, 0}, false},
      {"v6 blocked, one burst each", true, "t.me", {0, 8, 136}, {0, 2, 1}, true},
      {"v6 allowed, shuffled", true, "example.com", {0, 64, 128}, {1, 2, 0}, false},
  };
  for (const row& r : rows) {
    CAPTURE(r.desc);
    harness h;
    h.set_policy(policy_of({rule("tg", action::reset, {}, {"t.me"})}));
    tcp_conv c;
    c.server = other_ip();
    if (r.v6) {
      c.client = v6(0x2001, 1);
      c.server = v6(0x2001, 2);
    }
    handshake(h, c);
    const auto frags = fragment(c.data(client_hello(r.sni)), r.cuts, 0x4242);
    REQUIRE(frags.size() == 3);
    std::vector<buf> arrival;
    for (int i : r.order) arrival.push_back(frags[static_cast<std::size_t>(i)]);
    if (r.split_bursts) {
      for (const buf& f : arrival) burst(h, {f}, h.sub().id);
    } else {
      burst(h, arrival, h.sub().id);
    }
    CHECK(h.count(engine_event::fragments_held) == 3);
    CHECK(h.count(engine_event::fragments_reassembled) == 1);
    h.w->flush();
    const auto to_inet = drain(h.inet());
    const auto to_sub = drain(h.sub());
    const bool blocked = std::string(r.sni) == "t.me";
    if (blocked) {
      for (const buf& f : frags) CHECK_FALSE(contains(to_inet, f));
      CHECK(to_inet.size() == 1);  // the reset towards the server
      CHECK(to_sub.size() == 1);   // the reset towards the client
      CHECK(h.count(engine_event::resets_sent) == 2);
      CHECK(h.count(engine_event::dropped_by_rule) == 3);
      for (const buf& rst : to_inet) {
        const auto info = packet::parse_frame(rst);
        CHECK(info.outcome == packet::frame_outcome::ok);
        CHECK((info.tcp_flags & packet::tcp_rst) != 0);
        CHECK(info.dst == c.server);
      }
    } else {
      CHECK(to_inet == arrival);  // byte-identical, arrival order
      CHECK(to_sub.empty());
      CHECK(h.count(engine_event::dropped_by_rule) == 0);
    }
    CHECK(h.count(engine_event::fragments_passed) == 0);
    h.check_accounting();
    CHECK(h.w->counters().packets == 3 + 3);
  }
}

TEST_CASE("IP fragments: what cannot be reassembled is forwarded unchanged") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::reset, {}, {"t.me"})}));
  tcp_conv c;
  c.server = other_ip();
  handshake(h, c);
  const auto frags = fragment(c.data(client_hello("t.me")), {0, 64, 128}, 7);

  SUBCASE("incomplete datagram: released after the timeout") {
    h.w.reset();
    h.cfg.frag_timeout_ms = 1;
    h.w = std::make_unique<engine::worker>(h.cfg, h.shared);
    burst(h, {frags[0], frags[2]}, h.sub().id);
    CHECK(h.count(engine_event::fragments_held) == 2);
    CHECK(h.count(engine_event::fragments_passed) == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const buf other = tcp_conv{}.syn();
    burst(h, {other}, h.sub().id);
    CHECK(h.count(engine_event::fragments_passed) == 2);  // before any flush
    h.w->flush();
    const auto out = drain(h.inet());
    CHECK(out.size() == 3);
    CHECK(contains(out, frags[0]));
    CHECK(contains(out, frags[2]));
    CHECK(contains(out, other));
    CHECK(h.count(engine_event::fragments_reassembled) == 0);
    CHECK(h.w->counters().packets == 3);
  }
  SUBCASE("incomplete datagram: flush releases it") {
    h.from_client({frags[1], frags[0]});
    CHECK(drain(h.inet()) == std::vector<buf>{frags[1], frags[0]});
    CHECK(h.count(engine_event::fragments_passed) == 2);
  }
  SUBCASE("overlap with conflicting bytes: fail open") {
    buf fake = frags[1];
    fake[fake.size() - 1] ^= 0xff;  // same offset, other bytes
    h.from_client({frags[0], fake, frags[1], frags[2]});
    CHECK(drain(h.inet()) == std::vector<buf>{frags[0], fake, frags[1], frags[2]});
    CHECK(h.count(engine_event::fragments_passed) == 4);
    CHECK(h.count(engine_event::dropped_by_rule) == 0);
  }
  SUBCASE("more than 16 fragments: fail open") {
    const buf hello_frame = c.data(client_hello("t.me"));
    std::vector<std::size_t> cuts;
    for (std::size_t at = 0; at < 8 * 20; at += 8) cuts.push_back(at);
    const auto many = fragment(hello_frame, cuts, 9);
    REQUIRE(many.size() == 20);
    h.from_client(many);
    CHECK(drain(h.inet()) == many);
    CHECK(h.count(engine_event::fragments_passed) == 20);
    CHECK(h.count(engine_event::dropped_by_rule) == 0);
  }
  SUBCASE("a blocked address drops fragments at once") {
    h.set_policy(policy_of({rule("ip", action::drop, {"93.184.216.0/24"})}));
    h.from_client({frags[2], frags[0]});
    CHECK(drain(h.inet()).empty());
    CHECK(h.count(engine_event::dropped_by_rule) == 2);
    CHECK(h.count(engine_event::fragments_held) == 0);
  }
  h.check_accounting();
}
