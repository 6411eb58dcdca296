// Sluice and nDPI side by side (issue 17): the same generated traffic mix (traffic_mix.hpp)
// replayed from memory through (a) Sluice's engine, one worker's process_burst as bench_engine
// drives it, with a compiled block list (config/policy.example.yaml's Telegram rule plus N
// generated domain rules and P generated prefixes), and (b) nDPI 4.2 doing the equivalent job
// (ndpi_side.hpp: its own flow table, dissection until a name, the same block list). Both on one
// pinned core, interleaved A/B runs, median of N. Reports Mpps per core, cycles per packet and the
// ratio, the mix's setup and established frames each timed apart, then the curves (concurrent
// flows; domain rules), cycles per established-flow packet, bytes of memory per flow and the
// host's memory floor (what a random cache line costs). Reports numbers; fails only when the
// figures are insane (a packet unaccounted for, nothing blocked, no name found, a ratio that is
// not a number), never on time.
//
//   bench_ndpi            the full run (README "Performance (engine, side by side with nDPI)")
//   bench_ndpi --smoke    seconds, tiny scale: the ctest perf_smoke
//
// Timing: only process_burst (Sluice) / process (nDPI) are inside the timed region. Frames are
// copied into mbufs (Sluice) or an arena of 2 KiB slots (nDPI) in chunks of 256 just before
// each chunk is timed, as a NIC would have written them. Each chunk is fed as bursts of up to 64
// frames split by direction (subscriber-side frames on one port, internet-side on the other),
// the cut every 64 frames of the schedule. A fresh worker / flow table per epoch (a pass over
// all flows); small flow counts repeat epochs until --min-packets.
//
// DPDK memory is --no-huge (4 KiB pages) unless --hugepages (2 MiB pages, reserved beforehand:
// echo N > /proc/sys/vm/nr_hugepages): on 4 KiB pages the flow table pays the TLB misses
// hugepages remove; nDPI's memory (malloc) is in 4 KiB pages either way, unless THP grants more.
#include <pcap/pcap.h>
#include <rte_bus_vdev.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <sched.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dataplane/engine/worker.hpp"
#include "dataplane/match/offline_eal.hpp"
#include "dataplane/match/policy.hpp"
#include "dataplane/match/policy_config.hpp"
#include "tests/perf/block_list.hpp"
#include "tests/perf/ndpi_side.hpp"
#include "tests/perf/traffic_mix.hpp"

using namespace sluice;
using perf::phase;
using perf::traffic_mix;

namespace {

constexpr std::uint32_t chunk = 256;  // frames written just before they are timed, as rx would
constexpr std::uint32_t window = 64;  // frames per pair of bursts (one per direction)

std::int64_t bench_now() { return 1'796'000'000; }  // 2026-12-01: inside the example's window

// The timed regions are measured in this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), converted
// to TSC cycles: on a shared machine the time the thread spends descheduled is not the engine's.
// The TSC (wall) figure is kept too; a large gap between them means the core was contended.
std::uint64_t thread_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}
struct stopwatch {
  std::uint64_t tsc0 = 0, ns0 = 0;
  void start() {
    ns0 = thread_ns();
    tsc0 = rte_rdtsc_precise();
  }
  // Adds the elapsed CPU time (as TSC cycles) to `cycles` and wall TSC cycles to `wall`.
  void stop(std::uint64_t& cycles, std::uint64_t& wall) const {
    const std::uint64_t t = rte_rdtsc_precise();
    const std::uint64_t ns = thread_ns() - ns0;
    wall += t - tsc0;
    cycles += static_cast<std::uint64_t>(static_cast<double>(ns) *
                                         static_cast<double>(rte_get_tsc_hz()) / 1e9);
  }
};

struct options {
  bool smoke = false;
  int reps = 5;
  int core = -1;
  std::uint32_t main_flows = 100'000;
  std::uint32_t main_domains = 100'000;
  std::uint32_t prefixes = 100'000;
  std::vector<std::uint32_t> flow_curve{1'000, 100'000, 1'000'000, 4'000'000};
  std::vector<std::uint32_t> rule_curve{1'000, 100'000, 1'000'000};
  std::uint32_t established_flows = 1'000'000;
  std::uint64_t min_packets = 3'000'000;
  std::size_t eal_mb = 7168;
  std::uint64_t seed = 42;
  bool verbose = false;
  std::string pcap;               // write one pass of the side-by-side mix here and exit
  std::uint32_t kinds = ~0u;      // --kinds: only these flow kinds (names, comma-separated)
  bool established_only = false;  // --established-only: skip the rest (for profiling)
  bool sluice_only = false;       // --sluice-only: no nDPI runs (profiling; no ratio, no sanity)
  int sluice_policy = 3;          // --sluice-policy list|empty: which Sluice runs (bit 1, bit 2)
  bool hugepages = false;         // --hugepages: DPDK memory on reserved 2 MiB pages
};

std::vector<std::uint32_t> parse_list(const char* s) {
  std::vector<std::uint32_t> v;
  for (const char* p = s; *p != 0;) {
    char* end = nullptr;
    v.push_back(static_cast<std::uint32_t>(std::strtoul(p, &end, 10)));
    p = *end == ',' ? end + 1 : end;
    if (end == p && *p != 0) break;
  }
  return v;
}

void usage() {
  std::printf(
      "bench_ndpi [--smoke] [--reps N] [--core N] [--flows N] [--domains N] [--prefixes N]\n"
      "           [--flow-curve a,b,..] [--rule-curve a,b,..] [--established-flows N]\n"
      "           [--min-packets N] [--eal-mb N] [--seed N] [--verbose] [--pcap FILE]\n"
      "           [--kinds tls,tls_pq_split,http,opaque,dns,capture] [--established-only]\n"
      "           [--hugepages]   (DPDK memory on 2 MiB pages: reserve --eal-mb of them first)\n"
      "           [--sluice-only] [--sluice-policy list|empty] (no nDPI runs: for perf)\n"
      "  (an empty curve, e.g. --flow-curve '', skips it; --established-flows 0 skips that)\n");
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--smoke") {
      o.smoke = true;
      o.reps = 1;
      o.main_flows = 2'000;
      o.main_domains = 2'000;
      o.prefixes = 5'000;
      o.flow_curve = {};
      o.rule_curve = {};
      o.established_flows = 4'000;
      o.min_packets = 60'000;
      o.eal_mb = 1024;
    } else if (a == "--reps") {
      o.reps = std::max(1, std::atoi(next()));
    } else if (a == "--core") {
      o.core = std::atoi(next());
    } else if (a == "--flows") {
      o.main_flows = static_cast<std::uint32_t>(std::atol(next()));
    } else if (a == "--domains") {
      o.main_domains = static_cast<std::uint32_t>(std::atol(next()));
    } else if (a == "--prefixes") {
      o.prefixes = static_cast<std::uint32_t>(std::atol(next()));
    } else if (a == "--flow-curve") {
      o.flow_curve = parse_list(next());
    } else if (a == "--rule-curve") {
      o.rule_curve = parse_list(next());
    } else if (a == "--established-flows") {
      o.established_flows = static_cast<std::uint32_t>(std::atol(next()));
    } else if (a == "--min-packets") {
      o.min_packets = static_cast<std::uint64_t>(std::atoll(next()));
    } else if (a == "--eal-mb") {
      o.eal_mb = static_cast<std::size_t>(std::atol(next()));
    } else if (a == "--seed") {
      o.seed = static_cast<std::uint64_t>(std::atoll(next()));
    } else if (a == "--verbose") {
      o.verbose = true;
    } else if (a == "--established-only") {
      o.established_only = true;
    } else if (a == "--sluice-only") {
      o.sluice_only = true;
    } else if (a == "--sluice-policy") {
      const std::string v = next();
      o.sluice_only = true;
      o.sluice_policy = v == "list" ? 1 : v == "empty" ? 2 : 3;
    } else if (a == "--hugepages") {
      o.hugepages = true;
    } else if (a == "--pcap") {
      o.pcap = next();
    } else if (a == "--kinds") {
      const std::string list = std::string(",") + next() + ",";
      o.kinds = 0;
      for (std::size_t k = 0; k < static_cast<std::size_t>(perf::flow_kind::count); ++k) {
        if (list.find(std::string(",") + perf::flow_kind_names[k] + ",") != std::string::npos) {
          o.kinds |= 1u << k;
        }
      }
    } else {
      usage();
      std::exit(a == "--help" || a == "-h" ? 0 : 2);
    }
  }
  return o;
}

