#pragma once
// Port bring-up and port statistics, on the main lcore at start-up and shutdown only.
//
// Queues: a port gets one rx and one tx queue per worker when its PMD offers that many
// (dev_info.max_rx_queues / max_tx_queues); then, with more than one worker, RSS spreads
// flows with a symmetric Toeplitz key (0x6d5a repeated) over the IP addresses only, so both
// directions of a flow, and every fragment of a datagram, land on the same worker. A port
// that offers fewer queues gets one of each and is served by the software dispatcher
// (dispatch.hpp). See dataplane/README.md.

#include <rte_mempool.h>

#include <cstdint>
#include <string>

#include "dataplane/telemetry/stats.hpp"

namespace sluice::port {

struct port_setup {
  std::uint16_t port = 0;
  std::uint16_t rx_queues = 1;
  std::uint16_t tx_queues = 1;
  bool rss = false;          // hardware RSS spreads rx over `rx_queues` (== workers)
  bool scatter = false;      // rx may chain mbufs for frames larger than one mbuf
  std::string driver;        // dev_info.driver_name
};

// What the PMD offers, without configuring anything.
struct port_caps {
  std::uint16_t max_rx_queues = 0;
  std::uint16_t max_tx_queues = 0;
  bool rss_ip = false;       // flow_type_rss_offloads covers IPv4/IPv6
  std::string driver;
};

// Throws std::runtime_error when the port id is invalid or DPDK refuses to report.
[[nodiscard]] port_caps query_port(std::uint16_t port);

// Configures (rx_queues, tx_queues as decided by the caller), sets up queues with `pool`,
// starts the port and enables promiscuous mode where supported (inline and mirror ports see
// traffic that is not addressed to them). Throws std::runtime_error naming the refused step.
[[nodiscard]] port_setup start_port(std::uint16_t port, std::uint16_t rx_queues,
                                    std::uint16_t tx_queues, bool rss, rte_mempool* pool,
                                    std::uint16_t rx_desc, std::uint16_t tx_desc);

// Stops and closes a port (net_pcap flushes its output file on close). Errors are ignored.
void close_port(std::uint16_t port) noexcept;

// rte_eth_stats_get + xstats, under `name` (the port's role). Never throws except bad_alloc.
[[nodiscard]] telemetry::port_stats read_port_stats(std::uint16_t port, const std::string& name);

// Symmetric Toeplitz key: 0x6d5a repeated (Woo & Park), any length.
void fill_symmetric_rss_key(std::uint8_t* key, std::size_t len) noexcept;

}  // namespace sluice::port
