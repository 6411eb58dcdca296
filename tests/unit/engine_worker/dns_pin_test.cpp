// DNS, mDNS and SSDP flows through the worker: judged message by message until a query names a
// blocked name, then blocked for their life — the response, later queries and their responses,
// whole or as IPv6 fragments — while other resolvers' flows and other source ports are not
// touched. Monitor-only names keep counting per message. A policy swap re-decides the pin from
// the names the flow asked: a lift unblocks it.
#include <doctest/doctest.h>

#include <initializer_list>
#include <string_view>
#include <vector>

#include "dataplane/packet/dns.hpp"
#include "tests/unit/engine_worker/harness.hpp"

using namespace sluice;
using namespace sluice::test;
using engine::engine_event;
using match::action;

namespace {

// One DNS 5-tuple: the client (subscriber side) and its resolver (internet side).
struct dns_conv {
  packet::ip_address client = client_ip();
  packet::ip_address resolver = v4(8, 8, 8, 8);
  std::uint16_t cport = 40000;
  std::uint16_t sport = 53;

  buf query(std::initializer_list<std::string_view> names, std::uint16_t id = 1) const {
    return eth_ip(test::ip(client, resolver, 17, udp(cport, sport, dns_message(names, false, id))));
  }
  buf response(std::initializer_list<std::string_view> names, std::uint16_t id = 1) const {
    return eth_ip(test::ip(resolver, client, 17, udp(sport, cport, dns_message(names, true, id))));
  }
};

dns_conv v6_conv() {
  dns_conv d;
  d.client = v6(0x2001, 1);
  d.resolver = v6(0x2001, 0x53);
  return d;
}

// Names that make a DNS message longer than 128 bytes (three fragments at 0, 64, 128).
#define SLUICE_LONG_NAMES                                           \
  "padding-label-one.example.com", "padding-label-two.example.com", \
      "padding-label-three.example.com", "padding-label-four.example.com"

}  // namespace

TEST_CASE("DNS: once a query's name is blocked, its flow is blocked for life, both ways") {
  for (const bool six : {false, true}) {
    CAPTURE(six);
    harness h;
    h.set_policy(policy_of({rule("tg", action::drop, {}, {"t.me"})}));
    const dns_conv d = six ? v6_conv() : dns_conv{};
    dns_conv other_resolver = d;
    other_resolver.resolver = six ? v6(0x2620, 0xfe) : v4(9, 9, 9, 9);
    dns_conv other_port = d;
    other_port.cport = 40001;
    struct row {
      const char* what;
      const dns_conv* flow;
      buf frame;
      bool from_client;
      bool forwarded;
    };
    const std::vector<row> rows = {
        {"allowed query", &d, d.query({"example.com"}, 1), true, true},
        {"its response", &d, d.response({"example.com"}, 1), false, true},
        {"blocked query", &d, d.query({"t.me"}, 2), true, false},
        {"its response", &d, d.response({"t.me"}, 2), false, false},
        {"a later allowed query, same 5-tuple", &d, d.query({"example.org"}, 3), true, false},
        {"its response", &d, d.response({"example.org"}, 3), false, false},
        {"other resolver", &other_resolver, other_resolver.query({"example.com"}, 4), true, true},
        {"its response", &other_resolver, other_resolver.response({"example.com"}, 4), false, true},
        {"other source port", &other_port, other_port.query({"example.com"}, 5), true, true},
    };
    std::uint64_t forwarded = 0;
    for (const row& r : rows) {
      CAPTURE(r.what);
      const auto out = h.through(r.frame, r.from_client);
      if (r.forwarded) {
        CHECK(out == std::vector<buf>{r.frame});
        ++forwarded;
      } else {
        CHECK(out.empty());
      }
    }
    CHECK(h.count(engine_event::dropped_by_rule) == 4);
    CHECK(h.count(engine_event::forwarded) == forwarded);
    CHECK(h.count(engine_event::dns_flows_pinned) == 1);
    CHECK(h.rule_counter(0).flows == 1);
    CHECK(h.rule_counter(0).packets == 4);
    CHECK(h.w->flow_entries() == 3);
    h.check_accounting();
  }
}

