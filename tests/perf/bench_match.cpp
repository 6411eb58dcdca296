// Matching benchmarks: domain-set build and lookup at 10k / 100k / 1M rules, prefix-set build and
// lookup at 100k / 1M IPv4 and 100k IPv6 prefixes, and a whole-policy compile with its phases.
// Prints numbers; never fails on time. Lookup figures are throughput over a shuffled mix of hits
// and misses (independent lookups, so the CPU may overlap them), in ns and TSC cycles per lookup.
// DPDK memory here is --no-huge (4 KiB pages): prefix lookups pay TLB misses that hugepages
// remove in production.
#include <rte_eal.h>
#include <rte_errno.h>
#include <x86intrin.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/match/domain_name.hpp"
#include "dataplane/match/domain_set.hpp"
#include "dataplane/match/offline_eal.hpp"
#include "dataplane/match/policy.hpp"
#include "dataplane/match/prefix_set.hpp"

using namespace sluice::match;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// Pronounceable labels of 3..12 characters, sometimes with digits or a hyphen, under a
// realistic spread of TLDs, 2..4 labels deep.
class name_generator {
 public:
  explicit name_generator(std::uint64_t seed) : rng_(seed) {}
  std::string label() {
    static constexpr char cons[] = "bcdfghjklmnprstvwxz";
    static constexpr char vow[] = "aeiouy";
    const int len = 3 + static_cast<int>(rng_() % 10);
    std::string s;
    for (int i = 0; i < len; ++i) {
      s.push_back(i % 2 ? vow[rng_() % 6] : cons[rng_() % 19]);
    }
    if (rng_() % 8 == 0) s += std::to_string(rng_() % 100);
    if (rng_() % 16 == 0) s.insert(s.size() / 2, "-");
    return s;
  }
  std::string name() {
    static constexpr const char* tlds[] = {"com", "org", "net", "ru", "de", "io", "me",
                                           "co.uk", "com.br", "info", "xyz", "app"};
    std::string s = label();
    if (rng_() % 3 == 0) s = label() + "." + s;
    return s + "." + tlds[rng_() % std::size(tlds)];
  }
  std::uint64_t operator()() { return rng_(); }

 private:
  std::mt19937_64 rng_;
};

struct query_set {
  std::string arena;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> spans;  // offset, length
  void add(const std::string& s) {
    spans.emplace_back(static_cast<std::uint32_t>(arena.size()), static_cast<std::uint32_t>(s.size()));
    arena += s;
  }
  std::string_view at(std::size_t i) const {
    return {arena.data() + spans[i].first, spans[i].second};
  }
};

void bench_domains(std::size_t n) {
  name_generator gen(n);
  std::vector<domain_rule> rules;
  rules.reserve(n);
  std::vector<std::string> texts;
  texts.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const bool pattern = gen() % 10 < 3;  // 30 % "*." patterns
    std::string name = gen.name();
    texts.push_back(pattern ? "*." + name : name);
    rules.push_back({std::move(name), pattern, static_cast<std::uint32_t>(i % 4096)});
  }

  auto t0 = clock_type::now();
  std::size_t normalized = 0;
  for (const auto& t : texts) normalized += normalize_rule_name(t).error == name_error::ok;
  const double t_norm = seconds_since(t0);

  t0 = clock_type::now();
  const domain_set set(rules, [](std::uint32_t a, std::uint32_t) { return a; });
  const double t_build = seconds_since(t0);

  // Queries: 25 % exact hits, 25 % names under patterns (2 extra labels), 25 % unrelated
  // misses, 25 % near misses (prefix glued onto a rule name: "x" + "telegram.org").
  query_set q;
  const std::size_t nq = 2'000'000;
  for (std::size_t i = 0; i < nq; ++i) {
    const domain_rule& r = rules[gen() % rules.size()];
    switch (i % 4) {
      case 0: q.add(r.subdomain ? "www." + r.name : r.name); break;
      case 1: q.add(gen.label() + ".cdn." + r.name); break;
      case 2: q.add(gen.name()); break;
      default: q.add("x" + r.name); break;
    }
  }
  // Queries are already in random order; walking them in arena order keeps the name bytes
  // streaming through the cache like a packet just received, so the figure is the set's cost.

  std::uint64_t found = 0, sum = 0;
  for (std::size_t i = 0; i < nq / 4; ++i) found += set.find(q.at(i)).found;  // warm-up
  found = 0;
  t0 = clock_type::now();
  const std::uint64_t c0 = __rdtsc();
  for (std::size_t i = 0; i < nq; ++i) {
    const auto m = set.find(q.at(i));
    found += m.found;
    sum += m.value;
  }
  const std::uint64_t cycles = __rdtsc() - c0;
  const double t_lookup = seconds_since(t0);

  // The same queries in bursts of 32 through find_bulk; the result must be the same.
  std::uint64_t found_bulk = 0, sum_bulk = 0;
  std::array<std::string_view, 32> names;
  std::array<domain_match, 32> out;
  t0 = clock_type::now();
  const std::uint64_t c1 = __rdtsc();
  for (std::size_t i = 0; i + 32 <= nq; i += 32) {
    for (std::size_t k = 0; k < 32; ++k) names[k] = q.at(i + k);
    set.find_bulk(names.data(), out.data(), 32);
    for (const auto& m : out) {
      found_bulk += m.found;
      sum_bulk += m.value;
    }
  }
  const std::uint64_t cycles_bulk = __rdtsc() - c1;
  const double t_bulk = seconds_since(t0);
  std::printf(
      "domain_set %8zu rules: entries %zu, %6.1f MiB | normalize %7.1f ms | build %7.1f ms | "
      "lookup %6.1f ns %6.1f cycles | bulk(32) %6.1f ns %6.1f cycles (hit rate %.2f, checksum "
      "%llu, ok %zu)%s\n",
      n, set.size(), set.memory_bytes() / 1048576.0, t_norm * 1e3, t_build * 1e3,
      t_lookup * 1e9 / nq, static_cast<double>(cycles) / nq, t_bulk * 1e9 / nq,
      static_cast<double>(cycles_bulk) / nq, static_cast<double>(found) / nq,
      static_cast<unsigned long long>(sum % 1000), normalized,
      found_bulk == found && sum_bulk == sum ? "" : " BULK MISMATCH");
  if (found_bulk != found || sum_bulk != sum) std::exit(1);
}

