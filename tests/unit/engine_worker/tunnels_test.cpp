// Flows inside UDP tunnels (VXLAN, GTP-U) through the worker: the inner flow is classified and
// judged, the whole frame is forwarded or dropped as it came (outer headers untouched), no
// answer is built inside a tunnel (reset / notice become drop), tenants' VXLAN overlays with the
// same inner addresses are separate flows while a GTP-U bearer's two TEIDs (one per direction)
// are one, and a GTP-U datagram fragmented on the outer IP header is reassembled before it is
// judged.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "dataplane/packet/frame.hpp"
#include "tests/unit/engine_worker/harness.hpp"

using namespace sluice;
using namespace sluice::test;
using engine::engine_event;
using match::action;

namespace {

// Tunnel endpoints (documentation ranges): the subscriber-side one and the core-side one.
const packet::ip_address ran_ip = v4(198, 51, 100, 1);
const packet::ip_address core_ip = v4(198, 51, 100, 2);

enum class tunnel { vxlan, gtpu };

// Wraps an Ethernet frame of the inner conversation into the tunnel; `up` = client to server.
buf wrap(tunnel t, std::uint32_t id, const buf& inner_frame, bool up, std::uint16_t ip_id = 1) {
  const buf inner_ip = slice(inner_frame, 14, inner_frame.size());
  const buf payload = t == tunnel::vxlan ? vxlan(id, inner_frame) : gtpu(id, inner_ip);
  const std::uint16_t port = t == tunnel::vxlan ? 4789 : 2152;
  v4_opts o;
  o.id = ip_id;
  return up ? eth(0x0800, ipv4(ran_ip, core_ip, 17, udp(50000, port, payload), o))
            : eth(0x0800, ipv4(core_ip, ran_ip, 17, udp(50001, port, payload), o));
}

struct tunnelled_conv {
  tunnel t;
  std::uint32_t id;     // VNI, or the uplink TEID
  tcp_conv c;
  std::uint32_t down_id = 0;  // GTP-U downlink TEID (0: same as `id`)
  buf syn() { return wrap(t, id, c.syn(), true); }
  buf syn_ack() { return wrap(t, down_id != 0 ? down_id : id, c.syn_ack(), false); }
  buf ack() { return wrap(t, id, c.ack(), true); }
  buf data(const buf& payload) { return wrap(t, id, c.data(payload), true, 0x5151); }
};

void handshake(harness& h, tunnelled_conv& tc) {
  h.from_client({tc.syn()});
  h.from_internet({tc.syn_ack()});
  h.from_client({tc.ack()});
  CHECK(drain(h.inet()).size() == 2);
  CHECK(drain(h.sub()).size() == 1);
}

// Splits an Ethernet + IPv4 (no options) frame's IP payload into fragments at `cuts`
// (multiples of 8, first 0), whatever the payload is: here the outer UDP datagram.
std::vector<buf> fragment_outer(const buf& frame, std::vector<std::size_t> cuts,
                                std::uint16_t id) {
  REQUIRE(frame.size() > 14 + 20);
  REQUIRE(frame[14] == 0x45);
  packet::ip_address src = v4(frame[26], frame[27], frame[28], frame[29]);
  packet::ip_address dst = v4(frame[30], frame[31], frame[32], frame[33]);
  const buf l4 = slice(frame, 14 + 20, frame.size());
  cuts.push_back(l4.size());
  std::vector<buf> out;
  for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
    const bool more = i + 2 < cuts.size();
    v4_opts o;
    o.id = id;
    o.frag = static_cast<std::uint16_t>((more ? 0x2000 : 0) | (cuts[i] / 8));
    out.push_back(eth(0x0800, ipv4(src, dst, frame[14 + 9], slice(l4, cuts[i], cuts[i + 1]), o)));
  }
  return out;
}

bool contains(const std::vector<buf>& v, const buf& f) {
  return std::find(v.begin(), v.end(), f) != v.end();
}

}  // namespace

