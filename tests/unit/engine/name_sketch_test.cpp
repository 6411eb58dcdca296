// The impact sketch: Space-Saving counts per rule, exactness below K, heavy hitters under a flood
// of distinct names with no allocation, name normalisation and truncation, the merge across
// workers and the export format.

#include "dataplane/engine/name_sketch.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

// Counts every global operator new in this binary, so a test can assert that a loop allocates
// nothing. Forwarding to malloc/free keeps ASan's checks.
namespace {
std::atomic<std::uint64_t> g_allocations{0};
}
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// GCC sees free() of what its own operator new returned; here both are ours and use malloc.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

using namespace sluice::engine;

namespace {

const rule_sketch* find_rule(const sketch_set& s, std::uint32_t index) {
  return s.slots[index].in_use ? &s.slots[index].sketch : nullptr;
}

const sketch_entry* find_name(const rule_sketch& r, std::string_view name) {
  for (std::uint32_t i = 0; i < r.used; ++i) {
    if (r.entries[i].name.view() == name) return &r.entries[i];
  }
  return nullptr;
}

}  // namespace

TEST_CASE("name normalisation: case, trailing dot, unprintable bytes, truncation keeps the end") {
  struct row {
    const char* description;
    std::string input;
    std::string exported;
    bool truncated;
  };
  const std::string long_tail(64, 'a');
  const std::vector<row> rows{
      {"plain", "telegram.org", "telegram.org", false},
      {"upper case folds", "TeleGram.ORG", "telegram.org", false},
      {"one trailing dot dropped", "t.me.", "t.me", false},
      {"control and non-ASCII bytes become ?", std::string("a\x01\xc3\xa9.b"), "a???.b", false},
      {"exactly 64 bytes kept whole", long_tail, long_tail, false},
      {"65 bytes keep the last 64, marked", "x" + long_tail, "..." + long_tail, true},
      {"long subdomain keeps the registrable end", std::string(200, 'z') + ".telegram.org",
       "..." + std::string(64 - 13, 'z') + ".telegram.org", true},
  };
  for (const row& r : rows) {
    CAPTURE(r.description);
    const sketch_name n = normalise_name(r.input);
    CHECK(n.exported() == r.exported);
    CHECK(n.truncated == r.truncated);
  }
  // Deterministic: two long names with the same last 64 bytes are one name; a short name equal
  // to a truncated one's bytes is not.
  CHECK(normalise_name("a" + long_tail).same(normalise_name("b" + long_tail)));
  CHECK_FALSE(normalise_name(long_tail).same(normalise_name("b" + long_tail)));
}

TEST_CASE("space-saving: exact counts while distinct names <= K") {
  rule_sketch r;
  std::map<std::string, std::uint64_t> truth;
  std::mt19937 rng(7);
  for (int i = 0; i < 10000; ++i) {
    const std::string name = "n" + std::to_string(rng() % sketch_top_k) + ".example";
    r.add_name(name);
    ++truth[name];
  }
  for (int i = 0; i < 17; ++i) r.add_unnamed();
  CHECK(r.flows == 10017);
  CHECK(r.unnamed == 17);
  CHECK(r.used == truth.size());
  for (const auto& [name, n] : truth) {
    CAPTURE(name);
    const sketch_entry* e = find_name(r, name);
    REQUIRE(e != nullptr);
    CHECK(e->count == n);
    CHECK(e->error == 0);
  }
}

TEST_CASE("space-saving: one heavy name at 5% survives 1,000,000 distinct names, no allocation") {
  // 1.5 MB: on the heap like a worker's, not on the test's stack.
  auto owned = std::make_unique<sketch_set>();
  sketch_set& s = *owned;
  const std::size_t size_before = sizeof(s);
  rule_sketch* r = s.slot_for(3, "tg", "D-1");
  REQUIRE(r != nullptr);

  constexpr std::uint64_t distinct = 1'000'000;
  constexpr std::uint64_t heavy = 52'632;  // 5% of the 1,052,632 flows
  std::mt19937_64 rng(2026);
  std::uint64_t heavy_sent = 0;
  std::uint64_t distinct_sent = 0;
  char buf[48];
  const std::uint64_t allocations_before = g_allocations.load();
  while (heavy_sent + distinct_sent < distinct + heavy) {
    const bool pick_heavy =
        heavy_sent < heavy && (distinct_sent == distinct || rng() % 19 == 0);
    if (pick_heavy) {
      r->add_name("Telegram.org");
      ++heavy_sent;
    } else {
      const int len = std::snprintf(buf, sizeof buf, "%016llx.example.net",
                                    static_cast<unsigned long long>(rng()));
      r->add_name(std::string_view(buf, static_cast<std::size_t>(len)));
      ++distinct_sent;
    }
  }
  CHECK(g_allocations.load() == allocations_before);
  CHECK(sizeof(s) == size_before);
  CHECK(r->flows == distinct + heavy);
  CHECK(r->used == sketch_top_k);

  const sketch_entry* e = find_name(*r, "telegram.org");
  REQUIRE(e != nullptr);
  // Space-Saving bounds: true count in [count - error, count].
  CHECK(e->count >= heavy);
  CHECK(e->count - e->error <= heavy);
  // And it is the top entry by count.
  for (std::uint32_t i = 0; i < r->used; ++i) CHECK(r->entries[i].count <= e->count);

  // The export keeps it first among K names.
  impact_merger m;
  m.add(s);
  const impact_window w = m.finish(100, 130, 9);
  REQUIRE(w.rules.size() == 1);
  REQUIRE(w.rules[0].names.size() == sketch_top_k);
  CHECK(w.rules[0].names[0].name == "telegram.org");
}

