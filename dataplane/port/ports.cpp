#include "dataplane/port/ports.hpp"

#include <rte_ethdev.h>

#include <stdexcept>
#include <vector>

namespace sluice::port {
namespace {

[[noreturn]] void fail(std::uint16_t port, const char* step, int rc) {
  throw std::runtime_error("port " + std::to_string(port) + ": " + step + " failed: " +
                           rte_strerror(rc < 0 ? -rc : rc));
}

}  // namespace

void fill_symmetric_rss_key(std::uint8_t* key, std::size_t len) noexcept {
  for (std::size_t i = 0; i < len; ++i) key[i] = (i % 2 == 0) ? 0x6d : 0x5a;
}

port_caps query_port(std::uint16_t port) {
  if (!rte_eth_dev_is_valid_port(port)) {
    throw std::runtime_error("port " + std::to_string(port) + " does not exist (DPDK has " +
                             std::to_string(rte_eth_dev_count_avail()) + " ports)");
  }
  rte_eth_dev_info info{};
  const int rc = rte_eth_dev_info_get(port, &info);
  if (rc != 0) fail(port, "rte_eth_dev_info_get", rc);
  port_caps caps;
  caps.max_rx_queues = info.max_rx_queues;
  caps.max_tx_queues = info.max_tx_queues;
  caps.rss_ip = (info.flow_type_rss_offloads & RTE_ETH_RSS_IP) != 0;
  caps.driver = info.driver_name != nullptr ? info.driver_name : "";
  return caps;
}

port_setup start_port(std::uint16_t port, std::uint16_t rx_queues, std::uint16_t tx_queues,
                      bool rss, rte_mempool* pool, std::uint16_t rx_desc,
                      std::uint16_t tx_desc) {
  rte_eth_dev_info info{};
  int rc = rte_eth_dev_info_get(port, &info);
  if (rc != 0) fail(port, "rte_eth_dev_info_get", rc);

  port_setup setup;
  setup.port = port;
  setup.rx_queues = rx_queues;
  setup.tx_queues = tx_queues;
  setup.driver = info.driver_name != nullptr ? info.driver_name : "";

  rte_eth_conf conf{};
  // Address-only hashing (RTE_ETH_RSS_IP) keeps fragments with their flow; the symmetric key
  // makes (a,b) and (b,a) hash alike.
  std::vector<std::uint8_t> key;
  if (rss && rx_queues > 1) {
    key.resize(info.hash_key_size != 0 ? info.hash_key_size : 40);
    fill_symmetric_rss_key(key.data(), key.size());
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_key = key.data();
    conf.rx_adv_conf.rss_conf.rss_key_len = static_cast<std::uint8_t>(key.size());
    conf.rx_adv_conf.rss_conf.rss_hf = RTE_ETH_RSS_IP & info.flow_type_rss_offloads;
    setup.rss = true;
  }
  // Frames larger than one mbuf (jumbo frames, endpoint captures with TSO'd segments) arrive
  // chained where the PMD can (net_tap can, and without scatter drops them); the worker judges
  // a chain on a copy of the whole frame (worker_config::gather_bytes).
  if ((info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER) != 0) {
    conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_SCATTER;
    setup.scatter = true;
  }
  if ((info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS) != 0) {
    conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
  }
  rc = rte_eth_dev_configure(port, rx_queues, tx_queues, &conf);
  if (rc != 0) fail(port, "rte_eth_dev_configure", rc);
  rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc);
  if (rc != 0) fail(port, "rte_eth_dev_adjust_nb_rx_tx_desc", rc);

  const int socket = rte_eth_dev_socket_id(port);
  const unsigned sock = socket < 0 ? 0u : static_cast<unsigned>(socket);
  rte_eth_rxconf rxconf = info.default_rxconf;
  rxconf.offloads = conf.rxmode.offloads;
  for (std::uint16_t q = 0; q < rx_queues; ++q) {
    rc = rte_eth_rx_queue_setup(port, q, rx_desc, sock, &rxconf, pool);
    if (rc != 0) fail(port, "rte_eth_rx_queue_setup", rc);
  }
  rte_eth_txconf txconf = info.default_txconf;
  txconf.offloads = conf.txmode.offloads;
  for (std::uint16_t q = 0; q < tx_queues; ++q) {
    rc = rte_eth_tx_queue_setup(port, q, tx_desc, sock, &txconf);
    if (rc != 0) fail(port, "rte_eth_tx_queue_setup", rc);
  }
  rc = rte_eth_dev_start(port);
  if (rc != 0) fail(port, "rte_eth_dev_start", rc);
  // Not every PMD has a promiscuous mode (net_pcap, net_ring): that is fine, they see all.
  (void)rte_eth_promiscuous_enable(port);
  return setup;
}

void close_port(std::uint16_t port) noexcept {
  (void)rte_eth_dev_stop(port);
  (void)rte_eth_dev_close(port);
}

telemetry::port_stats read_port_stats(std::uint16_t port, const std::string& name) {
  telemetry::port_stats out;
  out.name = name;
  rte_eth_stats s{};
  if (rte_eth_stats_get(port, &s) == 0) {
    out.rx_packets = s.ipackets;
    out.tx_packets = s.opackets;
    out.rx_bytes = s.ibytes;
    out.tx_bytes = s.obytes;
    out.rx_missed = s.imissed;
    out.rx_errors = s.ierrors;
    out.tx_errors = s.oerrors;
    out.rx_nombuf = s.rx_nombuf;
  }
  const int n = rte_eth_xstats_get_names(port, nullptr, 0);
  if (n > 0) {
    std::vector<rte_eth_xstat_name> names(static_cast<std::size_t>(n));
    std::vector<rte_eth_xstat> values(static_cast<std::size_t>(n));
    const int got_names = rte_eth_xstats_get_names(port, names.data(), static_cast<unsigned>(n));
    const int got = rte_eth_xstats_get(port, values.data(), static_cast<unsigned>(n));
    if (got_names == n && got == n) {
      out.xstats.reserve(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) {
        const auto id = values[static_cast<std::size_t>(i)].id;
        if (id >= names.size()) continue;
        out.xstats.emplace_back(names[id].name, values[static_cast<std::size_t>(i)].value);
      }
    }
  }
  return out;
}

}  // namespace sluice::port
