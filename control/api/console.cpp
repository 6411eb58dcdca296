#include "control/api/console.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "control/audit/audit.hpp"

namespace sluice::control::api {

namespace {

// 256 random bits as unpadded base64url (43 characters).
std::string random_token() {
  std::array<unsigned char, 32> raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1)
    throw std::runtime_error("the system's random source failed");
  std::array<unsigned char, 4 * ((raw.size() + 2) / 3) + 1> text{};
  const int n = EVP_EncodeBlock(text.data(), raw.data(), static_cast<int>(raw.size()));
  std::string out(reinterpret_cast<const char*>(text.data()), static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

}  // namespace

std::int64_t console_session::expires_ms(const console_config& cfg) const {
  return std::min(created_ms + std::chrono::milliseconds(cfg.session_max).count(),
                  last_used_ms + std::chrono::milliseconds(cfg.session_idle).count());
}

std::pair<std::string, console_session> session_store::open(const controller::principal& who,
                                                            std::int64_t now_ms) {
  std::string cookie = random_token();
  console_session s{who, random_token(), now_ms, now_ms};
  std::lock_guard lock(mutex_);
  // Full: the expired go first, then the oldest.
  if (by_hash_.size() >= cfg_.max_sessions)
    std::erase_if(by_hash_, [&](const auto& kv) { return kv.second.expires_ms(cfg_) <= now_ms; });
  while (!by_hash_.empty() && by_hash_.size() >= cfg_.max_sessions) {
    auto oldest = by_hash_.begin();
    for (auto it = by_hash_.begin(); it != by_hash_.end(); ++it)
      if (it->second.created_ms < oldest->second.created_ms) oldest = it;
    by_hash_.erase(oldest);
  }
  by_hash_[audit::sha256_hex(cookie)] = s;
  return {std::move(cookie), std::move(s)};
}

std::optional<console_session> session_store::find(std::string_view cookie, std::int64_t now_ms,
                                                   bool touch) {
  if (cookie.empty()) return std::nullopt;
  const std::string key = audit::sha256_hex(cookie);
  std::lock_guard lock(mutex_);
  const auto it = by_hash_.find(key);
  if (it == by_hash_.end()) return std::nullopt;
  if (it->second.expires_ms(cfg_) <= now_ms) {
    by_hash_.erase(it);
    return std::nullopt;
  }
  if (touch) it->second.last_used_ms = now_ms;
  return it->second;
}

void session_store::close(std::string_view cookie) {
  if (cookie.empty()) return;
  const std::string key = audit::sha256_hex(cookie);
  std::lock_guard lock(mutex_);
  by_hash_.erase(key);
}

std::size_t session_store::size() {
  std::lock_guard lock(mutex_);
  return by_hash_.size();
}

std::string cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const std::size_t semi = header.find(';');
    std::string_view pair = header.substr(0, semi);
    header = semi == std::string_view::npos ? std::string_view{} : header.substr(semi + 1);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    if (pair.size() > name.size() && pair.starts_with(name) && pair[name.size()] == '=')
      return std::string(pair.substr(name.size() + 1));
  }
  return {};
}

bool same_secret(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::map<std::string, console_asset> load_console_assets(const std::filesystem::path& dir,
                                                         std::size_t max_bytes) {
  namespace fs = std::filesystem;
  static const std::map<std::string, std::string> types{
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".woff2", "font/woff2"},
  };
  std::error_code ec;
  if (!fs::is_regular_file(dir / "index.html", ec))
    throw std::runtime_error("console directory " + dir.string() + " has no index.html");
  std::map<std::string, console_asset> out;
  std::size_t total = 0;
  fs::recursive_directory_iterator it(dir, ec), end;
  if (ec) throw std::runtime_error("console directory " + dir.string() + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw std::runtime_error("console directory " + dir.string() + ": " + ec.message());
    if (it.depth() > 1) {  // /ui/NAME and /ui/DIR/NAME only (the server's route patterns)
      it.disable_recursion_pending();
      continue;
    }
    const auto type = types.find(it->path().extension().string());
    if (!it->is_regular_file() || type == types.end()) continue;
    std::ifstream in(it->path(), std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    if (!in) throw std::runtime_error("console file " + it->path().string() + ": cannot read");
    std::string body = std::move(s).str();
    total += body.size();
    if (total > max_bytes)
      throw std::runtime_error("console directory " + dir.string() + " holds more than " +
                               std::to_string(max_bytes) + " bytes of files");
    const std::string url = "/ui/" + it->path().lexically_relative(dir).generic_string();
    out[url] = {std::make_shared<const std::string>(std::move(body)), type->second};
  }
  out["/ui/"] = out.at("/ui/index.html");
  return out;
}

const std::vector<std::pair<std::string, std::string>>& console_headers() {
  static const std::vector<std::pair<std::string, std::string>> h{
      {"Content-Security-Policy",
       "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'"},
      {"X-Content-Type-Options", "nosniff"},
      {"Referrer-Policy", "no-referrer"},
      {"X-Frame-Options", "DENY"},
      {"Cache-Control", "no-cache"},
  };
  return h;
}

}  // namespace sluice::control::api