// ---- the block list, for both sides ----------------------------------------------------------

struct rule_set {
  std::unique_ptr<engine::active_policy> active;
  std::vector<std::string> domains;   // every domain target, Telegram's and generated
  std::vector<std::string> prefixes;  // every prefix target
  std::vector<std::string> sample;    // generated names traffic asks for
  double compile_seconds = 0;
};

rule_set make_rules(const match::policy_spec& telegram, std::uint32_t domains,
                    std::uint32_t prefixes, std::uint64_t seed) {
  rule_set rs;
  match::policy_spec spec = telegram;
  const perf::block_list gen = perf::generate_block_list(domains, prefixes, seed);
  constexpr std::size_t per_rule = 1000;
  for (std::size_t i = 0; i < gen.domains.size(); i += per_rule) {
    match::rule_spec r;
    r.id = "gen-domains-" + std::to_string(i / per_rule);
    r.act = match::action::drop;
    r.domains.assign(gen.domains.begin() + static_cast<std::ptrdiff_t>(i),
                     gen.domains.begin() +
                         static_cast<std::ptrdiff_t>(std::min(i + per_rule, gen.domains.size())));
    spec.rules.push_back(std::move(r));
  }
  for (std::size_t i = 0; i < gen.prefixes.size(); i += per_rule) {
    match::rule_spec r;
    r.id = "gen-prefixes-" + std::to_string(i / per_rule);
    r.act = match::action::drop;
    r.prefixes.assign(gen.prefixes.begin() + static_cast<std::ptrdiff_t>(i),
                      gen.prefixes.begin() +
                          static_cast<std::ptrdiff_t>(std::min(i + per_rule, gen.prefixes.size())));
    spec.rules.push_back(std::move(r));
  }
  for (const auto& r : spec.rules) {
    rs.domains.insert(rs.domains.end(), r.domains.begin(), r.domains.end());
    rs.prefixes.insert(rs.prefixes.end(), r.prefixes.begin(), r.prefixes.end());
  }
  rs.sample = gen.sample;
  const std::uint64_t t0 = rte_rdtsc();
  auto compiled = match::compile_policy(spec);
  rs.compile_seconds =
      static_cast<double>(rte_rdtsc() - t0) / static_cast<double>(rte_get_tsc_hz());
  if (!compiled) {
    std::fprintf(stderr, "compile: %s\n", compiled.error.message.c_str());
    std::exit(1);
  }
  rs.active = std::make_unique<engine::active_policy>();
  rs.active->generation = 2;
  rs.active->workers = 1;
  rs.active->rule_counters =
      std::make_unique<engine::rule_counter[]>(compiled.policy->rule_count());
  rs.active->policy = std::move(compiled.policy);
  return rs;
}

std::unique_ptr<engine::active_policy> empty_policy() {
  auto ap = std::make_unique<engine::active_policy>();
  ap->generation = 1;
  ap->workers = 1;
  ap->rule_counters = std::make_unique<engine::rule_counter[]>(1);
  return ap;
}

// ---- Sluice ----------------------------------------------------------------------------------

struct env {
  rte_mempool* pool = nullptr;
  rte_mempool* resp = nullptr;
  std::uint16_t sub = 0;
  std::uint16_t inet = 0;
  const char* pages = "--no-huge";  // what DPDK memory is backed by, for the report
};

