// The worker driven through process_burst: what goes out of which port, byte for byte, and the
// counters, for each action. Every case checks the accounting invariant.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "dataplane/packet/frame.hpp"
#include "tests/unit/engine_worker/harness.hpp"

using namespace sluice;
using namespace sluice::test;
using engine::engine_event;
using match::action;

namespace {

std::string payload_text(const buf& frame) {
  const auto info = packet::parse_frame(frame);
  const auto p = info.payload(frame);
  return std::string(p.begin(), p.end());
}

std::int64_t fake_now = 0;
std::int64_t fake_clock() { return fake_now; }

}  // namespace

TEST_CASE("no policy: every packet is forwarded unchanged, in order, both ways") {
  harness h;
  tcp_conv c;
  tcp_conv six;
  six.client = v6(0x2001, 1);
  six.server = v6(0x2001, 2);
  const std::vector<buf> out = {
      c.syn(),
      c.ack(),
      c.data(client_hello("t.me")),
      six.syn(),
      six.data(http_get("example.com")),
      eth_ip(test::ip(client_ip(), v4(8, 8, 8, 8), 17, udp(5353, 53, dns_message({"t.me"})))),
      eth(0x0806, buf(28, 1)),                                        // ARP: unsupported_l2
      eth_ip(test::ip(client_ip(), v4(8, 8, 8, 8), 1, buf{8, 0, 0, 0})),    // ICMP: other_l4
      buf{1, 2, 3},                                                   // truncated
  };
  h.from_client(out);
  CHECK(drain(h.inet()) == out);
  CHECK(drain(h.sub()).empty());

  const std::vector<buf> back = {c.syn_ack(), c.server_data(text("hello"))};
  h.from_internet(back);
  CHECK(drain(h.sub()) == back);
  CHECK(h.count(engine_event::forwarded) == out.size() + back.size());
  CHECK(h.count(engine_event::packets_in) == out.size());
  CHECK(h.count(engine_event::packets_out) == back.size());
  CHECK(h.w->counters().parse[static_cast<std::size_t>(packet::frame_outcome::unsupported_l2)] == 1);
  CHECK(h.w->flow_entries() == 3);
  h.check_accounting();
}

TEST_CASE("IP-prefix drop stops a flow at its SYN; another flow passes") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::drop, {"149.154.160.0/20"})}));
  tcp_conv blocked;
  tcp_conv other;
  other.server = other_ip();
  const buf other_syn = other.syn();
  h.from_client({blocked.syn(), other_syn});
  CHECK(drain(h.inet()) == std::vector<buf>{other_syn});
  // The internet side's packets of that address are dropped too (src is the internet side).
  h.from_internet({blocked.syn_ack()});
  CHECK(drain(h.sub()).empty());
  CHECK(h.count(engine_event::dropped_by_rule) == 2);
  CHECK(h.rule_counter(0).flows == 1);
  CHECK(h.rule_counter(0).packets == 2);
  h.check_accounting();
}

