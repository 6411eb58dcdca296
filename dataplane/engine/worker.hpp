#pragma once
// The per-lcore fast path: one `worker` per worker lcore owns its flow table, reassembly pool,
// IP-fragment table, classifier, counters and scratch (cache-aligned, never shared). It polls
// the rx queues it was given, decides per flow (forward / drop / reset / notice / throttle /
// monitor) and transmits to the peer port, in DPDK's l3fwd burst-loop shape.
//
// Threads: construct and configure on the main lcore; `run()` on the worker's lcore only.
// Other threads talk to a worker only through `worker_shared` (policy pointer swapped by RCU,
// stop flag, test hooks) and read its counters (plain uint64_t stored once per burst; readers
// may see a value one burst old, never a torn one on x86-64).

#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "dataplane/engine/counters.hpp"
#include "dataplane/engine/name_sketch.hpp"
#include "dataplane/match/policy.hpp"

namespace sluice::engine {

// Which side of the node a port faces. Direction of a packet = role of the port it came in on.
enum class port_role : std::uint8_t { subscriber, internet, mirror };

// The policy as workers see it: the compiled snapshot plus per-worker, per-rule counters that
// live exactly as long as the snapshot (rule indices are only meaningful within it).
struct active_policy {
  std::unique_ptr<const match::compiled_policy> policy;  // null = empty policy (forward all)
  std::uint64_t generation = 0;                          // bumps on every swap
  // rule_counters[worker * rule_count + rule]
  std::unique_ptr<rule_counter[]> rule_counters;
  std::uint32_t workers = 0;
};

// Shared between the control thread and the workers.
struct worker_shared {
  // RCU: the control thread builds a new active_policy, stores it with release semantics,
  // then waits on `qsbr` until every worker has reported quiescence once after the store
  // (rte_rcu_qsbr_synchronize), then frees the old one. Workers load the pointer with acquire
  // semantics once per burst and report quiescence at the end of each loop iteration, so no
  // worker can hold the old pointer after the grace period.
  std::atomic<const active_policy*> policy{nullptr};
  rte_rcu_qsbr* qsbr = nullptr;
  std::atomic<bool> stop{false};
  std::atomic<std::uint32_t> stall_worker_for_test{UINT32_MAX};  // test hook: that worker spins
  std::int64_t (*clock)() = nullptr;  // unix seconds for rule windows; null = system clock
  // Impact sketches (name_sketch.hpp): which of each worker's two sketch_sets the workers fill
  // (0 or 1). Flipped only by drain_impact; workers load it once per loop iteration.
  std::atomic<std::uint32_t> impact_buffer{0};
};

struct io_queue {
  std::uint16_t port = 0;
  std::uint16_t queue = 0;
  port_role role = port_role::subscriber;
};

struct worker_config {
  unsigned id = 0;                      // 0..workers-1 (index into per-worker arrays)
  unsigned socket = 0;                  // NUMA socket for the worker's memory
  std::vector<io_queue> rx;             // queues polled (or empty when fed by `rx_ring`)
  rte_ring* rx_ring = nullptr;          // software-distribution input (single consumer)
  // tx: for each port id, the queue this worker transmits on (UINT16_MAX = none).
  std::vector<std::uint16_t> tx_queue_of_port;
  std::vector<port_role> role_of_port;  // indexed by port id
  std::uint16_t peer_of_port[RTE_MAX_ETHPORTS] = {};  // inline mode: where forwarded packets go
  bool mirror_mode = false;             // rx is a copy: never forward; inject resets
  std::uint16_t inject_port = UINT16_MAX;  // mirror mode: port for injected resets
  rte_mempool* response_pool = nullptr;    // mbufs for resets / notices