TEST_CASE("DNS over IPv6 fragments: a pinned flow's fragmented response is dropped") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::drop, {}, {"t.me"})}));
  const dns_conv d = v6_conv();
  dns_conv allowed = d;
  allowed.cport = 40002;

  SUBCASE("whole query, fragmented response") {
    CHECK(h.through(d.query({"t.me"}), true).empty());
    const auto frags = fragment(d.response({"t.me", SLUICE_LONG_NAMES}), {0, 64, 128}, 0x51);
    REQUIRE(frags.size() == 3);
    h.from_internet({frags[2], frags[0], frags[1]});
    CHECK(drain(h.sub()).empty());
    CHECK(h.count(engine_event::fragments_reassembled) == 1);
    CHECK(h.count(engine_event::dropped_by_rule) == 1 + 3);
  }
  SUBCASE("fragmented query, whole response, later fragmented response") {
    const auto q = fragment(d.query({SLUICE_LONG_NAMES, "t.me"}), {0, 64, 128}, 0x52);
    REQUIRE(q.size() == 3);
    h.from_client(q);
    CHECK(drain(h.inet()).empty());
    CHECK(h.through(d.response({"t.me"}), false).empty());
    const auto r = fragment(d.response({SLUICE_LONG_NAMES}, 9), {0, 64, 128}, 0x53);
    h.from_internet(r);
    CHECK(drain(h.sub()).empty());
    CHECK(h.count(engine_event::fragments_reassembled) == 2);
    CHECK(h.count(engine_event::dropped_by_rule) == 3 + 1 + 3);
  }
  // Another flow's fragmented response goes through, byte for byte.
  const auto ok =
      fragment(allowed.response({"example.com", SLUICE_LONG_NAMES}), {0, 64, 128}, 0x54);
  CHECK(h.through(allowed.query({"example.com"}), true).size() == 1);
  h.from_internet(ok);
  CHECK(drain(h.sub()) == ok);
  CHECK(h.count(engine_event::dns_flows_pinned) == 1);
  CHECK(h.count(engine_event::fragments_passed) == 0);
  h.check_accounting();
}

TEST_CASE("mDNS on 5353: a blocked service name blocks the flow for life") {
  harness h;
  h.set_policy(policy_of({rule("cast", action::drop, {}, {"_googlecast._tcp.local"})}));
  dns_conv m;
  m.client = v4(10, 0, 0, 7);
  m.resolver = v4(224, 0, 0, 251);
  m.cport = 5353;
  m.sport = 5353;
  dns_conv other_host = m;
  other_host.client = v4(10, 0, 0, 8);
  CHECK(h.through(m.query({"_airplay._tcp.local"}, 0), true).size() == 1);
  CHECK(h.through(m.query({"_googlecast._tcp.local"}, 0), true).empty());
  CHECK(h.through(m.query({"_airplay._tcp.local"}, 0), true).empty());
  CHECK(h.through(m.response({"_airplay._tcp.local"}, 0), false).empty());
  CHECK(h.through(other_host.query({"_airplay._tcp.local"}, 0), true).size() == 1);
  CHECK(h.count(engine_event::dropped_by_rule) == 3);
  CHECK(h.count(engine_event::dns_flows_pinned) == 1);
  CHECK(h.rule_counter(0).flows == 1);
  CHECK(h.rule_counter(0).packets == 3);
  h.check_accounting();
}

