// What a flood of new flows leaves behind (issue 16; the live test is
// tests/integration/floods.py): a full table keeps the flows it holds and their verdicts, and
// half ClientHellos that never complete give their reassembly buffers back after
// cfg.reassembly_hold_ms instead of holding them until the flow's idle timeout.
#include <doctest/doctest.h>

#include <vector>

#include "tests/unit/engine_worker/harness.hpp"

using namespace sluice;
using namespace sluice::test;
using engine::engine_event;
using match::action;

namespace {

std::uint64_t give_ups(const harness& h, flow::give_up_reason r) {
  return h.w->counters().give_ups[static_cast<std::size_t>(r)];
}

void rebuild(harness& h) {
  h.w.reset();
  h.w = std::make_unique<engine::worker>(h.cfg, h.shared);
}

// The first `n` bytes of a ClientHello record (for `sni`) that is larger than `n`.
buf hello_head(std::string_view sni, std::size_t n) {
  const buf whole = client_hello(sni);
  REQUIRE(whole.size() > n);
  return slice(whole, 0, n);
}

}  // namespace

TEST_CASE("a full flow table keeps an established blocked flow blocked, new flows pass") {
  harness h(16);
  h.set_policy(policy_of({rule("tg", action::drop, {}, {"telegram.org"})}));
  tcp_conv blocked;
  blocked.server = other_ip();
  h.from_client({blocked.syn()});
  h.from_internet({blocked.syn_ack()});
  h.from_client({blocked.ack(), blocked.data(client_hello("telegram.org"))});
  CHECK(h.count(engine_event::dropped_by_rule) == 1);

  std::vector<buf> flood;
  for (std::uint16_t i = 0; i < 40; ++i) {
    tcp_conv c;
    c.client = v4(100, 64, 0, static_cast<std::uint8_t>(i));
    c.server = other_ip();
    flood.push_back(c.syn());
  }
  h.from_client(flood);
  CHECK(h.w->flow_entries() == 16);
  CHECK(h.count(engine_event::flow_table_full) == 40 - 15);
  drain(h.sub());
  CHECK(drain(h.inet()).size() == 2 + 40);  // the handshake's SYN and ACK, and the flood

  // A retransmission of the ClientHello, and the server's packets, still get the verdict.
  blocked.cseq -= static_cast<std::uint32_t>(client_hello("telegram.org").size());
  h.from_client({blocked.data(client_hello("telegram.org"))});
  h.from_internet({blocked.server_data(buf(10, 'x'))});
  CHECK(drain(h.inet()).empty());
  CHECK(drain(h.sub()).empty());
  CHECK(h.count(engine_event::dropped_by_rule) == 3);
  h.check_accounting();
}

TEST_CASE("half a ClientHello gives its reassembly buffer back after the hold time") {
  harness h;
  h.cfg.reassembly_buffers = 1;
  h.cfg.reassembly_hold_ms = 0;  // reclaimable from the next burst on
  rebuild(h);
  h.set_policy(policy_of({rule("tg", action::drop, {}, {"telegram.org"})}));

  tcp_conv stuck;
  stuck.cport = 41000;
  h.from_client({stuck.syn(), stuck.data(hello_head("flood.example.net", 100))});
  CHECK(h.w->reassembly_buffers_in_use() == 1);
  h.from_client({});  // the next burst's aging takes the buffer back
  CHECK(h.w->reassembly_buffers_in_use() == 0);
  CHECK(give_ups(h, flow::give_up_reason::held_too_long) == 1);
  CHECK(h.w->flow_entries() == 1);  // the flow stays, given up: its rest passes unread

  // The pool serves the next split ClientHello, which is read whole and dropped by name.
  tcp_conv real;
  real.cport = 41001;
  const buf hello = client_hello("telegram.org");
  h.from_client(
      {real.syn(), real.data(slice(hello, 0, 80)), real.data(slice(hello, 80, hello.size()))});
  CHECK(give_ups(h, flow::give_up_reason::pool_empty) == 0);
  CHECK(h.count(engine_event::dropped_by_rule) == 1);
  CHECK(h.rule_counter(0).flows == 1);
  h.check_accounting();
}

TEST_CASE("within the hold time a half ClientHello keeps its buffer; the pool's next flow gives up") {
  harness h;
  h.cfg.reassembly_buffers = 1;
  rebuild(h);  // default hold: 3 s
  h.set_policy(policy_of({rule("tg", action::drop, {}, {"telegram.org"})}));
  tcp_conv stuck;
  stuck.cport = 42000;
  h.from_client({stuck.syn(), stuck.data(hello_head("flood.example.net", 100))});
  h.from_client({});
  CHECK(h.w->reassembly_buffers_in_use() == 1);
  CHECK(give_ups(h, flow::give_up_reason::held_too_long) == 0);

  tcp_conv real;
  real.cport = 42001;
  const buf hello = client_hello("telegram.org");
  h.from_client({real.syn(), real.data(slice(hello, 0, 80))});
  CHECK(give_ups(h, flow::give_up_reason::pool_empty) == 1);  // fail open, counted
  h.check_accounting();
}

TEST_CASE("without pool pressure a ClientHello paused past the hold time is still read whole") {
  // Waiting between a hello's segments is not a way past a block: buffers are reclaimed only
  // while the pool is over three quarters in use.
  harness h;
  h.cfg.reassembly_buffers = 64;
  h.cfg.reassembly_hold_ms = 0;  // past the hold time from the next burst on
  rebuild(h);
  h.set_policy(policy_of({rule("tg", action::drop, {}, {"telegram.org"})}));
  tcp_conv slow;
  const buf hello = client_hello("telegram.org");
  h.from_client({slow.syn(), slow.data(slice(hello, 0, 80))});
  for (int i = 0; i < 4; ++i) h.from_client({});  // aging passes over it, no pressure
  CHECK(h.w->reassembly_buffers_in_use() == 1);
  h.from_client({slow.data(slice(hello, 80, hello.size()))});
  CHECK(give_ups(h, flow::give_up_reason::held_too_long) == 0);
  CHECK(h.count(engine_event::dropped_by_rule) == 1);
  CHECK(h.rule_counter(0).flows == 1);
  h.check_accounting();
}
