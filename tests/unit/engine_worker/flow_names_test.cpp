// The names a flow revealed and which decides it (dataplane/engine/flow_names.hpp): the packed
// name slot, the strongest of a packet's names, and what a later packet's names do to a flow —
// never a downgrade. End to end through the worker: a TLS flow re-decided from its kept name on a
// policy swap, and (once the classifier reports both names) a proxy's CONNECT then ClientHello.
#include "dataplane/engine/flow_names.hpp"

#include <doctest/doctest.h>

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "tests/unit/engine_worker/harness.hpp"

using namespace sluice;
using namespace sluice::test;
using engine::apply_names;
using engine::engine_event;
using engine::name_list;
using engine::no_group;
using match::action;

namespace {

std::vector<std::string> all(const name_list& l) {
  std::vector<std::string> out;
  for (std::string_view n : l) out.emplace_back(n);
  return out;
}

struct slot {
  std::array<char, name_list::slot_bytes> bytes{};
  std::uint16_t used = 0;
  name_list list() { return name_list(bytes.data(), used); }
};

std::unique_ptr<const match::compiled_policy> compiled(const match::policy_spec& spec) {
  auto r = match::compile_policy(spec);
  REQUIRE_MESSAGE(r, r.error.message);
  return std::move(r.policy);
}

}  // namespace

TEST_CASE("name_list: packed names, the deciding one first, what does not fit dropped") {
  slot s;
  name_list l = s.list();
  CHECK(l.empty());
  CHECK(l.first().empty());
  l.add("allowed.example", false);
  l.add("t.me", false);
  l.add("t.me", false);  // held already
  CHECK(all(l) == std::vector<std::string>{"allowed.example", "t.me"});
  CHECK(s.used == 1 + 15 + 1 + 4);
  l.add("t.me", true);  // moved to the front
  CHECK(all(l) == std::vector<std::string>{"t.me", "allowed.example"});
  CHECK(l.nth(1) == "allowed.example");
  l.add("new.example", true);
  CHECK(all(l) == std::vector<std::string>{"new.example", "t.me", "allowed.example"});
  CHECK(l.size() == 3);

  const std::string big(230, 'a');  // 33 bytes held + 231 > 256
  l.add(big, false);                // does not fit behind the others: dropped
  CHECK(l.size() == 3);
  l.add(big, true);  // deciding: always kept, the others follow while they fit
  CHECK(l.first() == big);
  CHECK(all(l) == std::vector<std::string>{big, "new.example", "t.me"});  // 231 + 12 + 5 (+ 16)
  const std::string huge(300, 'b');
  l.add(huge, true);  // cut to the slot
  CHECK(l.first().size() == name_list::max_name);
  CHECK(l.size() == 1);
  CHECK(s.used == name_list::slot_bytes);
  l.clear();
  CHECK(l.empty());
}

TEST_CASE("pick_strongest: enforcing beats monitor, drop beats reset, ties keep the first") {
  auto p = compiled(policy_of({rule("watch", action::monitor, {}, {"watched.example"}),
                               rule("rst", action::reset, {}, {"reset.example"}),
                               rule("drop", action::drop, {}, {"drop.example"}),
                               rule("drop2", action::drop, {}, {"drop2.example"})}));
  struct row {
    std::vector<std::string_view> names;
    int index;
    std::uint32_t rule;
  };
  const row rows[] = {
      {{"other.example"}, -1, match::verdict::no_rule},
      {{"other.example", "watched.example"}, 1, match::verdict::no_rule},
      {{"watched.example", "reset.example"}, 1, 1},
      {{"reset.example", "drop.example", "watched.example"}, 1, 2},
      {{"drop.example", "reset.example"}, 0, 2},
      {{"drop2.example", "drop.example"}, 1, 2},  // equal actions: the rule listed first
      {{"drop.example", "drop2.example"}, 0, 2},
  };
  for (const row& r : rows) {
    CAPTURE(r.names.size());
    CAPTURE(r.index);
    const auto pick = engine::pick_strongest(*p, std::nullopt, r.names, 0);
    CHECK(pick.index == r.index);
    CHECK(pick.v.rule == r.rule);
  }
}