TEST_CASE("DNS: monitor-only names are counted per message and never pin the flow") {
  harness h;
  h.set_policy(policy_of({rule("watch", action::monitor, {}, {"t.me"}),
                          rule("block", action::drop, {}, {"example.com"})}));
  const dns_conv d;
  const std::vector<buf> frames = {d.query({"t.me"}, 1), d.query({"example.org"}, 2),
                                   d.query({"t.me"}, 3)};
  h.from_client(frames);
  CHECK(drain(h.inet()) == frames);
  const std::vector<buf> answers = {d.response({"t.me"}, 1), d.response({"t.me"}, 3)};
  h.from_internet(answers);
  CHECK(drain(h.sub()) == answers);
  CHECK(h.count(engine_event::monitor_hits) == 2);  // the two t.me queries, not the responses
  CHECK(h.rule_counter(0).packets == 2);
  CHECK(h.rule_counter(0).flows == 1);
  CHECK(h.count(engine_event::dns_flows_pinned) == 0);
  CHECK(h.count(engine_event::dropped_by_rule) == 0);
  h.check_accounting();
}

TEST_CASE("DNS: a policy swap re-decides a pinned flow from the names it asked") {
  harness h;
  const auto both = policy_of(
      {rule("me", action::drop, {}, {"t.me"}), rule("org", action::drop, {}, {"telegram.org"})}, 1);
  const auto org_only = policy_of({rule("org", action::drop, {}, {"telegram.org"})}, 2);
  const auto reordered = policy_of({rule("x", action::drop, {}, {"example.net"}),
                                    rule("org", action::drop, {}, {"telegram.org"})},
                                   3);
  const auto lifted = policy_of({rule("x", action::drop, {}, {"example.net"})}, 4);
  h.set_policy(both);
  const dns_conv d;
  CHECK(h.through(d.query({"t.me"}, 1), true).empty());          // pinned by "me"
  CHECK(h.through(d.query({"telegram.org"}, 2), true).empty());  // kept, "me" still decides
  CHECK(h.rule_counter(0).packets == 2);
  CHECK(h.rule_counter(1).packets == 0);

  h.set_policy(org_only);  // "me" lifted: telegram.org still blocks the flow
  CHECK(h.through(d.response({"t.me"}, 1), false).empty());
  CHECK(h.rule_counter(0).flows == 1);
  h.set_policy(reordered);  // same rule at another index
  CHECK(h.through(d.query({"example.com"}, 3), true).empty());
  CHECK(h.rule_counter(1).flows == 1);
  CHECK(h.rule_counter(1).packets == 1);

  h.set_policy(lifted);  // nothing it asked is blocked any more: unblocked, per message again
  const buf answer = d.response({"telegram.org"}, 2);
  CHECK(h.through(answer, false) == std::vector<buf>{answer});
  const buf again = d.query({"t.me"}, 4);
  CHECK(h.through(again, true) == std::vector<buf>{again});
  CHECK(h.through(d.query({"example.net"}, 5), true).empty());  // re-pinned by the new rule
  CHECK(h.through(d.response({"example.net"}, 5), false).empty());
  CHECK(h.count(engine_event::dns_flows_pinned) == 2);
  CHECK(h.count(engine_event::dropped_by_rule) == 2 + 1 + 1 + 2);
  h.check_accounting();
}

TEST_CASE("SSDP: a blocked Host pins the flow like DNS") {
  harness h;
  h.set_policy(policy_of({rule("tv", action::drop, {}, {"tv.example"})}));
  auto ssdp = [](std::string_view host) {
    std::string s = "M-SEARCH * HTTP/1.1\r\nHost: ";
    s += host;
    s += "\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n\r\n";
    return eth_ip(test::ip(client_ip(), v4(239, 255, 255, 250), 17, udp(50000, 1900, text(s))));
  };
  const buf allowed = ssdp("239.255.255.250:1900");
  CHECK(h.through(allowed, true) == std::vector<buf>{allowed});
  CHECK(h.through(ssdp("tv.example"), true).empty());
  CHECK(h.through(allowed, true).empty());
  CHECK(h.count(engine_event::dns_flows_pinned) == 1);
  h.check_accounting();
}

