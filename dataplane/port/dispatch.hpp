#pragma once
// Software flow distribution for ports without enough queues (virtual devices): one dispatcher
// (the main lcore's control loop) reads each such port's queue 0, hashes the frame's address
// pair symmetrically and enqueues it to the owning worker's single-consumer ring
// (worker_config::rx_ring). For ports with fewer tx queues than workers it also drains the
// "funnels": multi-producer rings behind net_ring ethdevs that the workers transmit to in place
// of the real port, and sends their contents out of the real port's queue 0. The dispatcher is
// then the only thread that touches those ports' queues.
//
// Threads: construct on the main lcore; poll() / drain_funnels() from one thread only.

#include <rte_mbuf.h>
#include <rte_ring.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "dataplane/packet/bytes.hpp"

namespace sluice::port {

// Hash of the IP address pair, equal for both directions, and for every fragment of a datagram
// (ports are left out on purpose): the innermost pair, or for a tunnelled frame (GRE, IP-in-IP,
// VXLAN, GTP-U, Geneve) the outermost one, as NIC RSS on IP addresses does. A tunnel's
// fragments show only its outer header, and they must reach the worker that holds the inner
// flow. Non-IP frames hash to 0. Pure.
[[nodiscard]] std::uint32_t symmetric_flow_hash(packet::bytes frame) noexcept;
// The same for a received mbuf, whose headers may span segments (scattered rx).
[[nodiscard]] std::uint32_t symmetric_flow_hash(const rte_mbuf* m) noexcept;

class dispatcher {
 public:
  struct rx_source {
    std::uint16_t port = 0;
    std::uint16_t queue = 0;
    std::uint16_t deliver_as = 0;  // mbuf->port seen by workers (a funnel alias, or `port`)
  };
  struct funnel {
    rte_ring* ring = nullptr;      // what workers' net_ring tx queues enqueue to
    std::uint16_t port = 0;        // the real port it drains into
    std::uint16_t queue = 0;
  };
  struct counters {
    std::uint64_t dispatched = 0;
    std::uint64_t ring_full_drops = 0;   // a worker ring stayed full for 10 ms (live mode)
    std::uint64_t tx_refused = 0;        // the real port refused a funnelled packet
    std::uint64_t funnelled = 0;
  };

  // `lossless`: wait for room as long as it takes (offline replay must not lose a packet);
  // otherwise at most 10 ms per burst. Waiting stops when `stop` is set.
  dispatcher(std::vector<rx_source> rx, std::vector<rte_ring*> worker_rings,
             std::vector<funnel> funnels, std::uint16_t burst, bool lossless,
             const std::atomic<bool>* stop);

  // Reads each rx source once and drains the funnels. Returns packets moved.
  unsigned poll() noexcept;
  // Drains every funnel once. Returns packets sent.
  unsigned drain_funnels() noexcept;
  // Every worker ring and funnel is empty.
  [[nodiscard]] bool empty() const noexcept;
  [[nodiscard]] bool has_rx() const noexcept { return !rx_.empty(); }
  [[nodiscard]] const counters& stats() const noexcept { return counters_; }

 private:
  void deliver(unsigned worker, rte_mbuf** pkts, unsigned n) noexcept;

  std::vector<rx_source> rx_;
  std::vector<rte_ring*> rings_;
  std::vector<funnel> funnels_;
  std::uint16_t burst_;
  bool lossless_;
  const std::atomic<bool>* stop_;
  counters counters_;
  // Per-worker staging for one rx burst, filled in arrival order so each flow keeps its order.
  std::vector<std::array<rte_mbuf*, 64>> stage_;
  std::vector<unsigned> counts_;
};

}  // namespace sluice::port