TEST_CASE("UDP tunnels: the inner ClientHello is judged, the frame goes on as it came") {
  struct row {
    const char* desc;
    tunnel t;
    action act;
    const char* sni;
  };
  const row rows[] = {
      {"VXLAN, drop rule, blocked name", tunnel::vxlan, action::drop, "t.me"},
      {"VXLAN, reset rule: no answer inside a tunnel, dropped", tunnel::vxlan, action::reset,
       "t.me"},
      {"GTP-U, notice rule: dropped", tunnel::gtpu, action::notice, "t.me"},
      {"GTP-U, allowed name passes unchanged", tunnel::gtpu, action::reset, "example.com"},
      {"VXLAN, allowed name passes unchanged", tunnel::vxlan, action::drop, "example.com"},
  };
  for (const row& r : rows) {
    CAPTURE(r.desc);
    harness h;
    h.set_policy(policy_of({rule("tg", r.act, {}, {"t.me"})}));
    tunnelled_conv tc{r.t, 0x00abcd, {}};
    tc.c.server = other_ip();
    handshake(h, tc);
    const buf hello = tc.data(client_hello(r.sni));
    h.from_client({hello});
    const auto to_inet = drain(h.inet());
    const auto to_sub = drain(h.sub());
    CHECK(to_sub.empty());  // never an answer built into (or outside) the tunnel
    CHECK(h.count(engine_event::resets_sent) == 0);
    CHECK(h.count(engine_event::notices_sent) == 0);
    // Counted apart from response_failed (which is for a lack of mbufs or a refusing tx).
    CHECK(h.count(engine_event::response_failed) == 0);
    const bool answered = r.act != action::drop && std::string(r.sni) == "t.me";
    CHECK(h.count(engine_event::response_unanswerable) == (answered ? 2 : 0));  // both resets
    if (std::string(r.sni) == "t.me") {
      CHECK(to_inet.empty());
      CHECK(h.count(engine_event::dropped_by_rule) == 1);
    } else {
      CHECK(to_inet == std::vector<buf>{hello});  // byte-identical, outer headers included
      CHECK(h.count(engine_event::dropped_by_rule) == 0);
    }
    CHECK(h.count(engine_event::flows_created) == 1);  // both directions of the inner flow
    h.check_accounting();
  }
}

TEST_CASE("UDP tunnels: a GTP-U bearer's uplink and downlink TEIDs are one flow") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::drop, {}, {"t.me"})}));
  tunnelled_conv tc{tunnel::gtpu, 0x1111, {}, 0x2222};
  tc.c.server = other_ip();
  handshake(h, tc);
  CHECK(h.count(engine_event::flows_created) == 1);
  h.from_client({tc.data(client_hello("t.me"))});
  CHECK(drain(h.inet()).empty());
  // The server's next packet comes down the other TEID: still the blocked flow.
  h.from_internet({wrap(tunnel::gtpu, 0x2222, tc.c.server_data(text("late")), false)});
  CHECK(drain(h.sub()).empty());
  CHECK(h.count(engine_event::dropped_by_rule) == 2);
  CHECK(h.count(engine_event::flows_created) == 1);
  h.check_accounting();
}

TEST_CASE("UDP tunnels: the same inner 5-tuple in two VXLAN overlays is two flows") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::drop, {}, {"t.me"})}));
  tunnelled_conv blocked{tunnel::vxlan, 1001, {}};
  tunnelled_conv allowed{tunnel::vxlan, 1002, {}};
  blocked.c.server = other_ip();
  allowed.c.server = other_ip();
  handshake(h, blocked);
  handshake(h, allowed);
  CHECK(h.count(engine_event::flows_created) == 2);
  h.from_client({blocked.data(client_hello("t.me"))});
  CHECK(drain(h.inet()).empty());
  // The other tenant's identical flow is not the blocked one.
  const buf other = allowed.data(client_hello("example.com"));
  h.from_client({other});
  CHECK(drain(h.inet()) == std::vector<buf>{other});
  CHECK(h.count(engine_event::dropped_by_rule) == 1);
  h.check_accounting();
}