struct result {
  std::uint64_t packets = 0;  // timed
  std::uint64_t cycles = 0;   // thread CPU time of the timed regions, in TSC cycles
  std::uint64_t wall = 0;     // TSC cycles of the timed regions
  std::uint64_t fed = 0;      // every frame given to the engine, timed or not
  std::uint64_t dropped = 0;
  std::uint64_t flows = 0;
  std::uint64_t flows_blocked = 0;
  std::uint64_t named = 0;  // nDPI: flows with a name
  bool accounted = true;
  // Established-only runs: the pass that sets the flows up (every frame that is not established
  // data: handshakes, names, DNS), timed apart from the established passes.
  std::uint64_t setup_packets = 0;
  std::uint64_t setup_cycles = 0;
  double bytes_per_flow = 0;  // Sluice: worker allocation / table entries
  std::size_t worker_bytes = 0;
  std::string detail;

  [[nodiscard]] double cpp() const {
    return packets == 0 ? NAN : static_cast<double>(cycles) / static_cast<double>(packets);
  }
  [[nodiscard]] double wall_cpp() const {
    return packets == 0 ? NAN : static_cast<double>(wall) / static_cast<double>(packets);
  }
  [[nodiscard]] double setup_cpp() const {
    return setup_packets == 0
               ? NAN
               : static_cast<double>(setup_cycles) / static_cast<double>(setup_packets);
  }
  // Times the setup pass of an established-only run, `pass(into)`, apart from this result's.
  template <typename Pass>
  void time_setup(Pass&& pass) {
    result s;
    pass(s);
    fed += s.fed;
    setup_packets += s.packets;
    setup_cycles += s.cycles;
  }
  [[nodiscard]] double mpps() const {
    return cycles == 0
               ? NAN
               : static_cast<double>(packets) /
                     (static_cast<double>(cycles) / static_cast<double>(rte_get_tsc_hz())) / 1e6;
  }
};

std::size_t heap_allocated() {
  rte_malloc_socket_stats st{};
  if (rte_malloc_get_socket_stats(0, &st) != 0) return 0;
  return st.heap_allocsz_bytes;
}

std::uint32_t epochs_for(const traffic_mix& mix, phase p, std::uint64_t min_packets) {
  const std::uint64_t per = std::max<std::uint64_t>(1, mix.frames(p));
  return static_cast<std::uint32_t>(std::max<std::uint64_t>(1, (min_packets + per - 1) / per));
}

engine::worker_config worker_cfg(const env& e, std::uint32_t flows) {
  engine::worker_config cfg;
  const std::uint16_t maxp = std::max(e.sub, e.inet);
  cfg.tx_queue_of_port.assign(maxp + 1u, 0);
  cfg.role_of_port.assign(maxp + 1u, engine::port_role::subscriber);
  cfg.role_of_port[e.inet] = engine::port_role::internet;
  cfg.peer_of_port[e.sub] = e.inet;
  cfg.peer_of_port[e.inet] = e.sub;
  cfg.response_pool = e.resp;
  cfg.flow_table_size = flows + flows / 16 + 64;  // every flow of the mix, and some slack
  return cfg;
}

// One pass of phase `p` through worker `w`, timing process_burst.
void sluice_pass(engine::worker& w, const env& e, const traffic_mix& mix, phase p, result& r) {
  std::vector<rte_mbuf*> mbufs(chunk);
  std::vector<rte_mbuf*> ordered(chunk);
  std::vector<std::uint8_t> up(chunk);
  struct burst {
    std::uint32_t off;
    std::uint16_t n;
    std::uint16_t port;
  };
  std::vector<burst> bursts;
  traffic_mix::cursor c;
  for (;;) {
    if (rte_pktmbuf_alloc_bulk(e.pool, mbufs.data(), chunk) != 0) {
      std::fprintf(stderr, "mbuf pool exhausted\n");
      std::exit(1);
    }
    std::uint32_t k = 0;
    const std::uint32_t n = mix.fill(c, p, chunk, [&](std::uint32_t len, bool from_client) {
      up[k] = from_client;
      return reinterpret_cast<std::uint8_t*>(
          rte_pktmbuf_append(mbufs[k++], static_cast<std::uint16_t>(len)));
    });
    rte_pktmbuf_free_bulk(mbufs.data() + n, chunk - n);
    if (n == 0) break;
    bursts.clear();
    std::uint32_t o = 0;
    for (std::uint32_t base = 0; base < n; base += window) {
      const std::uint32_t end = std::min(n, base + window);
      for (int dir = 1; dir >= 0; --dir) {
        const std::uint32_t start = o;
        for (std::uint32_t i = base; i < end; ++i) {
          if (up[i] == dir) ordered[o++] = mbufs[i];
        }
        if (o != start) {
          bursts.push_back({start, static_cast<std::uint16_t>(o - start), dir ? e.sub : e.inet});
        }
      }
    }
    stopwatch sw;
    sw.start();
    for (const burst& b : bursts) w.process_burst(ordered.data() + b.off, b.n, b.port);
    r.fed += n;
    sw.stop(r.cycles, r.wall);
    r.packets += n;
  }
}

