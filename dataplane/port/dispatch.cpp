#include "dataplane/port/dispatch.hpp"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_hash_crc.h>
#include <rte_pause.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "dataplane/packet/frame.hpp"

namespace sluice::port {
namespace {
constexpr unsigned max_burst = 64;
constexpr unsigned max_workers = 128;
constexpr std::uint64_t max_wait_ms = 10;
// symmetric_flow_hash reads only the outermost IP header's addresses (a tunnel's) or, untunnelled,
// the only one's; both sit in the first bytes of the frame, well within this.
constexpr std::uint32_t hash_prefix_bytes = 256;
}  // namespace

std::uint32_t symmetric_flow_hash(const rte_mbuf* m) noexcept {
  packet::bytes frame(rte_pktmbuf_mtod(m, const std::uint8_t*), m->data_len);
  std::array<std::uint8_t, hash_prefix_bytes> prefix;
  if (m->nb_segs > 1 && m->data_len < hash_prefix_bytes) [[unlikely]] {
    // Scattered rx with a short first segment: the headers may continue in the next ones. A
    // truncated parse still yields the outer addresses, so a prefix hashes like the whole frame.
    const std::uint32_t len = std::min<std::uint32_t>(rte_pktmbuf_pkt_len(m), hash_prefix_bytes);
    const void* p = rte_pktmbuf_read(m, 0, len, prefix.data());
    if (p != nullptr) frame = packet::bytes(static_cast<const std::uint8_t*>(p), len);
  }
  return symmetric_flow_hash(frame);
}

std::uint32_t symmetric_flow_hash(packet::bytes frame) noexcept {
  const packet::frame_info info = packet::parse_frame(frame);
  if (info.ip_version != 4 && info.ip_version != 6) return 0;
  std::array<std::uint8_t, 16> a = info.src.bytes;
  std::array<std::uint8_t, 16> b = info.dst.bytes;
  std::uint8_t version = info.ip_version;
  if (info.encap & packet::encap_tunnels) {
    // The parser read this header whole (20 or 40 bytes), so the addresses are in the frame.
    const std::uint8_t* outer = frame.data() + info.outer_l3_offset;
    a = {};
    b = {};
    version = outer[0] >> 4;
    if (version == 4) {
      std::memcpy(a.data(), outer + 12, 4);
      std::memcpy(b.data(), outer + 16, 4);
    } else {
      std::memcpy(a.data(), outer + 8, 16);
      std::memcpy(b.data(), outer + 24, 16);
    }
  }
  const bool a_first = std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
  const auto& lo = a_first ? a : b;
  const auto& hi = a_first ? b : a;
  // rte_hash_crc reads 8-byte words: hash an aligned copy.
  alignas(8) std::array<std::uint8_t, 32> key{};
  std::memcpy(key.data(), lo.data(), 16);
  std::memcpy(key.data() + 16, hi.data(), 16);
  return rte_hash_crc(key.data(), key.size(), version);
}

dispatcher::dispatcher(std::vector<rx_source> rx, std::vector<rte_ring*> worker_rings,
                       std::vector<funnel> funnels, std::uint16_t burst, bool lossless,
                       const std::atomic<bool>* stop)
    : rx_(std::move(rx)),
      rings_(std::move(worker_rings)),
      funnels_(std::move(funnels)),
      burst_(std::clamp<std::uint16_t>(burst, 1, max_burst)),
      lossless_(lossless),
      stop_(stop) {}

void dispatcher::deliver(unsigned worker, rte_mbuf** pkts, unsigned n) noexcept {
  unsigned done = 0;
  std::uint64_t deadline = 0;
  while (done < n) {
    done += rte_ring_enqueue_burst(rings_[worker], reinterpret_cast<void* const*>(pkts + done),
                                   n - done, nullptr);
    if (done == n) break;
    // Back-pressure: a worker that is merely slower gets a moment to catch up (the NIC queue
    // absorbs the wait); a stalled one must not stall the control loop, so live mode gives up
    // after max_wait_ms and drops, counted. Offline replay never drops.
    const std::uint64_t now = rte_rdtsc();
    if (deadline == 0) deadline = now + rte_get_tsc_hz() / 1000 * max_wait_ms;
    if ((!lossless_ && now > deadline) ||
        (stop_ != nullptr && stop_->load(std::memory_order_relaxed))) {
      counters_.ring_full_drops += n - done;
      rte_pktmbuf_free_bulk(pkts + done, n - done);
      return;
    }
    // Workers may be waiting on their tx funnel: keep it moving while we wait.
    (void)drain_funnels();
    rte_pause();
  }
}

unsigned dispatcher::poll() noexcept {
  unsigned moved = 0;
  std::array<rte_mbuf*, max_burst> pkts{};
  const unsigned workers = static_cast<unsigned>(std::min<std::size_t>(rings_.size(), max_workers));
  if (workers != 0) {
    if (stage_.size() < workers) {
      stage_.resize(workers);
      counts_.resize(workers);
    }
    auto& stage = stage_;
    auto& counts = counts_;
    // Back-pressure on the tx side: workers free what a full funnel refuses, so new packets
    // come in only while every funnel has room for all that is in flight, twice over
    // (answers) plus what the workers may hold in their tx buffers.
    std::size_t inflight = 0;
    for (unsigned w = 0; w < workers; ++w) inflight += rte_ring_count(rings_[w]);
    const std::size_t room = 2 * (inflight + std::size_t{burst_} * (workers + 1)) + 128u * workers;
    for (const funnel& f : funnels_) {
      if (rte_ring_free_count(f.ring) < room) return drain_funnels();
    }
    for (const rx_source& src : rx_) {
      const std::uint16_t n = rte_eth_rx_burst(src.port, src.queue, pkts.data(), burst_);
      if (n == 0) continue;
      moved += n;
      std::fill(counts.begin(), counts.begin() + workers, 0u);
      for (std::uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        m->port = src.deliver_as;
        const unsigned w = workers == 1 ? 0 : symmetric_flow_hash(m) % workers;
        stage[w][counts[w]++] = m;
      }
      for (unsigned w = 0; w < workers; ++w) {
        if (counts[w] != 0) deliver(w, stage[w].data(), counts[w]);
      }
      counters_.dispatched += n;
    }
  }
  moved += drain_funnels();
  return moved;
}

unsigned dispatcher::drain_funnels() noexcept {
  unsigned sent_total = 0;
  std::array<rte_mbuf*, max_burst> pkts{};
  for (const funnel& f : funnels_) {
    const unsigned n = rte_ring_sc_dequeue_burst(f.ring, reinterpret_cast<void**>(pkts.data()),
                                                 burst_, nullptr);
    if (n == 0) continue;
    unsigned sent = 0;
    while (sent < n) {
      sent += rte_eth_tx_burst(f.port, f.queue, pkts.data() + sent,
                               static_cast<std::uint16_t>(n - sent));
      if (sent == n) break;
      if (!lossless_ || (stop_ != nullptr && stop_->load(std::memory_order_relaxed))) {
        counters_.tx_refused += n - sent;
        rte_pktmbuf_free_bulk(pkts.data() + sent, n - sent);
        break;
      }
      rte_pause();
    }
    counters_.funnelled += n;
    sent_total += n;
  }
  return sent_total;
}

bool dispatcher::empty() const noexcept {
  for (rte_ring* r : rings_) {
    if (rte_ring_count(r) != 0) return false;
  }
  for (const funnel& f : funnels_) {
    if (rte_ring_count(f.ring) != 0) return false;
  }
  return true;
}

}  // namespace sluice::port