// Whole-policy compile of n names in 2 rules (30 % "*." patterns), run `runs` times on the same
// spec; prints each run and the min / median. The phases are timed outside compile_policy, the
// way it runs them: normalise (normalize_rule_name on every name, as validation does), the
// ruleset SHA-256, and the domain_set build from the distinct normalised names; "group" is the
// rest of the total (collecting, de-duplicating and grouping names, covering patterns, interning
// match groups), derived as total - normalise - sha256 - domain_set.
void bench_policy_compile(std::size_t n, int runs) {
  name_generator gen(99);
  policy_spec spec;
  rule_spec mon;
  mon.id = "monitor-all";
  mon.act = action::monitor;
  rule_spec blk;
  blk.id = "block";
  blk.act = action::reset;
  for (std::size_t i = 0; i < n; ++i) {
    std::string name = gen.name();
    (i % 2 ? mon : blk).domains.push_back(gen() % 10 < 3 ? "*." + name : name);
  }
  spec.rules = {mon, blk};

  // The distinct (name, kind) pairs compile_policy hands to domain_set, prepared untimed.
  std::string arena;
  std::vector<std::pair<std::size_t, std::size_t>> spans;
  std::vector<bool> kinds;
  for (const auto& r : spec.rules) {
    for (const auto& d : r.domains) {
      const rule_name name = normalize_rule_name(d);
      spans.emplace_back(arena.size(), name.name.size());
      kinds.push_back(name.subdomain);
      arena += name.name;
    }
  }
  std::vector<domain_rule_ref> distinct;
  {
    // Sorted, not a node-based set: freeing a million nodes would leave malloc a consolidation
    // that the first timed phase would pay.
    auto key = [&](std::size_t i) {
      return std::pair(std::string_view(arena.data() + spans[i].first, spans[i].second),
                       static_cast<bool>(kinds[i]));
    };
    std::vector<std::uint32_t> order(spans.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::uint32_t>(i);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::uint32_t a, std::uint32_t b) { return key(a) < key(b); });
    std::vector<bool> first(spans.size(), false);
    for (std::size_t k = 0; k < order.size(); ++k) {
      first[order[k]] = k == 0 || key(order[k]) != key(order[k - 1]);
    }
    for (std::size_t i = 0; i < spans.size(); ++i) {
      if (!first[i]) continue;
      distinct.push_back({key(i).first, key(i).second, static_cast<std::uint32_t>(i % 3)});
    }
  }

  std::vector<double> totals;
  for (int run = 0; run < runs; ++run) {
    auto t0 = clock_type::now();
    std::size_t ok = 0;
    for (const auto& r : spec.rules) {
      for (const auto& d : r.domains) ok += normalize_rule_name(d).error == name_error::ok;
    }
    const double t_norm = seconds_since(t0);

    t0 = clock_type::now();
    const std::string sha = ruleset_sha256(spec);
    const double t_sha = seconds_since(t0);

    t0 = clock_type::now();
    const domain_set set(distinct);
    const double t_set = seconds_since(t0);

    t0 = clock_type::now();
    const auto res = compile_policy(spec);
    const double t_total = seconds_since(t0);
    totals.push_back(t_total);

    std::printf(
        "compile_policy %zu domains in 2 rules: %s in %.1f ms (%u groups, %zu names) | "
        "normalise %.1f ms | sha256 %.1f ms | domain_set %.1f ms (%zu entries) | "
        "group+rest %.1f ms (derived)%s\n",
        n, res ? "ok" : res.error.message.c_str(), t_total * 1e3,
        res ? res.policy->group_count() : 0u, ok, t_norm * 1e3, t_sha * 1e3, t_set * 1e3,
        set.size(), (t_total - t_norm - t_sha - t_set) * 1e3,
        res && res.policy->ruleset_sha256() == sha ? "" : " SHA MISMATCH");
  }
  std::sort(totals.begin(), totals.end());
  std::printf("compile_policy %zu domains: %d runs, min %.1f ms, median %.1f ms\n", n, runs,
              totals.front() * 1e3, totals[totals.size() / 2] * 1e3);
}