TEST_CASE("SNI reset: the handshake passes, the ClientHello is dropped, two RSTs go out") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::reset, {}, {"t.me", "*.t.me"})}));
  tcp_conv c;
  c.server = other_ip();  // the name decides, not the address
  const std::vector<buf> hs = {c.syn(), c.ack()};
  h.from_client(hs);
  const buf sa = c.syn_ack();
  h.from_internet({sa});
  CHECK(drain(h.inet()) == hs);
  CHECK(drain(h.sub()) == std::vector<buf>{sa});

  const std::uint32_t ch_seq = c.cseq;
  const buf ch = c.data(client_hello("web.t.me"));
  const std::uint32_t ch_len = c.cseq - ch_seq;
  h.from_client({ch});
  const auto to_client = drain(h.sub());
  const auto to_server = drain(h.inet());
  REQUIRE(to_client.size() == 1);
  REQUIRE(to_server.size() == 1);
  const auto rc = packet::parse_frame(to_client[0]);
  REQUIRE(rc.outcome == packet::frame_outcome::ok);
  CHECK(rc.src == c.server);
  CHECK(rc.dst == c.client);
  CHECK(rc.src_port == c.sport);
  CHECK(rc.dst_port == c.cport);
  CHECK((rc.tcp_flags & packet::tcp_rst) != 0);
  CHECK(rc.tcp_seq == c.sseq);            // what the client acknowledged
  CHECK(rc.tcp_ack == ch_seq + ch_len);   // what the client sends next
  const auto rs = packet::parse_frame(to_server[0]);
  REQUIRE(rs.outcome == packet::frame_outcome::ok);
  CHECK(rs.src == c.client);
  CHECK(rs.dst == c.server);
  CHECK(rs.src_port == c.cport);
  CHECK((rs.tcp_flags & packet::tcp_rst) != 0);
  // The ClientHello was dropped: the server still expects its first byte, and a RST at any
  // other sequence number only draws a challenge ACK (RFC 5961) and leaves the server's side open.
  CHECK(rs.tcp_seq == ch_seq);
  CHECK(rs.tcp_ack == c.sseq);
  CHECK(h.count(engine_event::resets_sent) == 2);

  // Later packets of the flow, both ways: dropped, not answered again right away (whether
  // they come in one burst or several).
  h.from_client({c.data(text("more")), c.data(text("more")), c.data(text("more"))});
  h.from_client({c.data(text("more"))});
  h.from_internet({c.server_data(text("reply"))});
  CHECK(drain(h.inet()).empty());
  CHECK(drain(h.sub()).empty());
  CHECK(h.count(engine_event::dropped_by_rule) == 6);
  CHECK(h.count(engine_event::resets_sent) == 2);
  CHECK(h.rule_counter(0).flows == 1);
  CHECK(h.rule_counter(0).packets == 6);

  // Past answer_every_packets (32) dropped packets, the flow is answered again.
  h.from_client(std::vector<buf>(40, c.data(text("again"), false)));
  CHECK(drain(h.sub()).size() == 1);
  CHECK(drain(h.inet()).size() == 1);
  CHECK(h.count(engine_event::resets_sent) == 4);
  h.check_accounting();
}

TEST_CASE("notice on HTTP: the 451 page goes to the client, a RST to the server") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::notice, {}, {"telegram.org"})}));
  tcp_conv c;
  c.server = other_ip();
  c.sport = 80;
  h.from_client({c.syn()});
  h.from_internet({c.syn_ack()});
  h.from_client({c.ack()});
  drain(h.sub());
  drain(h.inet());
  const std::uint32_t request_seq = c.cseq;
  h.from_client({c.data(http_get("TELEGRAM.org"))});
  const auto to_client = drain(h.sub());
  const auto to_server = drain(h.inet());
  REQUIRE(to_client.size() == 1);
  REQUIRE(to_server.size() == 1);
  const std::string page = payload_text(to_client[0]);
  CHECK(page.rfind("HTTP/1.1 451", 0) == 0);
  CHECK(page.find("Order 123 of 2026-11-20") != std::string::npos);
  CHECK(page.find("TELEGRAM.org") != std::string::npos);
  const auto rs = packet::parse_frame(to_server[0]);
  CHECK((rs.tcp_flags & packet::tcp_rst) != 0);
  CHECK(rs.dst == c.server);
  CHECK(rs.tcp_seq == request_seq);  // in place of the dropped request
  CHECK(h.count(engine_event::notices_sent) == 1);
  CHECK(h.count(engine_event::resets_sent) == 1);

  // TLS under a notice rule is answered with resets.
  tcp_conv t;
  t.server = other_ip();
  t.cport = 40001;
  h.from_client({t.syn(), t.ack(), t.data(client_hello("telegram.org"))});
  CHECK(drain(h.sub()).size() == 1);   // RST to the client
  CHECK(drain(h.inet()).size() == 3);  // SYN, ACK, RST to the server
  CHECK(h.count(engine_event::resets_sent) == 3);
  h.check_accounting();
}