TEST_CASE("sketch_set: pool bound, overflow, clear touches only what was used") {
  auto s = std::make_unique<sketch_set>();
  CHECK(s->slot_for(sketch_rule_slots - 1, "last", "") != nullptr);
  CHECK(s->slot_for(sketch_rule_slots, "beyond", "") == nullptr);
  CHECK(s->slot_for(0, std::string(sketch_id_cap + 1, 'r'), "") == nullptr);
  CHECK(s->overflow_flows == 2);
  CHECK(s->touched_n == 1);
  s->slot_for(sketch_rule_slots - 1, "last", "")->add_unnamed();
  s->clear();
  CHECK(s->empty());
  CHECK(s->overflow_flows == 0);
  CHECK(find_rule(*s, sketch_rule_slots - 1) == nullptr);
}

TEST_CASE("sketch_set: a policy swap keeps slots whose index still names the same rule") {
  auto s = std::make_unique<sketch_set>();
  s->generation = 1;
  s->slot_for(0, "keep", "D")->add_name("a.example");
  rule_sketch* gone = s->slot_for(1, "moved", "D");
  gone->add_name("b.example");
  gone->add_unnamed();
  // New policy: index 0 is still "keep", index 1 is now "other", index 2 does not exist.
  s->slot_for(2, "removed", "D")->add_unnamed();
  const std::vector<std::string> ids{"keep", "other"};
  s->retag(2, [&](std::uint32_t i) { return i < ids.size() ? std::string_view(ids[i]) : ""; });
  CHECK(s->generation == 2);
  CHECK(s->swap_dropped_flows == 3);
  REQUIRE(find_rule(*s, 0) != nullptr);
  CHECK(find_rule(*s, 0)->flows == 1);
  CHECK(find_rule(*s, 1) == nullptr);
  CHECK(find_rule(*s, 2) == nullptr);
}

TEST_CASE("merge across workers: counts sum by rule id, bounds hold for names a full sketch lacks") {
  auto a = std::make_unique<sketch_set>();
  auto b = std::make_unique<sketch_set>();
  // Worker a: rule "tg" at index 0; worker b under another policy with "tg" at index 5.
  for (int i = 0; i < 30; ++i) a->slot_for(0, "tg", "D-1")->add_name("telegram.org");
  for (int i = 0; i < 4; ++i) a->slot_for(0, "tg", "D-1")->add_unnamed();
  for (int i = 0; i < 10; ++i) b->slot_for(5, "tg", "D-1")->add_name("drive.example.com");
  for (int i = 0; i < 5; ++i) b->slot_for(5, "tg", "D-1")->add_name("telegram.org");
  b->slot_for(5, "tg", "D-1")->add_unnamed();
  CHECK(a->slot_for(1, "idle", "D-2") != nullptr);  // touched, never counted: not exported
  impact_merger m;
  m.add(*a);
  m.add(*b);
  const impact_window w = m.finish(1000, 1030, 7);
  REQUIRE(w.rules.size() == 1);
  const impact_rule& r = w.rules[0];
  CHECK(r.rule == "tg");
  CHECK(r.directive == "D-1");
  CHECK(r.flows == 50);
  CHECK(r.unnamed == 5);
  REQUIRE(r.names.size() == 2);
  CHECK(r.names[0].name == "telegram.org");
  CHECK(r.names[0].flows == 35);
  CHECK(r.names[0].error == 0);
  CHECK(r.names[1].name == "drive.example.com");
  CHECK(r.names[1].flows == 10);

  // A full sketch without the name adds its minimum to the name's upper bound and error.
  auto full = std::make_unique<sketch_set>();
  rule_sketch* f = full->slot_for(0, "tg", "D-1");
  for (std::uint32_t i = 0; i < sketch_top_k; ++i) {
    for (int k = 0; k < 3; ++k) f->add_name("f" + std::to_string(i) + ".example");
  }
  impact_merger m2;
  m2.add(*a);
  m2.add(*full);
  const impact_window w2 = m2.finish(0, 1, 1);
  REQUIRE(w2.rules.size() == 1);
  CHECK(w2.rules[0].names[0].name == "telegram.org");
  CHECK(w2.rules[0].names[0].flows == 33);
  CHECK(w2.rules[0].names[0].error == 3);
  CHECK(w2.rules[0].names.size() == sketch_top_k);
}

TEST_CASE("impact_json: the controller's format, other = F - U - named, empty when no flows") {
  impact_window w;
  w.window_start = 1796000000;
  w.window_end = 1796000030;
  w.revision = 12;
  CHECK(impact_json(w).empty());
  w.rules.push_back({"tg", "MINCOM-1", 50, 5, {{"telegram.org", 30, 0}, {"t.me", 10, 2}}});
  w.rules.push_back({"mon", "", 3, 3, {}});
  const nlohmann::json j = nlohmann::json::parse(impact_json(w));
  const nlohmann::json expected = nlohmann::json::parse(R"({
    "window_start": 1796000000, "window_end": 1796000030, "revision": 12,
    "rules": [
      {"rule": "tg", "directive": "MINCOM-1", "flows": 50, "unnamed": 5,
       "names": [{"name": "telegram.org", "flows": 30, "error": 0},
                 {"name": "t.me", "flows": 10, "error": 2}],
       "other": 5},
      {"rule": "mon", "directive": "", "flows": 3, "unnamed": 3, "names": [], "other": 0}
    ]})");
  CHECK(j == expected);
  // Over-estimated names never make `other` negative.
  w.rules = {{"tg", "", 10, 2, {{"a.example", 9, 3}}}};
  CHECK(nlohmann::json::parse(impact_json(w))["rules"][0]["other"] == 0);
}