void bench_v4(std::size_t n) {
  std::mt19937_64 rng(n);
  std::vector<prefix_rule> rules;
  rules.reserve(n);
  std::vector<ip_prefix> seen;
  // Internet-like mix: 55 % /24, 35 % /16../23, 8 % /25../30, 2 % /32.
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned pick = rng() % 100;
    const unsigned len = pick < 55 ? 24 : pick < 90 ? 16 + rng() % 8 : pick < 98 ? 25 + rng() % 6 : 32;
    std::uint32_t a = static_cast<std::uint32_t>(rng());
    a &= len == 0 ? 0 : ~std::uint32_t{0} << (32 - len);
    ip_prefix p;
    p.version = 4;
    p.length = static_cast<std::uint8_t>(len);
    p.addr[0] = a >> 24;
    p.addr[1] = (a >> 16) & 255;
    p.addr[2] = (a >> 8) & 255;
    p.addr[3] = a & 255;
    rules.push_back({p, static_cast<std::uint32_t>(i % 1000)});
  }
  std::sort(rules.begin(), rules.end(),
            [](const prefix_rule& x, const prefix_rule& y) { return x.prefix < y.prefix; });
  rules.erase(std::unique(rules.begin(), rules.end(),
                          [](const prefix_rule& x, const prefix_rule& y) { return x.prefix == y.prefix; }),
              rules.end());
  auto t0 = clock_type::now();
  const prefix_set set(rules);
  const double t_build = seconds_since(t0);

  const std::size_t nq = 4'000'000;
  std::vector<std::uint32_t> ips(nq);
  for (std::size_t i = 0; i < nq; ++i) {
    if (i % 2) {  // inside a rule
      const auto& r = rules[rng() % rules.size()];
      ips[i] = r.prefix.v4() | (static_cast<std::uint32_t>(rng()) & (r.prefix.length == 32 ? 0u : ~0u >> r.prefix.length));
    } else {
      ips[i] = static_cast<std::uint32_t>(rng());
    }
  }
  std::uint64_t found = 0;
  t0 = clock_type::now();
  std::uint64_t c0 = __rdtsc();
  for (std::size_t i = 0; i < nq; ++i) found += set.lookup_v4(ips[i]).has_value();
  std::uint64_t cycles = __rdtsc() - c0;
  const double t_single = seconds_since(t0);
  std::vector<std::uint32_t> out(32);
  std::uint64_t found_bulk = 0;
  t0 = clock_type::now();
  const std::uint64_t c1 = __rdtsc();
  for (std::size_t i = 0; i + 32 <= nq; i += 32) {
    set.lookup_v4_bulk(ips.data() + i, out.data(), 32);
    for (auto v : out) found_bulk += v != prefix_set::none;
  }
  const std::uint64_t cycles_bulk = __rdtsc() - c1;
  const double t_bulk = seconds_since(t0);
  std::printf(
      "prefix_set v4 %8zu prefixes: build %7.1f ms | lookup %5.1f ns %5.1f cycles | bulk(32) "
      "%5.1f ns %5.1f cycles (hit rate %.2f/%.2f)\n",
      rules.size(), t_build * 1e3, t_single * 1e9 / nq, static_cast<double>(cycles) / nq,
      t_bulk * 1e9 / nq, static_cast<double>(cycles_bulk) / nq, static_cast<double>(found) / nq,
      static_cast<double>(found_bulk) / nq);
}