TEST_CASE("throttle admits the burst, then drops") {
  harness h;
  auto r = rule("slow", action::throttle, {"149.154.160.0/20"});
  r.throttle = {8000, 3000};  // 1000 bytes/s, 3000-byte bucket
  h.set_policy(policy_of({r}));
  const buf f = eth_ip(test::ip(client_ip(), tg_ip(), 17, udp(40000, 443, buf(1000, 0x42))));
  REQUIRE(f.size() == 1042);
  h.from_client(std::vector<buf>(10, f));
  CHECK(drain(h.inet()).size() == 2);  // 2 x 1042 <= 3000 < 3 x 1042
  CHECK(h.count(engine_event::throttled_drops) == 8);
  CHECK(h.count(engine_event::dropped_by_rule) == 8);
  h.check_accounting();
}

TEST_CASE("monitor counts flows and packets and forwards everything") {
  harness h;
  h.set_policy(policy_of({rule("watch", action::monitor, {}, {"t.me"}),
                          rule("other", action::drop, {}, {"example.com"})}));
  tcp_conv c;
  c.server = other_ip();
  const std::vector<buf> frames = {c.syn(), c.ack(), c.data(client_hello("t.me")),
                                   c.data(text("x"))};
  h.from_client(frames);
  CHECK(drain(h.inet()) == frames);
  CHECK(h.rule_counter(0).flows == 1);
  CHECK(h.rule_counter(0).packets == 2);  // from the ClientHello on
  CHECK(h.rule_counter(1).packets == 0);
  CHECK(h.count(engine_event::monitor_hits) == 2);
  CHECK(h.count(engine_event::dropped_by_rule) == 0);
  h.check_accounting();
}

TEST_CASE("DNS: queries for a blocked name dropped, each flow judged by its names") {
  // One 5-tuple per row; what a blocked query does to its flow's later packets is in
  // dns_pin_test.cpp.
  harness h;
  h.set_policy(policy_of({rule("tg", action::drop, {}, {"t.me"})}));
  auto q = [](std::initializer_list<std::string_view> names, std::uint16_t port) {
    return eth_ip(test::ip(client_ip(), v4(8, 8, 8, 8), 17, udp(port, 53, dns_message(names))));
  };
  struct row {
    const char* what;
    buf frame;
    bool forwarded;
  };
  const std::vector<row> rows = {
      {"allowed name", q({"example.com"}, 5001), true},
      {"blocked name, any case, trailing dot", q({"T.ME."}, 5002), false},
      {"two questions, one blocked", q({"example.net", "t.me"}, 5003), false},
      {"label boundary", q({"at.me"}, 5004), true},
  };
  std::uint64_t dropped = 0;
  for (const auto& r : rows) {
    CAPTURE(r.what);
    h.from_client({r.frame});
    const auto out = drain(h.inet());
    if (r.forwarded) {
      CHECK(out == std::vector<buf>{r.frame});
    } else {
      CHECK(out.empty());
      ++dropped;
    }
  }
  CHECK(h.count(engine_event::dropped_by_rule) == dropped);
  CHECK(h.count(engine_event::dns_flows_pinned) == dropped);
  CHECK(h.w->flow_entries() == rows.size());
  h.check_accounting();
}

TEST_CASE("a fake ClientHello naming an allowed name does not decide the flow") {
  struct row {
    const char* what;
    bool bad_checksum;
    std::uint8_t ttl;
    engine_event counted;
  };
  const row rows[] = {
      {"bad TCP checksum", true, 64, engine_event::fake_ignored_checksum},
      {"TTL below the handshake's", false, 3, engine_event::fake_ignored_ttl},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    harness h;
    h.set_policy(policy_of({rule("tg", action::reset, {}, {"t.me"})}));
    tcp_conv c;
    c.server = other_ip();
    h.from_client({c.syn()});
    h.from_internet({c.syn_ack()});
    h.from_client({c.ack()});
    drain(h.inet());
    drain(h.sub());
    buf fake = c.data(client_hello("allowed.example"), false);
    if (r.bad_checksum) fake = with_bad_checksum(fake);
    if (r.ttl != 64) fake = with_ttl(fake, r.ttl);
    h.from_client({fake});
    CHECK(drain(h.inet()) == std::vector<buf>{fake});  // forwarded: it dies on its own
    CHECK(h.count(r.counted) == 1);
    h.from_client({c.data(client_hello("t.me"))});
    CHECK(drain(h.inet()).size() == 1);  // only our RST
    CHECK(drain(h.sub()).size() == 1);
    CHECK(h.count(engine_event::dropped_by_rule) == 1);
    h.check_accounting();
  }
}