TEST_CASE("apply_names: a flow's later names never downgrade it") {
  auto p = compiled(policy_of({rule("watch", action::monitor, {}, {"watched.example"}),
                               rule("rst", action::reset, {}, {"reset.example"}),
                               rule("drop", action::drop, {}, {"t.me"})}));
  struct row {
    const char* desc;
    std::vector<std::string_view> first;   // names of the first naming packet
    std::vector<std::string_view> second;  // ... and of a later one
    std::uint32_t rule;                    // the flow's verdict after both
    std::vector<std::string> held;         // its names, deciding first
  };
  const row rows[] = {
      {"allowed, then blocked", {"allowed.example"}, {"t.me"}, 2, {"t.me", "allowed.example"}},
      {"blocked, then allowed", {"t.me"}, {"allowed.example"}, 2, {"t.me", "allowed.example"}},
      {"reset, then drop", {"reset.example"}, {"t.me"}, 2, {"t.me", "reset.example"}},
      {"drop, then reset", {"t.me"}, {"reset.example"}, 2, {"t.me", "reset.example"}},
      {"monitor, then reset",
       {"watched.example"},
       {"reset.example"},
       1,
       {"reset.example", "watched.example"}},
      {"reset, then monitor",
       {"reset.example"},
       {"watched.example"},
       1,
       {"reset.example", "watched.example"}},
      {"neither, then neither",
       {"a.example"},
       {"b.example"},
       match::verdict::no_rule,
       {"a.example", "b.example"}},
      {"two at once, then one",
       {"allowed.example", "reset.example"},
       {"a.example"},
       1,
       {"reset.example", "allowed.example", "a.example"}},
  };
  for (const row& r : rows) {
    CAPTURE(r.desc);
    slot s;
    name_list l = s.list();
    std::uint32_t group = no_group;
    const auto a = apply_names(p.get(), std::nullopt, group, l, r.first, false, 0);
    CHECK_FALSE(a.judged);
    CHECK_FALSE(a.pinned);
    const auto b = apply_names(p.get(), std::nullopt, group, l, r.second, false, 0);
    CHECK(b.name_group == group);
    const auto g = group == no_group ? std::nullopt : std::optional<std::uint32_t>(group);
    CHECK(p->decide(std::nullopt, g, 0).rule == r.rule);
    CHECK(all(l) == r.held);
  }
}

TEST_CASE("apply_names: per-message flows pin on an enforcing name, monitors stay per message") {
  auto p = compiled(policy_of({rule("watch", action::monitor, {}, {"watched.example"}),
                               rule("rst", action::reset, {}, {"reset.example"}),
                               rule("drop", action::drop, {}, {"t.me"})}));
  slot s;
  name_list l = s.list();
  std::uint32_t group = no_group;
  const std::vector<std::string_view> watched{"watched.example"};
  const std::vector<std::string_view> reset{"reset.example"};
  const std::vector<std::string_view> drop{"t.me"};
  const std::vector<std::string_view> other{"other.example"};

  auto n = apply_names(p.get(), std::nullopt, group, l, watched, true, 0);
  CHECK(n.judged);  // per message: counted as a monitor hit
  CHECK(n.v.monitors == 1);
  CHECK_FALSE(n.pinned);
  CHECK(l.empty());
  n = apply_names(p.get(), std::nullopt, group, l, reset, true, 0);
  CHECK(n.judged);
  CHECK(n.pinned);
  CHECK(n.v.rule == 1);
  CHECK(all(l) == std::vector<std::string>{"reset.example"});
  n = apply_names(p.get(), std::nullopt, group, l, other, true, 0);
  CHECK_FALSE(n.judged);  // the pin decides
  CHECK(n.name_group == group);
  n = apply_names(p.get(), std::nullopt, group, l, watched, true, 0);
  CHECK_FALSE(n.judged);
  n = apply_names(p.get(), std::nullopt, group, l, drop, true, 0);
  CHECK(n.judged);  // a stronger name re-pins
  CHECK_FALSE(n.pinned);
  CHECK(n.v.rule == 2);
  n = apply_names(p.get(), std::nullopt, group, l, reset, true, 0);
  CHECK_FALSE(n.judged);  // weaker: kept, not deciding
  CHECK(p->decide(std::nullopt, group, 0).rule == 2);
  CHECK(all(l) == std::vector<std::string>{"t.me", "reset.example"});
  // No policy: nothing matches, names of other flows are kept for a later one.
  slot none;
  name_list nl = none.list();
  std::uint32_t ng = no_group;
  n = apply_names(nullptr, std::nullopt, ng, nl, drop, false, 0);
  CHECK(all(nl) == std::vector<std::string>{"t.me"});
  CHECK(ng == no_group);
}