result run_sluice(const traffic_mix& mix, const engine::active_policy* ap, const env& e,
                  std::uint32_t epochs, bool established_only, bool verbose) {
  result r;
  const std::uint32_t rules = ap->policy ? ap->policy->rule_count() : 0;
  for (std::uint32_t i = 0; i < rules; ++i) ap->rule_counters[i] = {};
  // Established-only: one worker, its flows set up once, then `epochs` timed passes over them.
  const std::uint32_t workers = established_only ? 1 : epochs;
  for (std::uint32_t ep = 0; ep < workers; ++ep) {
    engine::worker_shared shared;
    shared.clock = bench_now;
    shared.policy.store(ap, std::memory_order_release);
    const engine::worker_config cfg = worker_cfg(e, mix.flows());
    const std::size_t before = heap_allocated();
    auto w = std::make_unique<engine::worker>(cfg, shared);
    r.worker_bytes = heap_allocated() - before;
    r.bytes_per_flow = static_cast<double>(r.worker_bytes) / cfg.flow_table_size;
    const std::uint64_t fed_before = r.fed;
    if (established_only) {
      r.time_setup([&](result& s) { sluice_pass(*w, e, mix, phase::setup, s); });
      for (std::uint32_t pass = 0; pass < epochs; ++pass) {
        sluice_pass(*w, e, mix, phase::established, r);
      }
    } else {
      sluice_pass(*w, e, mix, phase::all, r);
    }
    stopwatch sw;
    sw.start();
    w->flush();
    if (!established_only) sw.stop(r.cycles, r.wall);

    const auto& c = w->counters();
    auto ev = [&](engine::engine_event x) { return c.events[static_cast<std::size_t>(x)]; };
    const std::uint64_t ended = ev(engine::engine_event::forwarded) +
                                ev(engine::engine_event::dropped_by_rule) +
                                ev(engine::engine_event::tx_refused);
    if (c.packets != r.fed - fed_before || ended != c.packets) r.accounted = false;
    r.dropped += ev(engine::engine_event::dropped_by_rule);
    r.flows += ev(engine::engine_event::flows_created);
    if (ep == 0 && verbose) {
      std::string d = "    sluice events:";
      for (std::size_t x = 0; x < c.events.size(); ++x) {
        if (c.events[x] != 0) {
          d += " " + std::string(engine::engine_event_names[x]) + "=" + std::to_string(c.events[x]);
        }
      }
      d += "\n    sluice give-ups:";
      for (std::size_t x = 0; x < c.give_ups.size(); ++x) {
        if (c.give_ups[x] != 0)
          d += " [" + std::to_string(x) + "]=" + std::to_string(c.give_ups[x]);
      }
      r.detail = d;
    }
  }
  // Rule counters count flows per rule: a flow hit by an address rule and a name rule counts
  // twice; the Telegram rule is one rule for both.
  for (std::uint32_t i = 0; i < rules; ++i) r.flows_blocked += ap->rule_counters[i].flows;
  return r;
}

// ---- nDPI ------------------------------------------------------------------------------------

void ndpi_pass(perf::ndpi_side& side, const traffic_mix& mix, phase p, result& r,
               std::vector<std::uint8_t>& arena, std::uint64_t& clock_packets) {
  constexpr std::uint32_t slot = 2048;
  std::vector<std::uint32_t> lens(chunk);
  traffic_mix::cursor c;
  for (;;) {
    std::uint32_t k = 0;
    const std::uint32_t n = mix.fill(c, p, chunk, [&](std::uint32_t len, bool) {
      lens[k] = len;
      return arena.data() + std::size_t{k++} * slot;
    });
    if (n == 0) break;
    const std::uint64_t base_ms = 1'796'000'000'000ull;
    stopwatch sw;
    sw.start();
    for (std::uint32_t i = 0; i < n; ++i) {
      side.process(arena.data() + std::size_t{i} * slot, lens[i],
                   base_ms + (clock_packets + i) / 1000);  // 1 Mpps of virtual time
    }
    clock_packets += n;
    r.fed += n;
    sw.stop(r.cycles, r.wall);
    r.packets += n;
  }
}

struct kind_tally {
  std::uint64_t flows[static_cast<std::size_t>(perf::flow_kind::count)] = {};
  std::uint64_t named[static_cast<std::size_t>(perf::flow_kind::count)] = {};
};

result run_ndpi(const traffic_mix& mix, perf::ndpi_side& side, std::uint32_t epochs,
                bool established_only, kind_tally* tally) {
  result r;
  std::vector<std::uint8_t> arena(std::size_t{chunk} * 2048);
  std::uint64_t clock_packets = 0;
  const std::uint32_t tables = established_only ? 1 : epochs;  // as in run_sluice
  for (std::uint32_t ep = 0; ep < tables; ++ep) {
    side.reset();
    const std::uint64_t fed_before = r.fed;
    if (established_only) {
      r.time_setup([&](result& s) { ndpi_pass(side, mix, phase::setup, s, arena, clock_packets); });
      for (std::uint32_t pass = 0; pass < epochs; ++pass) {
        ndpi_pass(side, mix, phase::established, r, arena, clock_packets);
      }
    } else {
      ndpi_pass(side, mix, phase::all, r, arena, clock_packets);
    }
    const perf::ndpi_stats& s = side.stats();
    if (s.packets != r.fed - fed_before || s.forwarded + s.dropped != s.packets) {
      r.accounted = false;
    }
    r.dropped += s.dropped;
    r.flows += s.flows;
    r.flows_blocked += s.flows_blocked;
    r.named += s.flows_named;
    if (ep == 0) {
      char d[256];
      std::snprintf(d, sizeof d,
                    "    ndpi: flows %llu named %llu blocked %llu (ip %llu, name %llu) gave up "
                    "%llu dissected packets %llu unparsed %llu table full %llu",
                    static_cast<unsigned long long>(s.flows),
                    static_cast<unsigned long long>(s.flows_named),
                    static_cast<unsigned long long>(s.flows_blocked),
                    static_cast<unsigned long long>(s.flows_blocked_ip),
                    static_cast<unsigned long long>(s.flows_blocked_name),
                    static_cast<unsigned long long>(s.flows_gave_up),
                    static_cast<unsigned long long>(s.dissected_packets),
                    static_cast<unsigned long long>(s.unparsed),
                    static_cast<unsigned long long>(s.table_full));
      r.detail = d;
      if (tally != nullptr) {
        for (const auto& f : side.summaries()) {
          const auto k = static_cast<std::size_t>(mix.script_of(f.client).kind);
          ++tally->flows[k];
          tally->named[k] += f.named;
        }
      }
    }
  }
  return r;
}

// ---- the host's memory floor ----------------------------------------------------------------

// What a random 64-byte line read costs on this host, in TSC cycles, over a buffer as large as a
// million-flow worker's tables and in the same page size: `latency` when each read waits for the
// one before (a chain), `throughput` when 32 independent chains overlap (the most a burst's
// staged, prefetched lookups can hope for). The cache-missing lines a packet reads, times
// `throughput`, bound its cycles from below, whatever the code does with them.
struct memory_floor {
  double latency = 0;
  double throughput = 0;
  std::size_t mib = 0;
};