TEST_CASE("flow table full: new flows are forwarded unclassified and counted") {
  harness h(8);
  h.set_policy(policy_of({rule("tg", action::drop, {}, {"t.me"})}));
  std::vector<buf> syns;
  for (std::uint16_t i = 0; i < 10; ++i) {
    tcp_conv c;
    c.server = other_ip();
    c.cport = static_cast<std::uint16_t>(30000 + i);
    syns.push_back(c.syn());
  }
  h.from_client(syns);
  CHECK(drain(h.inet()) == syns);
  CHECK(h.w->flow_entries() == 8);
  CHECK(h.count(engine_event::flow_table_full) == 2);
  CHECK(h.count(engine_event::flows_created) == 8);
  h.check_accounting();
}

TEST_CASE("a policy swap re-judges existing flows on their next packet") {
  harness h;
  const auto policy_a = policy_of({rule("a", action::drop, {}, {"t.me"})}, 1);
  const auto policy_b = policy_of({rule("b", action::drop, {}, {"example.com"})}, 2);
  h.set_policy(policy_a);
  tcp_conv x;  // example.com: allowed under A
  x.server = other_ip();
  tcp_conv y;  // t.me: blocked under A
  y.server = other_ip();
  y.cport = 40001;
  const buf x_syn = x.syn();
  const buf y_syn = y.syn();
  const buf x_ch = x.data(client_hello("example.com"));
  h.from_client({x_syn, y_syn, x_ch, y.data(client_hello("t.me"))});
  auto out = drain(h.inet());
  REQUIRE(out.size() == 3);
  CHECK(out[2] == x_ch);

  h.set_policy(policy_b);
  const buf x_next = x.data(text("x"));
  const buf y_next = y.data(text("y"));
  h.from_client({x_next, y_next});
  CHECK(drain(h.inet()) == std::vector<buf>{y_next});
  CHECK(h.rule_counter(0).flows == 1);  // policy B's counters

  h.set_policy(policy_a);  // and back
  const buf x_again = x.data(text("x2"));
  h.from_client({x_again, y.data(text("y2"))});
  CHECK(drain(h.inet()) == std::vector<buf>{x_again});
  h.check_accounting();
}

TEST_CASE("rule windows: before not_before forwarded, from then on enforced") {
  harness h;
  h.shared.clock = fake_clock;
  auto r = rule("tg", action::drop, {"149.154.160.0/20"});
  r.not_before = 2'000'000'000;
  r.not_after = 2'000'000'100;
  h.set_policy(policy_of({r}));
  tcp_conv c;
  struct row {
    std::int64_t now;
    bool forwarded;
  };
  const row rows[] = {{1'999'999'999, true}, {2'000'000'000, false}, {2'000'000'099, false},
                      {2'000'000'100, true}};
  for (const auto& w : rows) {
    CAPTURE(w.now);
    fake_now = w.now;
    h.from_client({c.data(text("data"))});
    CHECK(drain(h.inet()).size() == (w.forwarded ? 1u : 0u));
  }
  h.check_accounting();
}

TEST_CASE("IP fragments: non-first fragments pass unless their address is blocked") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::drop, {"149.154.160.0/20"})}));
  v4_opts second;
  second.frag = 185;  // offset 1480, last fragment
  const buf to_other = eth_ip(ipv4(client_ip(), other_ip(), 17, buf(100, 1), second));
  const buf to_tg = eth_ip(ipv4(client_ip(), tg_ip(), 17, buf(100, 1), second));
  const buf from_tg = eth_ip(ipv4(tg_ip(), client_ip(), 17, buf(100, 1), second));
  h.from_client({to_other, to_tg});
  CHECK(drain(h.inet()) == std::vector<buf>{to_other});
  h.from_internet({from_tg});
  CHECK(drain(h.sub()).empty());
  CHECK(h.count(engine_event::fragments_passed) == 1);
  CHECK(h.count(engine_event::dropped_by_rule) == 2);
  h.check_accounting();
}

