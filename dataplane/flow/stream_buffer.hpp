#pragma once
// Bounded reassembly of a byte stream from pieces that arrive in any order: TCP segments of a
// client's first bytes, or the CRYPTO frames of QUIC Initials. The caller supplies the storage
// (its size is the per-flow byte cap) and reads the contiguous prefix from offset 0.
//
// Overlaps: bytes already held are never overwritten (first copy wins), so a retransmission
// with different content cannot rewrite what was parsed. Pieces beyond the cap are clipped and
// reported, so the caller can give up cleanly. No allocation; one owner thread.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "dataplane/packet/bytes.hpp"

namespace sluice::flow {

class stream_buffer {
 public:
  static constexpr std::size_t max_holes = 8;  // out-of-order islands tracked
  // The island list lives at the start of the caller's buffer, not here: a flow that holds no
  // buffer (nearly all of them, nearly all the time) then carries 16 bytes for its stream.
  static constexpr std::size_t header_bytes = 80;

  enum class insert_result : std::uint8_t {
    ok,             // stored (possibly partly duplicate)
    clipped,        // stored what fitted; some bytes lay beyond the cap
    beyond_cap,     // nothing fitted
    too_scattered,  // would need more than max_holes islands; nothing stored
  };

  stream_buffer() = default;
  // `buffer`: header_bytes, then the stream's bytes (the per-flow cap is the rest); 4-byte
  // aligned. A buffer no larger than the header leaves the stream detached.
  explicit stream_buffer(std::span<std::uint8_t> buffer) noexcept { attach(buffer); }

  // Takes `buffer` (as above), empty; an empty span detaches.
  void attach(std::span<std::uint8_t> buffer) noexcept;
  [[nodiscard]] bool attached() const noexcept { return !buffer_.empty(); }
  // The stream's byte cap (0 when detached).
  [[nodiscard]] std::size_t capacity() const noexcept {
    return buffer_.empty() ? 0 : buffer_.size() - header_bytes;
  }
  // The whole buffer given to attach (to give back to its pool, or to attach again).
  [[nodiscard]] std::span<std::uint8_t> storage() const noexcept { return buffer_; }

  [[nodiscard]] insert_result insert(std::uint64_t offset, packet::bytes data) noexcept;

  // Bytes [0, n) where n is the end of the island that starts at 0 (empty if none does).
  [[nodiscard]] packet::bytes contiguous() const noexcept;

  // Total bytes held (all islands).
  [[nodiscard]] std::size_t held() const noexcept;

 private:
  struct island {
    std::uint32_t begin;
    std::uint32_t end;
  };
  struct header {
    std::array<island, max_holes> islands;  // sorted, disjoint, non-adjacent
    std::uint8_t count;
  };
  static_assert(sizeof(header) <= header_bytes);

  [[nodiscard]] header& head() const noexcept;
  [[nodiscard]] std::uint8_t* bytes() const noexcept { return buffer_.data() + header_bytes; }

  std::span<std::uint8_t> buffer_;
};

// A per-worker pool of equal-sized reassembly buffers, allocated once at start-up, each of
// stream_buffer::header_bytes plus `buffer_size` stream bytes (a cache-line multiple apart).
// acquire() returns an empty span when exhausted (the caller then gives up on that flow,
// counted).
class buffer_pool {
 public:
  buffer_pool(std::size_t buffer_count, std::size_t buffer_size);
  buffer_pool(const buffer_pool&) = delete;
  buffer_pool& operator=(const buffer_pool&) = delete;

  [[nodiscard]] std::span<std::uint8_t> acquire() noexcept;
  void release(std::span<std::uint8_t> buffer) noexcept;

  [[nodiscard]] std::size_t buffer_size() const noexcept { return buffer_size_; }
  [[nodiscard]] std::size_t available() const noexcept { return free_count_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return free_.size(); }

 private:
  std::size_t buffer_size_;  // stream bytes per buffer
  std::size_t stride_;       // header + stream bytes, rounded up to a cache line
  std::unique_ptr<std::uint8_t[]> memory_;
  std::unique_ptr<std::uint32_t[]> free_storage_;
  std::span<std::uint32_t> free_;
  std::size_t free_count_;
};

}  // namespace sluice::flow
