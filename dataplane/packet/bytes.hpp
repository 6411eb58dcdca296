#pragma once
// Byte-level helpers shared by every parser. Parsers take `bytes` (a read-only view of a packet
// or stream prefix) and never read outside it.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace sluice::packet {

using bytes = std::span<const std::uint8_t>;

[[nodiscard]] constexpr std::uint16_t load_be16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
[[nodiscard]] constexpr std::uint32_t load_be24(const std::uint8_t* p) noexcept {
  return (std::uint32_t{p[0]} << 16) | (std::uint32_t{p[1]} << 8) | p[2];
}
[[nodiscard]] constexpr std::uint32_t load_be32(const std::uint8_t* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         p[3];
}
[[nodiscard]] constexpr std::uint64_t load_be64(const std::uint8_t* p) noexcept {
  return (std::uint64_t{load_be32(p)} << 32) | load_be32(p + 4);
}

// A view of bytes as characters (names found in packets are views into the packet or into a
// caller-owned scratch buffer; they live as long as that storage).
[[nodiscard]] inline std::string_view as_chars(bytes b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Bounds-checked forward reader. Every read checks the remaining length first; a failed read
// leaves the reader in a failed state so a parser can do several reads and test once.
class reader {
 public:
  constexpr explicit reader(bytes b) noexcept : data_(b.data()), size_(b.size()) {}

  [[nodiscard]] constexpr std::size_t remaining() const noexcept { return size_ - pos_; }
  [[nodiscard]] constexpr std::size_t position() const noexcept { return pos_; }
  [[nodiscard]] constexpr bool ok() const noexcept { return ok_; }

  constexpr std::uint8_t u8() noexcept { return need(1) ? data_[pos_++] : fail8(); }
  constexpr std::uint16_t u16() noexcept {
    if (!need(2)) return 0;
    auto v = load_be16(data_ + pos_);
    pos_ += 2;
    return v;
  }
  constexpr std::uint32_t u24() noexcept {
    if (!need(3)) return 0;
    auto v = load_be24(data_ + pos_);
    pos_ += 3;
    return v;
  }
  constexpr std::uint32_t u32() noexcept {
    if (!need(4)) return 0;
    auto v = load_be32(data_ + pos_);
    pos_ += 4;
    return v;
  }
  // Returns an empty span (and fails) when fewer than n bytes remain.
  constexpr bytes take(std::size_t n) noexcept {
    if (!need(n)) return {};
    bytes v{data_ + pos_, n};
    pos_ += n;
    return v;
  }
  constexpr bool skip(std::size_t n) noexcept {
    if (!need(n)) return false;
    pos_ += n;
    return true;
  }
  [[nodiscard]] constexpr bytes rest() const noexcept { return {data_ + pos_, size_ - pos_}; }

 private:
  constexpr bool need(std::size_t n) noexcept {
    if (ok_ && n <= size_ - pos_) return true;
    ok_ = false;
    return false;
  }
  constexpr std::uint8_t fail8() noexcept { return 0; }

  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace sluice::packet