  std::uint32_t flow_table_size = 1u << 18;
  std::uint32_t flow_idle_seconds = 120;      // TCP established / UDP idle timeout
  std::uint32_t reassembly_buffers = 4096;    // per worker
  std::uint32_t reassembly_buffer_bytes = 16384;  // per-flow byte cap for a request
  // While the reassembly pool is over three quarters in use, a request still unfinished this
  // long after its flow took a buffer loses the buffer (the flow is given up: held_too_long,
  // and passes unread). Half a ClientHello that never completes would otherwise hold a buffer
  // until the flow's idle timeout, and a trickle of them (reassembly_buffers /
  // flow_idle_seconds per second) would keep the pool empty, so that every split ClientHello
  // (Chromium's post-quantum ones always are) passed unread. Without that pressure nothing is
  // reclaimed: a client pausing between its hello's segments must not slip past a block.
  std::uint32_t reassembly_hold_ms = 3000;
  std::uint32_t frag_table_size = 4096;       // IP datagrams held for reassembly
  std::uint32_t frag_timeout_ms = 2000;
  // Chained mbufs (scattered rx, frames larger than one mbuf) are copied into a per-worker buffer
  // of this many bytes and classified whole; a longer chain is forwarded unread (fail open,
  // multiseg_too_long). Covers a 9216-byte jumbo frame plus encapsulation; at most 65535
  // (frame_info offsets are 16-bit).
  std::uint32_t gather_bytes = 16384;
  std::uint16_t burst = 32;
  std::uint32_t drain_us = 100;               // tx flush deadline
  // classifier::config::verify_checksums: off only to replay endpoint captures whose outgoing
  // checksums are offload artefacts (sluice-dataplane --no-checksum-check).
  bool verify_checksums = true;
  // Impact sketches: per rule, the names of the flows it matched (two sketch_sets, ~3.1 MB per
  // worker, allocated here). Off: nothing recorded, nothing allocated (benchmarks compare).
  bool impact_sketch = true;
};

class worker {
 public:
  // Allocates every table (flow and fragment rte_hash tables, pools) on `cfg.socket`. Throws
  // std::runtime_error naming what DPDK refused.
  worker(const worker_config& cfg, worker_shared& shared);
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  // The lcore loop: runs until shared.stop. Registers with the QSBR variable first.
  int run() noexcept;

  // Processes one burst as if received on (port) — the loop body, exposed so tests can drive
  // a worker without lcores or devices. Consumes the mbufs (forwards, drops or frees them).
  void process_burst(rte_mbuf** pkts, std::uint16_t n, std::uint16_t port) noexcept;
  // Sends whatever is buffered for tx now.
  void flush() noexcept;

  [[nodiscard]] const worker_counters& counters() const noexcept;
  [[nodiscard]] std::uint64_t flow_entries() const noexcept;
  // Reassembly buffers flows hold now (of cfg.reassembly_buffers). Like flow_entries(), read by
  // the control thread while the worker runs: a plain value, possibly one burst old.
  [[nodiscard]] std::uint64_t reassembly_buffers_in_use() const noexcept;

  // One of the worker's two impact sketch sets (buffer 0 or 1), null when cfg.impact_sketch is
  // off. Only drain_impact may touch the set the workers are not filling, and only after the
  // grace period that follows a flip.
  [[nodiscard]] sketch_set* impact_sketch(std::uint32_t buffer) noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// Ends an impact window (control side; one caller at a time, never a worker): flips
// shared.impact_buffer, waits until every worker has reported quiescence after the flip
// (rte_rcu_qsbr, as for policy swaps; no wait when shared.qsbr is null, i.e. tests that drive
// workers from the calling thread), then merges the buffer the workers left by rule id and
// clears it. The result's rules are those with flows, attributed by the rule ids the slots were
// filled under (see sketch_set::retag for a swap mid-window). nullopt when `stop` turned true
// during the wait (nothing merged; the unread buffer is merged by the next drain).
[[nodiscard]] std::optional<impact_window> drain_impact(worker_shared& shared,
                                                        std::span<worker* const> workers,
                                                        std::int64_t window_start,
                                                        std::int64_t window_end,
                                                        std::uint64_t revision,
                                                        const std::atomic<bool>* stop = nullptr);

}  // namespace sluice::engine
