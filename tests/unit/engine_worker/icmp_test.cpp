// Packets that are IP but not TCP/UDP through the worker: address rules stop ICMP, ICMPv6 and
// other protocols to and from a blocked prefix (Telegram's published prefixes), neighbour
// discovery is never touched, and an ICMP error is stopped when the packet it quotes belongs to
// a flow the fast path blocks or to a blocked prefix. Quotes that cannot be read fail open.
#include <doctest/doctest.h>

#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "tests/unit/engine_worker/harness.hpp"

using namespace sluice;
using namespace sluice::test;
using engine::engine_event;
using match::action;

namespace {

// An IPv6 address from its eight 16-bit groups.
packet::ip_address v6_of(std::initializer_list<std::uint16_t> groups) {
  packet::ip_address a;
  std::size_t i = 0;
  for (std::uint16_t g : groups) {
    a.bytes[i++] = static_cast<std::uint8_t>(g >> 8);
    a.bytes[i++] = static_cast<std::uint8_t>(g);
  }
  a.version = 6;
  return a;
}

const packet::ip_address tg4 = v4(149, 154, 167, 91);  // in 149.154.160.0/20
const packet::ip_address tg6 = v6_of({0x2001, 0x067c, 0x04e8, 0xf004, 0, 0, 0, 0x000a});
const packet::ip_address other6 = v6_of({0x2001, 0x4860, 0, 0, 0, 0, 0, 0x8888});
const packet::ip_address client6 = v6_of({0x2001, 0x0db8, 0, 0, 0, 0, 0, 1});
const packet::ip_address router4 = v4(192, 0, 2, 1);
const packet::ip_address router6 = v6_of({0x2001, 0x0db8, 0xffff, 0, 0, 0, 0, 1});

// Telegram's prefixes as the shared test data lists them.
std::vector<std::string> telegram_prefixes() {
  std::ifstream in(std::string(SLUICE_TESTDATA_DIR) + "/telegram_prefixes.txt");
  REQUIRE(in.good());
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') out.push_back(line);
  }
  REQUIRE(out.size() == 12);
  return out;
}

// Opens a TCP flow and sends its ClientHello; returns what the server side saw of the hello.
std::vector<buf> tls_flow(harness& h, tcp_conv& c, const char* sni) {
  h.from_client({c.syn()});
  h.from_internet({c.syn_ack()});
  h.from_client({c.ack()});
  drain(h.inet());
  drain(h.sub());
  h.from_client({c.data(client_hello(sni))});
  drain(h.sub());
  return drain(h.inet());
}

}  // namespace