TEST_CASE("UDP tunnels: a GTP-U datagram fragmented on the outer IP header is reassembled") {
  struct row {
    const char* desc;
    const char* sni;
    std::vector<std::size_t> cuts;  // in the outer UDP datagram
    std::vector<int> order;
  };
  const row rows[] = {
      // 8 (UDP) + 8 (GTP-U) + 20 (inner IP) + 20 (inner TCP): the first cut at 16 leaves only
      // the UDP and GTP-U headers in the first fragment, 48 cuts inside the inner TCP header.
      {"blocked, in order", "t.me", {0, 16, 96}, {0, 1, 2}},
      {"blocked, reversed", "t.me", {0, 48, 128}, {2, 1, 0}},
      {"blocked, first fragment last", "t.me", {0, 64}, {1, 0}},
      {"allowed, shuffled", "example.com", {0, 16, 96}, {1, 2, 0}},
  };
  for (const row& r : rows) {
    CAPTURE(r.desc);
    harness h;
    h.set_policy(policy_of({rule("tg", action::reset, {}, {"t.me"})}));
    tunnelled_conv tc{tunnel::gtpu, 0x01020304, {}};
    tc.c.server = other_ip();
    handshake(h, tc);
    const buf whole = tc.data(client_hello(r.sni));
    const auto frags = fragment_outer(whole, r.cuts, 0x6262);
    REQUIRE(frags.size() == r.cuts.size());
    // Each fragment alone: the first is `fragment` (not a plain UDP flow), the rest too.
    for (const buf& f : frags) {
      CHECK(packet::parse_frame(f).outcome == packet::frame_outcome::fragment);
    }
    std::vector<buf> arrival;
    for (int i : r.order) arrival.push_back(frags[static_cast<std::size_t>(i)]);
    h.from_client(arrival);
    CHECK(h.count(engine_event::fragments_held) == frags.size());
    CHECK(h.count(engine_event::fragments_reassembled) == 1);
    CHECK(h.count(engine_event::fragments_passed) == 0);
    const auto to_inet = drain(h.inet());
    CHECK(drain(h.sub()).empty());
    if (std::string(r.sni) == "t.me") {
      for (const buf& f : frags) CHECK_FALSE(contains(to_inet, f));
      CHECK(to_inet.empty());  // reset inside GTP-U: refused, the fragments dropped
      CHECK(h.count(engine_event::dropped_by_rule) == frags.size());
      CHECK(h.count(engine_event::resets_sent) == 0);
    } else {
      CHECK(to_inet == arrival);  // byte-identical, arrival order
      CHECK(h.count(engine_event::dropped_by_rule) == 0);
    }
    CHECK(h.count(engine_event::flows_created) == 1);  // the reassembled one is the inner flow
    // Later packets of the flow, both ways, follow its verdict.
    const buf later = tc.data(text("later"));
    const buf answer = wrap(tunnel::gtpu, 0x01020304, tc.c.server_data(text("answer")), false);
    h.from_client({later});
    h.from_internet({answer});
    const bool blocked = std::string(r.sni) == "t.me";
    CHECK(drain(h.inet()).size() == (blocked ? 0u : 1u));
    CHECK(drain(h.sub()).size() == (blocked ? 0u : 1u));
    h.check_accounting();
  }
}

TEST_CASE("UDP tunnels: inner IP fragments inside VXLAN are reassembled in their overlay's flow") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::drop, {}, {"t.me"})}));
  tunnelled_conv tc{tunnel::vxlan, 77, {}};
  tc.c.server = other_ip();
  handshake(h, tc);
  // Fragment the inner IPv4 datagram, then put each fragment in its own VXLAN datagram.
  const buf inner = tc.c.data(client_hello("t.me"));
  std::vector<buf> frags;
  for (const buf& f : fragment_outer(inner, {0, 64, 128}, 0x7070)) {
    frags.push_back(wrap(tunnel::vxlan, 77, f, true));
  }
  h.from_client({frags[2], frags[0], frags[1]});
  CHECK(h.count(engine_event::fragments_reassembled) == 1);
  CHECK(drain(h.inet()).empty());
  CHECK(h.count(engine_event::dropped_by_rule) == 3);
  CHECK(h.count(engine_event::flows_created) == 1);  // the handshake's flow, VNI 77
  h.check_accounting();
}