TEST_CASE("a TLS flow's kept name is re-decided on a policy swap, both ways") {
  harness h;
  h.set_policy(policy_of({rule("x", action::drop, {}, {"example.net"})}, 1));
  tcp_conv c;
  c.server = other_ip();
  const std::vector<buf> open = {c.syn(), c.ack(), c.data(client_hello("t.me"))};
  h.from_client(open);
  CHECK(drain(h.inet()) == open);  // allowed under revision 1
  h.set_policy(policy_of({rule("tg", action::drop, {}, {"t.me"})}, 2));
  h.from_client({c.data(text("more"))});
  CHECK(drain(h.inet()).empty());
  h.set_policy(policy_of({rule("x", action::drop, {}, {"example.net"})}, 3));
  const buf later = c.data(text("later"));
  h.from_client({later});
  CHECK(drain(h.inet()) == std::vector<buf>{later});
  CHECK(h.count(engine_event::dropped_by_rule) == 1);
  h.check_accounting();
}

// The classifier reports a proxy's CONNECT target and the ClientHello tunnelled after it: the
// flow is stopped whichever name the rule names, and an allowed name in the other packet never
// lifts it.
TEST_CASE("CONNECT host:443 then the tunnelled ClientHello: a rule naming either stops the flow") {
  struct row {
    const char* connect_to;
    const char* sni;
  };
  const row rows[] = {{"t.me", "allowed.example"}, {"allowed.example", "t.me"}};
  for (const row& r : rows) {
    CAPTURE(r.connect_to);
    harness h;
    h.set_policy(policy_of({rule("tg", action::drop, {}, {"t.me"})}));
    tcp_conv c;
    c.server = other_ip();
    c.sport = 3128;
    h.from_client({c.syn()});
    h.from_internet({c.syn_ack()});
    h.from_client({c.ack()});
    drain(h.inet());
    drain(h.sub());
    std::string connect = "CONNECT ";
    connect += r.connect_to;
    connect += ":443 HTTP/1.1\r\nHost: ";
    connect += r.connect_to;
    connect += ":443\r\n\r\n";
    h.from_client({c.data(text(connect))});
    h.from_internet({c.server_data(text("HTTP/1.1 200 Connection established\r\n\r\n"))});
    h.from_client({c.data(client_hello(r.sni))});
    h.from_client({c.data(text("tunnelled bytes"))});
    drain(h.sub());
    const auto out = drain(h.inet());
    // The CONNECT passes when it names the allowed host; from the blocked name on, nothing.
    CHECK(out.size() == (std::string(r.connect_to) == "t.me" ? 0u : 1u));
    CHECK(h.count(engine_event::dropped_by_rule) ==
          (std::string(r.connect_to) == "t.me" ? 4u : 2u));
    h.check_accounting();
  }
}