TEST_CASE("address rules stop ICMP, ICMPv6 and other protocols to and from a blocked prefix") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::drop, telegram_prefixes())}));
  v4_opts first_fragment;
  first_fragment.frag = 0x2000;  // MF, offset 0: parses as other_l4
  v4_opts later_fragment;
  later_fragment.frag = 185;
  struct row {
    const char* what;
    buf frame;
    bool from_client;
    bool forwarded;
  };
  const std::vector<row> rows = {
      {"echo to Telegram", eth_ip(icmp_echo(client_ip(), tg4)), true, false},
      {"echo reply from Telegram", eth_ip(icmp_packet(tg4, client_ip(), 0, 0, text("pong"))), false,
       false},
      {"echo elsewhere", eth_ip(icmp_echo(client_ip(), other_ip())), true, true},
      {"its reply", eth_ip(icmp_packet(other_ip(), client_ip(), 0, 0, text("pong"))), false, true},
      {"ICMPv6 echo to Telegram", eth_ip(icmp_echo(client6, tg6)), true, false},
      {"ICMPv6 echo reply from Telegram", eth_ip(icmp_packet(tg6, client6, 129, 0, text("pong"))),
       false, false},
      {"ICMPv6 echo elsewhere", eth_ip(icmp_echo(client6, other6)), true, true},
      {"ESP to Telegram", eth_ip(ipv4(client_ip(), v4(91, 108, 4, 5), 50, buf(40, 7))), true,
       false},
      {"ESP elsewhere", eth_ip(ipv4(client_ip(), other_ip(), 50, buf(40, 7))), true, true},
      {"SCTP over IPv6 to Telegram", eth_ip(ipv6(client6, tg6, 132, {}, buf(32, 1), 132)), true,
       false},
      {"first fragment of an echo to Telegram",
       eth_ip(ipv4(client_ip(), tg4, 1, cat({buf{8, 0, 0, 0, 0, 1, 0, 1}, buf(64, 0)}),
                   first_fragment)),
       true, false},
      {"later fragment of an echo to Telegram",
       eth_ip(ipv4(client_ip(), tg4, 1, buf(64, 0), later_fragment)), true, false},
  };
  std::uint64_t dropped = 0;
  for (const row& r : rows) {
    CAPTURE(r.what);
    const auto out = h.through(r.frame, r.from_client);
    if (r.forwarded) {
      CHECK(out == std::vector<buf>{r.frame});
    } else {
      CHECK(out.empty());
      ++dropped;
    }
  }
  CHECK(dropped == 8);
  CHECK(h.count(engine_event::dropped_by_rule) == dropped);
  CHECK(h.rule_counter(0).packets == dropped);
  CHECK(h.rule_counter(0).flows == 0);  // no flow entries for these
  CHECK(h.w->flow_entries() == 0);
  CHECK(h.count(engine_event::icmp_errors_quoted) + h.count(engine_event::icmp_errors_unread) == 0);
  h.check_accounting();
}

TEST_CASE("ICMP to a blocked prefix: every enforcing action drops, throttle and monitor pass") {
  struct row {
    action act;
    bool forwarded;
    engine_event counted;  // exactly one of these
  };
  const row rows[] = {
      {action::drop, false, engine_event::dropped_by_rule},
      {action::reset, false, engine_event::dropped_by_rule},
      {action::notice, false, engine_event::dropped_by_rule},
      {action::throttle, true, engine_event::throttle_flowless},
      {action::monitor, true, engine_event::monitor_hits},
  };
  for (const row& r : rows) {
    CAPTURE(match::to_string(r.act));
    harness h;
    h.set_policy(policy_of({rule("tg", r.act, {"149.154.160.0/20"})}));
    const buf echo = eth_ip(icmp_echo(client_ip(), tg4));
    CHECK(h.through(echo, true).size() == (r.forwarded ? 1u : 0u));
    CHECK(drain(h.sub()).empty());  // nothing answers an ICMP packet
    CHECK(h.count(r.counted) == 1);
    CHECK(h.count(engine_event::dropped_by_rule) == (r.forwarded ? 0u : 1u));
    CHECK(h.count(engine_event::resets_sent) + h.count(engine_event::notices_sent) == 0);
    CHECK(h.rule_counter(0).packets == 1);
    h.check_accounting();
  }
}