TEST_CASE("mirror mode: nothing forwarded, resets injected on the inject port") {
  harness h(1024, true);
  h.set_policy(policy_of({rule("tg", action::reset, {}, {"t.me"})}));
  tcp_conv c;
  c.server = other_ip();
  h.from_client({c.syn(), c.syn_ack(), c.ack(), c.data(client_hello("t.me"))});
  CHECK(drain(h.inet()).empty());
  CHECK(drain(h.sub()).empty());
  const auto injected = drain(h.inject());
  REQUIRE(injected.size() == 2);
  CHECK(packet::parse_frame(injected[0]).dst == c.client);
  CHECK(packet::parse_frame(injected[1]).dst == c.server);
  CHECK(h.count(engine_event::mirror_consumed) == 3);
  CHECK(h.count(engine_event::dropped_by_rule) == 1);
  h.check_accounting();
}

TEST_CASE("no response mbufs: the packet is still dropped, the failure counted") {
  harness h;
  h.w.reset();
  h.cfg.response_pool = nullptr;
  h.w = std::make_unique<engine::worker>(h.cfg, h.shared);
  h.set_policy(policy_of({rule("tg", action::reset, {"149.154.160.0/20"})}));
  tcp_conv c;
  h.from_client({c.syn()});
  CHECK(drain(h.inet()).empty());
  CHECK(drain(h.sub()).empty());
  CHECK(h.count(engine_event::response_failed) == 2);
  CHECK(h.count(engine_event::dropped_by_rule) == 1);
  h.check_accounting();
}

TEST_CASE("idle flows expire and release their entries") {
  harness h;
  h.w.reset();
  h.cfg.flow_idle_seconds = 0;
  h.w = std::make_unique<engine::worker>(h.cfg, h.shared);
  tcp_conv c;
  h.from_client({c.syn()});
  CHECK(h.w->flow_entries() == 1);
  h.from_client({});  // a later burst ages the table
  CHECK(h.w->flow_entries() == 0);
  CHECK(h.count(engine_event::flows_expired) == 1);
  h.check_accounting();
}

TEST_CASE("aging walks a large sparse table in bounded steps and finds every idle flow") {
  // 300 flows in a table of 65,536: each aging step examines at most 8 held entries and 1,024
  // positions, so one sweep takes about 64 steps plus 300 / 8, and every flow goes.
  harness h(1u << 16);
  h.w.reset();
  h.cfg.flow_idle_seconds = 0;
  h.w = std::make_unique<engine::worker>(h.cfg, h.shared);
  for (std::uint16_t i = 0; i < 300; ++i) {
    tcp_conv c;
    c.cport = static_cast<std::uint16_t>(10000 + i);
    h.from_client({c.syn()});
  }
  const std::uint64_t created = h.count(engine_event::flows_created);
  CHECK(created == 300);
  int steps = 0;
  while (h.w->flow_entries() != 0 && steps < 1000) {
    const std::uint64_t before = h.count(engine_event::flows_expired);
    h.from_client({});
    CHECK(h.count(engine_event::flows_expired) - before <= 8);
    ++steps;
  }
  CHECK(h.w->flow_entries() == 0);
  CHECK(h.count(engine_event::flows_expired) == created);
  CHECK(steps <= 64 + 300 / 8 + 2);
  // Expired positions are free again: the same flows come back as new entries.
  tcp_conv c;
  c.cport = 10000;
  h.from_client({c.syn()});
  CHECK(h.w->flow_entries() == 1);
  CHECK(h.count(engine_event::flows_created) == created + 1);
  h.check_accounting();
}
