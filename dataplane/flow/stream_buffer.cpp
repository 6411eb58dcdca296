#include "dataplane/flow/stream_buffer.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>

namespace sluice::flow {

void stream_buffer::attach(std::span<std::uint8_t> buffer) noexcept {
  if (buffer.size() <= header_bytes) {
    buffer_ = {};
    return;
  }
  buffer_ = buffer;
  new (buffer_.data()) header{};
}

stream_buffer::header& stream_buffer::head() const noexcept {
  return *std::launder(reinterpret_cast<header*>(buffer_.data()));
}

stream_buffer::insert_result stream_buffer::insert(std::uint64_t offset,
                                                   packet::bytes data) noexcept {
  const std::uint64_t cap = capacity();
  if (data.empty()) return insert_result::ok;
  if (offset >= cap) return insert_result::beyond_cap;
  const bool clipped = offset + data.size() > cap;
  const auto begin = static_cast<std::uint32_t>(offset);
  const auto end = static_cast<std::uint32_t>(std::min<std::uint64_t>(offset + data.size(), cap));

  auto& islands_ = head().islands;
  std::uint8_t& count_ = head().count;
  // Islands touched by [begin, end] (adjacent ones merge too).
  std::size_t first = 0;
  while (first < count_ && islands_[first].end < begin) ++first;
  std::size_t last = first;
  while (last < count_ && islands_[last].begin <= end) ++last;
  // [first, last) overlap or touch the new piece; merging them leaves one island in their place.
  const std::size_t new_count = count_ - (last - first) + 1;
  if (new_count > max_holes) return insert_result::too_scattered;

  // Copy only the gaps between held islands: bytes already held stay as first received.
  std::uint32_t cursor = begin;
  for (std::size_t i = first; i < last && cursor < end; ++i) {
    if (islands_[i].begin > cursor) {
      const std::uint32_t gap_end = std::min(islands_[i].begin, end);
      std::memcpy(bytes() + cursor, data.data() + (cursor - begin), gap_end - cursor);
    }
    cursor = std::max(cursor, islands_[i].end);
  }
  if (cursor < end) {
    std::memcpy(bytes() + cursor, data.data() + (cursor - begin), end - cursor);
  }

  island merged{begin, end};
  if (first < last) {
    merged.begin = std::min(merged.begin, islands_[first].begin);
    merged.end = std::max(merged.end, islands_[last - 1].end);
  }
  // Replace islands [first, last) with `merged`.
  if (last - first != 1) {
    auto* base = islands_.data();
    if (last == first) {
      std::memmove(base + first + 1, base + first, (count_ - first) * sizeof(island));
    } else {
      std::memmove(base + first + 1, base + last, (count_ - last) * sizeof(island));
    }
  }
  islands_[first] = merged;
  count_ = static_cast<std::uint8_t>(new_count);
  return clipped ? insert_result::clipped : insert_result::ok;
}

packet::bytes stream_buffer::contiguous() const noexcept {
  if (!attached()) return {};
  const header& h = head();
  if (h.count == 0 || h.islands[0].begin != 0) return {};
  return {bytes(), h.islands[0].end};
}

std::size_t stream_buffer::held() const noexcept {
  if (!attached()) return 0;
  const header& h = head();
  std::size_t n = 0;
  for (std::size_t i = 0; i < h.count; ++i) n += h.islands[i].end - h.islands[i].begin;
  return n;
}

buffer_pool::buffer_pool(std::size_t buffer_count, std::size_t buffer_size)
    : buffer_size_(buffer_size),
      stride_((stream_buffer::header_bytes + buffer_size + 63) & ~std::size_t{63}),
      memory_(new std::uint8_t[buffer_count * stride_]),
      free_storage_(new std::uint32_t[buffer_count]),
      free_(free_storage_.get(), buffer_count),
      free_count_(buffer_count) {
  if (buffer_count > UINT32_MAX) throw std::invalid_argument("buffer_pool: too many buffers");
  for (std::size_t i = 0; i < buffer_count; ++i) {
    free_[i] = static_cast<std::uint32_t>(buffer_count - 1 - i);
  }
}

std::span<std::uint8_t> buffer_pool::acquire() noexcept {
  if (free_count_ == 0) return {};
  const std::uint32_t index = free_[--free_count_];
  return {memory_.get() + std::size_t{index} * stride_, stream_buffer::header_bytes + buffer_size_};
}

void buffer_pool::release(std::span<std::uint8_t> buffer) noexcept {
  if (buffer.empty()) return;
  const auto index =
      static_cast<std::uint32_t>((buffer.data() - memory_.get()) / static_cast<std::ptrdiff_t>(stride_));
  free_[free_count_++] = index;
}

}  // namespace sluice::flow