TEST_CASE("ICMPv6 neighbour discovery on the subscriber link is never dropped") {
  harness h;
  // Even a (nonsensical) rule naming link-local and multicast space does not touch ND.
  h.set_policy(policy_of({rule("tg", action::drop, telegram_prefixes()),
                          rule("link", action::drop, {"fe80::/10", "ff02::/16"})}));
  const packet::ip_address ll_client = v6_of({0xfe80, 0, 0, 0, 0, 0, 0, 2});
  const packet::ip_address ll_router = v6_of({0xfe80, 0, 0, 0, 0, 0, 0, 1});
  const packet::ip_address all_nodes = v6_of({0xff02, 0, 0, 0, 0, 0, 0, 1});
  const packet::ip_address all_routers = v6_of({0xff02, 0, 0, 0, 0, 0, 0, 2});
  const packet::ip_address solicited = v6_of({0xff02, 0, 0, 0, 0, 1, 0xff00, 1});
  struct row {
    const char* what;
    buf frame;
    bool from_client;
  };
  const std::vector<row> rows = {
      {"router solicitation", eth_ip(icmp_packet(ll_client, all_routers, 133, 0, {})), true},
      {"router advertisement", eth_ip(icmp_packet(ll_router, all_nodes, 134, 0, buf(8, 0))), false},
      {"neighbour solicitation", eth_ip(icmp_packet(client6, solicited, 135, 0, buf(16, 0))), true},
      {"neighbour advertisement", eth_ip(icmp_packet(ll_router, ll_client, 136, 0, buf(16, 0))),
       false},
      {"redirect", eth_ip(icmp_packet(ll_router, ll_client, 137, 0, buf(32, 0))), false},
  };
  for (const row& r : rows) {
    CAPTURE(r.what);
    CHECK(h.through(r.frame, r.from_client) == std::vector<buf>{r.frame});
  }
  CHECK(h.count(engine_event::dropped_by_rule) == 0);
  // And a prefix rule never matches link-local or multicast addresses in the first place.
  harness plain;
  plain.set_policy(policy_of({rule("tg", action::drop, telegram_prefixes())}));
  for (const auto& a : {ll_client, ll_router, all_nodes, solicited}) {
    CHECK_FALSE(plain.active->policy->match_ip(a).has_value());
  }
  h.check_accounting();
}

TEST_CASE("ICMP errors quoting a blocked flow are dropped, quoting an allowed one passed") {
  harness h;
  h.set_policy(policy_of(
      {rule("sni", action::reset, {}, {"t.me"}), rule("tg", action::drop, {"149.154.160.0/20"})}));
  tcp_conv blocked;
  blocked.server = other_ip();
  tcp_conv allowed;
  allowed.server = other_ip();
  allowed.cport = 40001;
  tcp_conv blocked6;
  blocked6.client = client6;
  blocked6.server = other6;
  CHECK(tls_flow(h, blocked, "t.me").size() == 1);  // our RST only
  CHECK(tls_flow(h, allowed, "example.com").size() == 1);
  CHECK(tls_flow(h, blocked6, "t.me").size() == 1);
  const std::uint64_t flows = h.w->flow_entries();
  const std::uint64_t dropped_before = h.count(engine_event::dropped_by_rule);
  REQUIRE(flows == 3);

  tcp_conv unknown;  // never seen
  unknown.server = other_ip();
  unknown.cport = 40009;
  const buf to_blocked = blocked.data(text("again"));
  const buf from_blocked = blocked.server_data(text("reply"));
  const buf udp_to_tg = ipv4(client_ip(), tg4, 17, udp(40100, 443, buf(30, 1)));
  const buf echo_to_tg = icmp_echo(client_ip(), tg4);
  auto ip_of = [](const buf& frame) { return buf(frame.begin() + 14, frame.end()); };
  struct row {
    const char* what;
    buf frame;
    bool from_client;
    bool forwarded;
  };
  const std::vector<row> rows = {
      {"port unreachable quoting the blocked flow",
       eth_ip(icmp_error(router4, client_ip(), 3, 3, ip_of(to_blocked))), false, false},
      {"time exceeded quoting it whole",
       eth_ip(icmp_error(router4, client_ip(), 11, 0, ip_of(to_blocked), 1000)), false, false},
      {"fragmentation needed quoting it",
       eth_ip(icmp_error(router4, client_ip(), 3, 4, ip_of(to_blocked), 28, 1400)), false, false},
      {"the client's error about the server's packet",
       eth_ip(icmp_error(client_ip(), other_ip(), 3, 3, ip_of(from_blocked))), true, false},
      {"ICMPv6 packet too big quoting the blocked v6 flow",
       eth_ip(icmp_error(router6, client6, 2, 0, ip_of(blocked6.data(text("x"))), 1232, 1280)),
       false, false},
      {"quoting a packet to a blocked prefix (no flow)",
       eth_ip(icmp_error(router4, client_ip(), 3, 1, udp_to_tg)), false, false},
      {"quoting an echo to a blocked prefix (traceroute)",
       eth_ip(icmp_error(router4, client_ip(), 11, 0, echo_to_tg)), false, false},
      {"quoting the allowed flow",
       eth_ip(icmp_error(router4, client_ip(), 3, 3, ip_of(allowed.data(text("y"))))), false, true},
      {"quoting a flow not held",
       eth_ip(icmp_error(router4, client_ip(), 3, 3, ip_of(unknown.data(text("z"))))), false, true},
  };
  std::uint64_t dropped = 0;
  for (const row& r : rows) {
    CAPTURE(r.what);
    const auto out = h.through(r.frame, r.from_client);
    if (r.forwarded) {
      CHECK(out == std::vector<buf>{r.frame});
    } else {
      CHECK(out.empty());
      ++dropped;
    }
  }
  CHECK(dropped == 7);
  CHECK(h.count(engine_event::dropped_by_rule) - dropped_before == dropped);
  CHECK(h.count(engine_event::icmp_errors_quoted) == rows.size());
  CHECK(h.count(engine_event::icmp_errors_unread) == 0);
  CHECK(h.count(engine_event::resets_sent) == 2 * 2);  // for the two blocked ClientHellos only
  CHECK(h.w->flow_entries() == flows);                 // errors never create flows
  h.check_accounting();
}

