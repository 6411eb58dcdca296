#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "dataplane/flow/stream_buffer.hpp"

using sluice::flow::buffer_pool;
using sluice::flow::stream_buffer;
using insert_result = stream_buffer::insert_result;

namespace {

sluice::packet::bytes view(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
std::string text(sluice::packet::bytes b) { return {b.begin(), b.end()}; }

struct piece {
  std::uint64_t offset;
  std::string data;
};

}  // namespace

TEST_CASE("stream_buffer reassembles pieces in any order") {
  struct {
    const char* what;
    std::vector<piece> pieces;
    std::string contiguous;
  } cases[] = {
      {"in order", {{0, "abc"}, {3, "def"}}, "abcdef"},
      {"reversed", {{3, "def"}, {0, "abc"}}, "abcdef"},
      {"gap stays a gap", {{0, "abc"}, {4, "ef"}}, "abc"},
      {"gap filled last", {{4, "ef"}, {0, "abc"}, {3, "d"}}, "abcdef"},
      {"nothing at 0", {{2, "cd"}}, ""},
      {"overlap keeps the first copy", {{0, "abc"}, {1, "XYZW"}}, "abcZW"},
      {"duplicate", {{0, "abc"}, {0, "abc"}}, "abc"},
      {"piece covering several islands", {{2, "c"}, {5, "f"}, {0, "ABCDEFG"}}, "ABcDEfG"},
  };
  for (const auto& c : cases) {
    const std::string what = c.what;
    CAPTURE(what);
    std::vector<std::uint8_t> storage(stream_buffer::header_bytes + 64);
    stream_buffer sb(storage);
    for (const auto& p : c.pieces) CHECK(sb.insert(p.offset, view(p.data)) == insert_result::ok);
    CHECK(text(sb.contiguous()) == c.contiguous);
  }
}

TEST_CASE("stream_buffer enforces its cap") {
  std::vector<std::uint8_t> storage(stream_buffer::header_bytes + 8);
  stream_buffer sb(storage);
  CHECK(sb.insert(6, view("ghij")) == insert_result::clipped);
  CHECK(sb.insert(8, view("x")) == insert_result::beyond_cap);
  CHECK(sb.insert(1u << 31, view("x")) == insert_result::beyond_cap);
  CHECK(sb.insert(0, view("abcdef")) == insert_result::ok);
  CHECK(text(sb.contiguous()) == "abcdefgh");
  CHECK(sb.held() == 8);
}

TEST_CASE("stream_buffer refuses a stream scattered into too many islands") {
  std::vector<std::uint8_t> storage(stream_buffer::header_bytes + 256);
  stream_buffer sb(storage);
  for (std::size_t i = 0; i < stream_buffer::max_holes; ++i) {
    CHECK(sb.insert(10 * i + 1, view("x")) == insert_result::ok);
  }
  CHECK(sb.insert(200, view("y")) == insert_result::too_scattered);
  CHECK(sb.held() == stream_buffer::max_holes);
  // Filling a hole that joins two islands is still accepted.
  CHECK(sb.insert(0, view("zx---------x")) == insert_result::ok);
}

TEST_CASE("stream_buffer matches a reference model on random pieces") {
  // Byte-wise model: first write wins, contiguous = longest filled prefix.
  std::uint32_t seed = 12345;
  auto rnd = [&seed](std::uint32_t n) {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 8) % n;
  };
  for (int round = 0; round < 2000; ++round) {
    std::vector<std::uint8_t> storage(stream_buffer::header_bytes + 96);
    stream_buffer sb(storage);
    std::vector<int> model(96, -1);
    for (int step = 0; step < 12; ++step) {
      const std::uint32_t off = rnd(110), len = 1 + rnd(20);
      std::string data(len, '\0');
      for (auto& ch : data) ch = static_cast<char>('a' + rnd(26));
      const auto r = sb.insert(off, view(data));
      if (r == insert_result::too_scattered) continue;
      for (std::uint32_t i = 0; i < len && off + i < 96; ++i) {
        if (model[off + i] < 0) model[off + i] = static_cast<unsigned char>(data[i]);
      }
    }
    std::string expected;
    for (int v : model) {
      if (v < 0) break;
      expected.push_back(static_cast<char>(v));
    }
    REQUIRE(text(sb.contiguous()) == expected);
    const auto held = static_cast<std::size_t>(std::count_if(model.begin(), model.end(),
                                                             [](int v) { return v >= 0; }));
    REQUIRE(sb.held() == held);
  }
}

TEST_CASE("buffer_pool hands out distinct buffers and runs dry cleanly") {
  buffer_pool pool(3, 128);
  auto a = pool.acquire(), b = pool.acquire(), c = pool.acquire();
  CHECK(pool.acquire().empty());
  CHECK(a.size() == stream_buffer::header_bytes + 128);
  CHECK(stream_buffer(a).capacity() == 128);
  CHECK(a.data() != b.data());
  CHECK(b.data() != c.data());
  pool.release(b);
  CHECK(pool.available() == 1);
  CHECK(pool.acquire().data() == b.data());
  pool.release(a);
  pool.release(c);
  CHECK(pool.available() == 2);
}

TEST_CASE("stream_buffer keeps its islands in the buffer, not in itself") {
  // The flow entry carries only the span; a buffer too small for the header stays detached.
  static_assert(sizeof(stream_buffer) == sizeof(std::span<std::uint8_t>));
  std::vector<std::uint8_t> tiny(stream_buffer::header_bytes);
  stream_buffer none(tiny);
  CHECK_FALSE(none.attached());
  CHECK(none.capacity() == 0);
  CHECK(none.contiguous().empty());
  CHECK(none.held() == 0);
  // Re-attaching the same buffer forgets what was held (the classifier's restart).
  std::vector<std::uint8_t> storage(stream_buffer::header_bytes + 16);
  stream_buffer sb(storage);
  CHECK(sb.insert(0, view("abc")) == insert_result::ok);
  CHECK(sb.insert(5, view("f")) == insert_result::ok);
  sb.attach(sb.storage());
  CHECK(sb.held() == 0);
  CHECK(sb.insert(0, view("xy")) == insert_result::ok);
  CHECK(text(sb.contiguous()) == "xy");
}