void bench_v6(std::size_t n) {
  std::mt19937_64 rng(n + 6);
  std::vector<prefix_rule> rules;
  // Mostly /48 and /32../44 inside 2000::/3, a few /56 and /64.
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned pick = rng() % 100;
    const unsigned len = pick < 60 ? 48 : pick < 90 ? 32 + 4 * (rng() % 4) : pick < 97 ? 56 : 64;
    ip_prefix p;
    p.version = 6;
    p.length = static_cast<std::uint8_t>(len);
    const std::uint64_t hi = (rng() & 0x1fffffffffffffffull) | 0x2000000000000000ull;
    for (int b = 0; b < 8; ++b) p.addr[b] = static_cast<std::uint8_t>(hi >> (56 - 8 * b));
    for (unsigned bit = len; bit < 64; ++bit) p.addr[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
    rules.push_back({p, static_cast<std::uint32_t>(i % 1000)});
  }
  std::sort(rules.begin(), rules.end(),
            [](const prefix_rule& x, const prefix_rule& y) { return x.prefix < y.prefix; });
  rules.erase(std::unique(rules.begin(), rules.end(),
                          [](const prefix_rule& x, const prefix_rule& y) { return x.prefix == y.prefix; }),
              rules.end());
  auto t0 = clock_type::now();
  const prefix_set set(rules);
  const double t_build = seconds_since(t0);
  const std::size_t nq = 2'000'000;
  std::vector<std::array<std::uint8_t, 16>> ips(nq);
  for (std::size_t i = 0; i < nq; ++i) {
    const std::uint64_t lo = rng();
    if (i % 2) {
      const auto& r = rules[rng() % rules.size()];
      ips[i] = r.prefix.addr;
      for (int b = 8; b < 16; ++b) ips[i][b] = static_cast<std::uint8_t>(lo >> (8 * (b - 8)));
    } else {
      const std::uint64_t hi = rng();
      for (int b = 0; b < 8; ++b) ips[i][b] = static_cast<std::uint8_t>(hi >> (8 * b));
      for (int b = 8; b < 16; ++b) ips[i][b] = static_cast<std::uint8_t>(lo >> (8 * (b - 8)));
    }
  }
  std::uint64_t found = 0;
  t0 = clock_type::now();
  const std::uint64_t c0 = __rdtsc();
  for (std::size_t i = 0; i < nq; ++i) found += set.lookup_v6(ips[i].data()).has_value();
  const std::uint64_t cycles = __rdtsc() - c0;
  const double t_single = seconds_since(t0);
  std::vector<std::uint32_t> out(32);
  t0 = clock_type::now();
  const std::uint64_t c1 = __rdtsc();
  for (std::size_t i = 0; i + 32 <= nq; i += 32) {
    set.lookup_v6_bulk(reinterpret_cast<const std::uint8_t(*)[16]>(ips.data() + i), out.data(), 32);
    found += out[0] != prefix_set::none;
  }
  const std::uint64_t cycles_bulk = __rdtsc() - c1;
  const double t_bulk = seconds_since(t0);
  std::printf(
      "prefix_set v6 %8zu prefixes: build %7.1f ms | lookup %5.1f ns %5.1f cycles | bulk(32) "
      "%5.1f ns %5.1f cycles (checksum %llu)\n",
      rules.size(), t_build * 1e3, t_single * 1e9 / nq, static_cast<double>(cycles) / nq,
      t_bulk * 1e9 / nq, static_cast<double>(cycles_bulk) / nq,
      static_cast<unsigned long long>(found));
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string only = argc > 1 ? argv[1] : "";
  const auto t_start = clock_type::now();
  std::string eal_error;
  // BENCH_HUGEPAGES=1: the EAL's heap (rte_fib's tables) on reserved 2 MiB pages.
  const bool huge = std::getenv("BENCH_HUGEPAGES") != nullptr;
  if (!sluice::match::init_offline_eal("bench_match", 4096, eal_error, huge)) {
    std::fprintf(stderr, "rte_eal_init: %s\n", eal_error.c_str());
    return 1;
  }
  std::printf("EAL up in %.1f s (%s)\n", seconds_since(t_start),
              huge ? "2 MiB hugepages" : "--no-huge: 4 KiB pages");
  if (only.empty() || only == "domains") {
    for (std::size_t n : {10'000u, 100'000u, 1'000'000u}) bench_domains(n);
  }
  if (only.empty() || only == "policy") bench_policy_compile(1'000'000, 5);
  if (only.empty() || only == "v4") {
    for (std::size_t n : {100'000u, 1'000'000u}) bench_v4(n);
  }
  if (only.empty() || only == "v6") bench_v6(100'000);
  rte_eal_cleanup();
  return 0;
}