TEST_CASE("ICMP errors whose quote cannot be read fail open, counted") {
  harness h;
  h.set_policy(policy_of({rule("sni", action::reset, {}, {"t.me"})}));
  tcp_conv blocked;
  blocked.server = other_ip();
  CHECK(tls_flow(h, blocked, "t.me").size() == 1);
  const buf to_blocked = blocked.data(text("again"));
  const buf quoted(to_blocked.begin() + 14, to_blocked.end());
  buf bad_ihl = quoted;
  bad_ihl[0] = 0x43;
  buf bad_version = quoted;
  bad_version[0] = 0x65;
  const buf nested = icmp_error(other_ip(), client_ip(), 3, 3, quoted);  // an error about it...
  struct row {
    const char* what;
    buf frame;
  };
  const std::vector<row> rows = {
      {"quote shorter than an IP header",
       eth_ip(icmp_error(router4, client_ip(), 3, 3, quoted, 19))},
      {"quote without its ports", eth_ip(icmp_error(router4, client_ip(), 3, 3, quoted, 23))},
      {"quoted IHL below 5", eth_ip(icmp_error(router4, client_ip(), 3, 3, bad_ihl))},
      {"quoted version 6 in ICMPv4", eth_ip(icmp_error(router4, client_ip(), 3, 3, bad_version))},
      {"an error quoting an error", eth_ip(icmp_error(router4, client_ip(), 11, 0, nested, 56))},
      {"no quote at all", eth_ip(icmp_packet(router4, client_ip(), 3, 3, {}))},
  };
  for (const row& r : rows) {
    CAPTURE(r.what);
    CHECK(h.through(r.frame, false) == std::vector<buf>{r.frame});
  }
  CHECK(h.count(engine_event::icmp_errors_unread) == rows.size());
  CHECK(h.count(engine_event::icmp_errors_quoted) == 0);
  CHECK(h.count(engine_event::dropped_by_rule) == 1);  // the ClientHello only
  h.check_accounting();
}

TEST_CASE("an ICMP error quoting a pinned DNS flow's query is dropped") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::drop, {}, {"t.me"})}));
  const buf query = ipv4(client_ip(), v4(8, 8, 8, 8), 17, udp(40000, 53, dns_message({"t.me"})));
  CHECK(h.through(eth_ip(query), true).empty());
  const buf unreachable = eth_ip(icmp_error(v4(8, 8, 8, 8), client_ip(), 3, 3, query));
  CHECK(h.through(unreachable, false).empty());
  CHECK(h.count(engine_event::icmp_errors_quoted) == 1);
  CHECK(h.count(engine_event::dropped_by_rule) == 2);
  CHECK(h.rule_counter(0).packets == 2);
  h.check_accounting();
}