memory_floor measure_memory_floor(bool smoke, bool huge) {
  memory_floor f;
  f.mib = smoke ? 64 : 512;
  const std::size_t lines = f.mib * 1024 * 1024 / RTE_CACHE_LINE_SIZE;
  const std::size_t words = RTE_CACHE_LINE_SIZE / sizeof(std::uint64_t);
  void* mem = mmap(nullptr, lines * RTE_CACHE_LINE_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return f;
  madvise(mem, lines * RTE_CACHE_LINE_SIZE, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  auto* buf = static_cast<std::uint64_t*>(mem);
  // One random cycle through every line: line order[i] holds the index of line order[i + 1].
  std::vector<std::uint32_t> order(lines);
  for (std::size_t i = 0; i < lines; ++i) order[i] = static_cast<std::uint32_t>(i);
  std::mt19937_64 rng(7);
  std::shuffle(order.begin(), order.end(), rng);
  for (std::size_t i = 0; i < lines; ++i) buf[order[i] * words] = order[(i + 1) % lines];
  const std::size_t steps = smoke ? 200'000 : 4'000'000;
  auto chase = [&](unsigned chains) {
    std::vector<std::uint64_t> at(chains);
    for (unsigned c = 0; c < chains; ++c) at[c] = order[lines / chains * c];
    const std::uint64_t t0 = rte_rdtsc_precise();
    for (std::size_t s = 0; s < steps / chains; ++s) {
      for (unsigned c = 0; c < chains; ++c) at[c] = buf[at[c] * words];
    }
    const std::uint64_t t1 = rte_rdtsc_precise();
    std::uint64_t sink = 0;
    for (std::uint64_t a : at) sink += a;
    asm volatile("" : : "r"(sink));
    return static_cast<double>(t1 - t0) / static_cast<double>(steps / chains * chains);
  };
  f.latency = chase(1);
  f.throughput = chase(32);
  munmap(mem, lines * RTE_CACHE_LINE_SIZE);
  return f;
}

// ---- reporting -------------------------------------------------------------------------------

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct series {
  std::vector<result> runs;
  void add(result r) { runs.push_back(std::move(r)); }
  [[nodiscard]] double mpps() const { return median_of(&result::mpps); }
  [[nodiscard]] double cpp() const { return median_of(&result::cpp); }
  [[nodiscard]] double wall_cpp() const { return median_of(&result::wall_cpp); }
  [[nodiscard]] double setup_cpp() const { return median_of(&result::setup_cpp); }
  // The median over the runs of one figure of each.
  [[nodiscard]] double median_of(double (result::*figure)() const) const {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back((r.*figure)());
    return median(v);
  }
  [[nodiscard]] bool accounted() const {
    return std::all_of(runs.begin(), runs.end(), [](const result& r) { return r.accounted; });
  }
  [[nodiscard]] const result& first() const {
    static const result none;  // no runs (--sluice-only's nDPI side)
    return runs.empty() ? none : runs.front();
  }
};

void print_census(const traffic_mix& mix) {
  const auto c = mix.count();
  std::printf("  mix per pass: %llu frames (%.0f%% established data, %.0f B avg), %u flows:",
              static_cast<unsigned long long>(c.frames),
              100.0 * static_cast<double>(c.established_frames) / static_cast<double>(c.frames),
              static_cast<double>(c.bytes) / static_cast<double>(c.frames), mix.flows());
  for (std::size_t k = 0; k < static_cast<std::size_t>(perf::flow_kind::count); ++k) {
    std::printf(" %s %.1f%%", perf::flow_kind_names[k],
                100.0 * static_cast<double>(c.flows[k]) / mix.flows());
  }
  std::printf(
      ";\n  IPv6 %.1f%%, tunnelled %.1f%%, to a Telegram prefix %.1f%%, naming Telegram "
      "%.1f%%, naming a generated rule %.1f%%\n",
      100.0 * static_cast<double>(c.ipv6) / mix.flows(),
      100.0 * static_cast<double>(c.tunnelled) / mix.flows(),
      100.0 * static_cast<double>(c.telegram_addr) / mix.flows(),
      100.0 * static_cast<double>(c.telegram_name) / mix.flows(),
      100.0 * static_cast<double>(c.listed_name) / mix.flows());
}

perf::mix_config mix_cfg(const options& o, std::uint32_t flows, const rule_set& rs) {
  perf::mix_config m;
  m.flows = flows;
  m.seed = o.seed;
  m.capture_dir = SLUICE_TESTDATA_DIR "/captures";
  m.blocked_names = rs.sample;
  m.kinds = o.kinds;
  return m;
}

bool insane(const char* what, bool bad) {
  if (bad) std::printf("INSANE: %s\n", what);
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  options o = parse(argc, argv);
  if (o.established_only) {
    o.flow_curve.clear();
    o.rule_curve.clear();
  }
  std::string error;
  if (!match::init_offline_eal("bench_ndpi", o.eal_mb, error, o.hugepages)) {
    std::fprintf(stderr, "EAL: %s\n", error.c_str());
    return 1;
  }
  // Both engines on one core: the EAL pinned this thread to lcore 0's set; choose ours.
  const int ncpu = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  const int core = o.core >= 0 ? o.core : ncpu - 1;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    std::perror("sched_setaffinity");
    return 1;
  }

  env e;
  if (o.hugepages) e.pages = "2 MiB hugepages";
  e.pool = rte_pktmbuf_pool_create("bench_pkts", chunk + 2048, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                   SOCKET_ID_ANY);
  e.resp =
      rte_pktmbuf_pool_create("bench_resp", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  if (e.pool == nullptr || e.resp == nullptr) {
    std::fprintf(stderr, "mempool: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  auto null_port = [&](const char* name) {
    std::uint16_t id = 0;
    rte_eth_conf conf{};
    if (rte_vdev_init(name, nullptr) != 0 || rte_eth_dev_get_port_by_name(name, &id) != 0 ||
        rte_eth_dev_configure(id, 1, 1, &conf) != 0 ||
        rte_eth_tx_queue_setup(id, 0, 1024, SOCKET_ID_ANY, nullptr) != 0 ||
        rte_eth_rx_queue_setup(id, 0, 1024, SOCKET_ID_ANY, nullptr, e.pool) != 0 ||
        rte_eth_dev_start(id) != 0) {
      std::fprintf(stderr, "port %s failed\n", name);
      std::exit(1);
    }
    return id;
  };
  e.sub = null_port("net_null0");
  e.inet = null_port("net_null1");

  const auto loaded = match::load_policy_file(SLUICE_SOURCE_DIR "/config/policy.example.yaml");
  if (!loaded) {
    std::fprintf(stderr, "policy: %s\n", loaded.error.text().c_str());
    return 1;
  }
  const match::policy_spec telegram = *loaded.spec;
  const auto empty = empty_policy();
  bool sane = true;

  std::printf(
      "bench_ndpi: Sluice engine (one worker) vs nDPI %s, same mix, core %d, TSC %.2f GHz, "
      "%s, median of %d interleaved runs\n",
      "4.2", core, static_cast<double>(rte_get_tsc_hz()) / 1e9,
      o.smoke ? "SMOKE (tiny scale)" : "full", o.reps);
  std::printf(
      "  nDPI parses from L3: Ethernet/VLAN/QinQ/GRE/VXLAN stripped by a 40-line walker "
      "(locate_l3), timed;\n  its flow table: open addressing on the 5-tuple, rte_hash_crc; "
      "block list: nDPI patricia (ndpi_ptree) for prefixes,\n  unordered_set exact + "
      "label-suffix walk for domains; nDPI called until it has a name or is done.\n");

  if (!o.pcap.empty()) {  // what the engines see, for tshark / tcpdump
    const rule_set rs = make_rules(telegram, o.main_domains, o.prefixes, o.seed);
    const traffic_mix mix(mix_cfg(o, o.main_flows, rs));
    // The whole mix in FILE, and each direction on its own (FILE.subscriber.pcap: client to
    // server; FILE.internet.pcap: the replies), for two net_pcap ports (perf_dataplane.py --mix).
    pcap_t* p = pcap_open_dead(DLT_EN10MB, 65535);
    const std::string names[3] = {o.pcap, o.pcap + ".subscriber.pcap", o.pcap + ".internet.pcap"};
    pcap_dumper_t* dumpers[3] = {};
    for (int i = 0; i < 3; ++i) {
      dumpers[i] = pcap_dump_open(p, names[i].c_str());
      if (dumpers[i] == nullptr) {
        std::fprintf(stderr, "%s: %s\n", names[i].c_str(), pcap_geterr(p));
        return 1;
      }
    }
    std::vector<std::uint8_t> frame(2048);
    traffic_mix::cursor c;
    std::uint64_t n = 0;
    while (true) {
      std::uint32_t len = 0;
      std::vector<std::uint8_t> buf(std::size_t{chunk} * 2048);
      std::vector<std::uint32_t> lens;
      std::vector<bool> up;
      const std::uint32_t got = mix.fill(c, phase::all, chunk, [&](std::uint32_t l, bool client) {
        lens.push_back(l);
        up.push_back(client);
        return buf.data() + (lens.size() - 1) * 2048;
      });
      if (got == 0) break;
      for (std::uint32_t i = 0; i < got; ++i, ++n) {
        pcap_pkthdr h{};
        h.ts.tv_sec = static_cast<time_t>(1'796'000'000 + n / 1'000'000);
        h.ts.tv_usec = static_cast<suseconds_t>(n % 1'000'000);
        h.caplen = h.len = lens[i];
        const u_char* bytes = buf.data() + std::size_t{i} * 2048;
        pcap_dump(reinterpret_cast<u_char*>(dumpers[0]), &h, bytes);
        pcap_dump(reinterpret_cast<u_char*>(dumpers[up[i] ? 1 : 2]), &h, bytes);
      }
      (void)len;
    }
    for (pcap_dumper_t* d : dumpers) pcap_dump_close(d);
    pcap_close(p);
    std::printf("wrote %llu frames of %u flows to %s (and by direction to %s, %s)\n",
                static_cast<unsigned long long>(n), mix.flows(), o.pcap.c_str(), names[1].c_str(),
                names[2].c_str());
    return 0;
  }

  // ---- 1. side by side --------------------------------------------------------------------
  if (!o.established_only) {
    rule_set rs = make_rules(telegram, o.main_domains, o.prefixes, o.seed);
    const traffic_mix mix(mix_cfg(o, o.main_flows, rs));
    const std::uint32_t epochs = epochs_for(mix, phase::all, o.min_packets);
    std::printf(
        "\n== side by side: %u concurrent flows, Telegram rule + %u domain rules + %u "
        "prefixes (compiled in %.2f s); %u epoch(s)\n",
        o.main_flows, o.main_domains, o.prefixes, rs.compile_seconds, epochs);
    print_census(mix);
    perf::ndpi_side side(rs.domains, rs.prefixes, o.main_flows + 1024);
    series s_empty, s_pol, s_ndpi;
    kind_tally tally;
    for (int rep = 0; rep < o.reps; ++rep) {
      if (o.sluice_policy & 1) {
        s_pol.add(run_sluice(mix, rs.active.get(), e, epochs, false, o.verbose || rep == 0));
      }
      if (!o.sluice_only) {
        s_ndpi.add(run_ndpi(mix, side, epochs, false, rep == 0 ? &tally : nullptr));
      }
      if (o.sluice_policy & 2) s_empty.add(run_sluice(mix, empty.get(), e, epochs, false, false));
    }
    const double ratio = s_pol.mpps() / s_ndpi.mpps();
    std::printf(
        "\n| engine (one core) | Mpps | cycles/packet | frames dropped | flows blocked |\n");
    std::printf("|---|---|---|---|---|\n");
    std::printf("| Sluice, empty policy | %.2f | %.0f | %llu | - |\n", s_empty.mpps(),
                s_empty.cpp(), static_cast<unsigned long long>(s_empty.first().dropped));
    std::printf("| Sluice, block list | %.2f | %.0f | %llu | %llu (rule counters) |\n",
                s_pol.mpps(), s_pol.cpp(), static_cast<unsigned long long>(s_pol.first().dropped),
                static_cast<unsigned long long>(s_pol.first().flows_blocked));
    std::printf("| nDPI 4.2, same block list | %.2f | %.0f | %llu | %llu |\n", s_ndpi.mpps(),
                s_ndpi.cpp(), static_cast<unsigned long long>(s_ndpi.first().dropped),
                static_cast<unsigned long long>(s_ndpi.first().flows_blocked));
    std::printf(
        "\nratio Sluice/nDPI: %.1fx (target >= 8x); Sluice block list / empty: %.1f%% "
        "(target >= 90%%)\n",
        ratio, 100.0 * s_pol.mpps() / s_empty.mpps());
    std::printf(
        "  cycles are thread CPU time x TSC rate; wall-clock TSC cycles/packet: Sluice %.0f, "
        "nDPI %.0f, Sluice empty %.0f (larger: the core was shared)\n",
        s_pol.wall_cpp(), s_ndpi.wall_cpp(), s_empty.wall_cpp());
    std::printf("  runs (Mpps): sluice");
    for (const auto& r : s_pol.runs) std::printf(" %.2f", r.mpps());
    std::printf("; ndpi");
    for (const auto& r : s_ndpi.runs) std::printf(" %.2f", r.mpps());
    std::printf("; sluice empty");
    for (const auto& r : s_empty.runs) std::printf(" %.2f", r.mpps());
    std::printf("\n  nDPI flows with a name, by kind:");
    for (std::size_t k = 0; k < static_cast<std::size_t>(perf::flow_kind::count); ++k) {
      std::printf(" %s %llu/%llu", perf::flow_kind_names[k],
                  static_cast<unsigned long long>(tally.named[k]),
                  static_cast<unsigned long long>(tally.flows[k]));
    }
    std::printf("\n%s\n%s\n", s_pol.first().detail.c_str(), s_ndpi.first().detail.c_str());
    std::printf(
        "  memory per flow: Sluice worker %.0f B per table entry (%.1f MiB for %u entries, "
        "%s); nDPI %zu B ndpi_flow_struct + %.0f B table + %.0f B allocated by "
        "nDPI inside flows\n",
        s_pol.first().bytes_per_flow, static_cast<double>(s_pol.first().worker_bytes) / 1048576.0,
        worker_cfg(e, mix.flows()).flow_table_size, e.pages, perf::ndpi_side::flow_struct_bytes(),
        side.table_bytes_per_flow(), side.dynamic_bytes_per_flow());

    // Where the ratio comes from: the mix's two kinds of frames, each engine timed on each apart
    // (established-only runs, whose setup pass is timed on its own).
    {
      series by_pol, by_ndpi;
      const std::uint32_t est_epochs = epochs_for(mix, phase::established, o.min_packets);
      for (int rep = 0; rep < (o.smoke ? 1 : 2); ++rep) {
        by_pol.add(run_sluice(mix, rs.active.get(), e, est_epochs, true, false));
        if (!o.sluice_only) by_ndpi.add(run_ndpi(mix, side, est_epochs, true, nullptr));
      }
      const double setup_share =
          static_cast<double>(mix.frames(phase::setup)) / static_cast<double>(mix.frames());
      const double budget = s_ndpi.cpp() / 8;
      std::printf(
          "  by kind of frame (cycles/packet, each kind timed apart):\n"
          "    setup frames (%.0f%% of the mix: handshakes, ClientHellos, HTTP requests, DNS, "
          "QUIC and capture flows whole): Sluice %.0f, nDPI %.0f\n"
          "    established data (%.0f%%): Sluice %.0f, nDPI %.0f\n"
          "    8x nDPI on the mix allows %.0f cycles/packet; Sluice's setup frames alone "
          "weigh %.0f of it (%.0f%% x %.0f)\n",
          100 * setup_share, by_pol.setup_cpp(), by_ndpi.setup_cpp(), 100 * (1 - setup_share),
          by_pol.cpp(), by_ndpi.cpp(), budget, setup_share * by_pol.setup_cpp(), 100 * setup_share,
          by_pol.setup_cpp());
      sane &= !insane("by kind of frame: packets unaccounted for",
                      !by_pol.accounted() || !by_ndpi.accounted());
    }

    const std::uint64_t frames = mix.frames() * epochs;
    sane &= !insane("Sluice saw no packets", s_pol.first().packets == 0);
    sane &= !insane("Sluice left packets unaccounted for",
                    !s_pol.accounted() || !s_empty.accounted() || s_pol.first().fed != frames);
    sane &= !insane("nDPI side left packets unaccounted for",
                    !s_ndpi.accounted() || s_ndpi.first().fed != frames);
    sane &= !insane("Sluice dropped nothing of the blocked flows",
                    s_pol.first().dropped == 0 || s_pol.first().flows_blocked == 0);
    sane &= !insane("Sluice dropped with an empty policy", s_empty.first().dropped != 0);
    sane &= !insane("nDPI found no name at all", s_ndpi.first().named == 0);
    sane &= !insane("nDPI blocked nothing", s_ndpi.first().flows_blocked == 0);
    sane &= !insane("ratio is not a number", !std::isfinite(ratio) || ratio <= 0);
  }

  // ---- 2. curves ----------------------------------------------------------------------------
  if (!o.flow_curve.empty() || !o.rule_curve.empty()) {
    std::printf("\n== curves (median of runs; fewer runs at 1M+ flows)\n");
    std::printf(
        "\n| concurrent flows | domain rules | frames/pass | Sluice Mpps | Sluice "
        "cycles/pkt | nDPI Mpps | nDPI cycles/pkt | ratio | Sluice B/flow | nDPI B/flow |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  }
  auto curve_point = [&](std::uint32_t flows, std::uint32_t domains, const rule_set& rs) {
    const traffic_mix mix(mix_cfg(o, flows, rs));
    const std::uint32_t epochs = epochs_for(mix, phase::all, o.min_packets);
    const int reps = flows >= 4'000'000 ? 1 : flows >= 1'000'000 ? 2 : std::min(o.reps, 3);
    perf::ndpi_side side(rs.domains, rs.prefixes, flows + 1024);
    series a, b;
    for (int rep = 0; rep < reps; ++rep) {
      a.add(run_sluice(mix, rs.active.get(), e, epochs, false, false));
      b.add(run_ndpi(mix, side, epochs, false, nullptr));
    }
    side.reset();  // records what nDPI allocated inside the last run's flows
    const double ndpi_bytes = static_cast<double>(perf::ndpi_side::flow_struct_bytes()) +
                              side.table_bytes_per_flow() + side.dynamic_bytes_per_flow();
    std::printf("| %u | %u | %llu | %.2f | %.0f | %.2f | %.0f | %.1fx | %.0f | %.0f |\n", flows,
                domains, static_cast<unsigned long long>(mix.frames()), a.mpps(), a.cpp(), b.mpps(),
                b.cpp(), a.mpps() / b.mpps(), a.first().bytes_per_flow, ndpi_bytes);
    std::fflush(stdout);
    sane &= !insane("curve: packets unaccounted for", !a.accounted() || !b.accounted());
  };
  if (!o.flow_curve.empty()) {
    const rule_set rs = make_rules(telegram, o.main_domains, o.prefixes, o.seed);
    for (std::uint32_t n : o.flow_curve) curve_point(n, o.main_domains, rs);
  }
  for (std::uint32_t d : o.rule_curve) {
    const rule_set rs = make_rules(telegram, d, o.prefixes, o.seed);
    curve_point(o.main_flows, d, rs);
  }

  // ---- 3. established-flow packets -----------------------------------------------------------
  if (o.established_flows != 0) {
    const rule_set rs = make_rules(telegram, o.main_domains, o.prefixes, o.seed);
    const traffic_mix mix(mix_cfg(o, o.established_flows, rs));
    const std::uint32_t epochs = epochs_for(mix, phase::established, o.min_packets);
    perf::ndpi_side side(rs.domains, rs.prefixes, o.established_flows + 1024);
    series a, b;
    const int reps = o.smoke ? 1 : 2;
    for (int rep = 0; rep < reps; ++rep) {
      a.add(run_sluice(mix, rs.active.get(), e, epochs, true, false));
      if (!o.sluice_only) b.add(run_ndpi(mix, side, epochs, true, nullptr));
    }
    std::printf(
        "\n== established-flow packets only, %u flows created first (untimed), then %llu "
        "data packets per pass both ways (timed); DPDK memory: %s\n",
        o.established_flows, static_cast<unsigned long long>(mix.frames(phase::established)),
        e.pages);
    std::printf(
        "  Sluice: %.0f cycles/packet (%.2f Mpps) (target <= 100); nDPI: %.0f "
        "cycles/packet (%.2f Mpps)\n",
        a.cpp(), a.mpps(), b.cpp(), b.mpps());
    sane &= !insane("established: packets unaccounted for",
                    !a.accounted() || !b.accounted() || a.first().packets == 0);
  }

  // ---- 4. memory per flow: the slope of the worker's allocation ------------------------------
  {
    const std::uint32_t small = 1024, big = o.smoke ? 65536 : 1u << 20;
    std::size_t bytes[2] = {};
    std::uint32_t entries[2] = {};
    for (int i = 0; i < 2; ++i) {
      engine::worker_shared shared;
      shared.clock = bench_now;
      shared.policy.store(empty.get(), std::memory_order_release);
      engine::worker_config cfg = worker_cfg(e, 0);
      cfg.flow_table_size = i == 0 ? small : big;
      entries[i] = cfg.flow_table_size;
      const std::size_t before = heap_allocated();
      engine::worker w(cfg, shared);
      bytes[i] = heap_allocated() - before;
    }
    std::printf(
        "\n== memory per flow: Sluice %.0f B per flow-table entry (worker allocation "
        "%.1f MiB at %u entries, %.1f MiB at %u; slope), nDPI %zu B ndpi_flow_struct + "
        "its table + what it allocates inside flows (above)\n",
        static_cast<double>(bytes[1] - bytes[0]) / (entries[1] - entries[0]),
        static_cast<double>(bytes[1]) / 1048576.0, entries[1],
        static_cast<double>(bytes[0]) / 1048576.0, entries[0],
        perf::ndpi_side::flow_struct_bytes());
  }

  // ---- 5. the host's memory floor ------------------------------------------------------------
  {
    const memory_floor f = measure_memory_floor(o.smoke, o.hugepages);
    // An established packet's flow at a million flows: rte_hash's two candidate buckets (its bulk
    // lookup prefetches both), the 48-byte key's slot and the entry's two hot lines.
    constexpr int lines_per_established_packet = 5;
    std::printf(
        "\n== memory floor of this host: a random 64 B line over %zu MiB (%s) costs %.0f cycles "
        "alone, %.0f cycles each when 32 overlap;\n  an established packet at 1M flows reads "
        "at least %d lines no other packet shares (2 hash buckets, the key, 2 entry lines): "
        ">= %.0f cycles/packet from memory alone\n",
        f.mib, o.hugepages ? "2 MiB pages asked for" : "4 KiB pages", f.latency, f.throughput,
        lines_per_established_packet, lines_per_established_packet * f.throughput);
    sane &= !insane("memory floor: not measured", !(f.latency > 0 && f.throughput > 0));
  }

  if (o.sluice_only) {
    std::printf("\nsanity: not checked (--sluice-only)\n");
    rte_eal_cleanup();
    return 0;
  }
  std::printf("\nsanity: %s\n", sane ? "ok" : "FAILED");
  std::fflush(stdout);
  rte_eal_cleanup();
  return sane ? 0 : 1;
}