// What a blocked name's query gets, per action and mode: inline `drop` drops it (the client
// times out); `reset` and `notice` answer NXDOMAIN at once, as a RST ends a TCP flow; a mirror
// cannot drop, so every enforcing action answers NXDOMAIN out of the inject port, racing the
// resolver, whose own answer the mirror only sees.
TEST_CASE("DNS: a blocked name's query is dropped or answered NXDOMAIN as the rule and mode say") {
  struct row {
    const char* what;
    action act;
    bool mirror;
    bool answered;
  };
  const row rows[] = {
      {"inline drop", action::drop, false, false},
      {"inline reset", action::reset, false, true},
      {"inline notice", action::notice, false, true},
      {"mirror drop", action::drop, true, true},
      {"mirror reset", action::reset, true, true},
  };
  for (const row& r : rows) {
    CAPTURE(r.what);
    harness h(1024, r.mirror);
    h.set_policy(policy_of({rule("tg", r.act, {}, {"t.me", "*.t.me"})}));
    const dns_conv d;
    const buf query = d.query({"web.t.me"}, 0x4242);
    h.from_client({d.query({"example.com"}, 1), query});
    const auto onward = drain(h.inet());
    const auto answers = drain(r.mirror ? h.inject() : h.sub());
    if (r.mirror) {
      CHECK(onward.empty());  // a mirror never forwards
    } else {
      REQUIRE(onward.size() == 1);  // the allowed query only
      CHECK(packet::parse_frame(onward[0]).src_port == d.cport);
    }
    CHECK(h.count(engine_event::dns_answers_sent) == (r.answered ? 1u : 0u));
    if (!r.answered) {
      CHECK(answers.empty());
      continue;
    }
    REQUIRE(answers.size() == 1);
    const packet::frame_info fi = packet::parse_frame(answers[0]);
    REQUIRE(fi.outcome == packet::frame_outcome::ok);
    CHECK(fi.src == d.resolver);
    CHECK(fi.dst == d.client);
    CHECK(fi.src_port == d.sport);
    CHECK(fi.dst_port == d.cport);
    CHECK(packet::l4_checksum_ok(answers[0], fi));
    const buf msg(answers[0].begin() + fi.payload_offset, answers[0].end());
    CHECK(packet::load_be16(msg.data()) == 0x4242);
    CHECK((msg[3] & 0x0f) == 3);  // NXDOMAIN
    packet::dns_questions q;
    REQUIRE(packet::parse_dns_message(msg, q) == packet::dns_outcome::question);
    CHECK(q.is_response);
    CHECK(q.names[0].view() == "web.t.me");
    // The resolver's own answer, should it come, goes no further.
    if (r.mirror) {
      h.from_client({d.response({"web.t.me"}, 0x4242)});
      CHECK(drain(h.inject()).empty());
      CHECK(drain(h.sub()).empty());
    } else {
      CHECK(h.through(d.response({"web.t.me"}, 0x4242), false).empty());
    }
    CHECK(h.count(engine_event::dns_answers_sent) == 1);
    h.check_accounting();
  }
}

TEST_CASE("mirror: drop on TCP is enforced with resets; on other UDP it cannot be, and says so") {
  harness h(1024, true);
  h.set_policy(policy_of({rule("tg", action::drop, {"149.154.160.0/20"}, {"t.me"})}));
  tcp_conv c;
  c.server = other_ip();
  h.from_client({c.syn(), c.syn_ack(), c.ack(), c.data(client_hello("t.me"))});
  const auto injected = drain(h.inject());
  REQUIRE(injected.size() == 2);
  CHECK(packet::parse_frame(injected[0]).dst == c.client);
  CHECK(packet::parse_frame(injected[1]).dst == c.server);
  CHECK(h.count(engine_event::resets_sent) == 2);
  CHECK(h.count(engine_event::mirror_unenforceable) == 0);

  // UDP to a blocked prefix (QUIC, say): nothing a copy can do about it, counted.
  h.from_client({eth_ip(test::ip(client_ip(), tg_ip(), 17, udp(50000, 443, buf(1200, 0x40))))});
  CHECK(drain(h.inject()).empty());
  CHECK(h.count(engine_event::mirror_unenforceable) == 1);
  h.check_accounting();
}
