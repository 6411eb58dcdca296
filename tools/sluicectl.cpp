// sluicectl: the operators' command line. Talks to sluice-controld over its HTTP API
// (control/README.md, "HTTP API (v1)"), and works offline for minisign-compatible keys and
// signatures (control/crypto/minisign.hpp) and for checking the audit chain of a store file.
//
// Shape: parse with CLI11 into one options struct per command, then run exactly one
// `run_<command>` function. Every HTTP exchange goes through api_client::request, which maps
// transport failures and status codes onto the documented exit statuses, so commands only decide
// what to send and how to print the answer. Human output by default; --json prints the
// controller's JSON (or an equivalent object for offline commands) for scripts.

#include <fcntl.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "control/audit/audit.hpp"
#include "control/audit/checkpoint.hpp"
#include "control/common/sigpipe.hpp"
#include "control/crypto/minisign.hpp"
#include "control/pki/pki.hpp"
#include "control/store/store.hpp"

namespace sluice::control::ctl {
namespace {

using json = nlohmann::json;

// ---- exit statuses and reporting --------------------------------------------------------------

enum class exit_status : int { ok = 0, failed = 1, usage = 2, unreachable = 3 };

constexpr const char* exit_status_footer =
    "Exit status:\n"
    "  0  success\n"
    "  1  refused or failed (invalid signature, controller answered 4xx, audit chain broken,\n"
    "     unreadable file)\n"
    "  2  usage error\n"
    "  3  controller unreachable, or it answered 5xx\n"
    "\n"
    "Environment: SLUICE_CONTROLLER (default for --controller), SLUICE_TOKEN (bearer token when\n"
    "neither --token nor --token-file is given).";

[[nodiscard]] int code_of(exit_status s) { return static_cast<int>(s); }

struct global_options {
  std::string controller = "http://127.0.0.1:9480";
  std::string token;
  std::string token_file;
  std::string ca;  // CA certificates (PEM) that vouch for an https:// controller
  double timeout = 10.0;
  bool json = false;
};

// Prints a failure: a human line on stderr always; with --json also an object on stdout, so a
// script reading stdout sees why. `detail` (an object) is merged into that object.
[[nodiscard]] int fail(const global_options& g, exit_status s, std::string_view code,
                       const std::string& message, const json& detail = json::object()) {
  std::cerr << "sluicectl: " << message << '\n';
  if (g.json) {
    json out = detail.is_object() ? detail : json::object();
    out["error"] = code;
    if (!out.contains("message")) out["message"] = message;  // the controller's own, if any
    std::cout << out.dump(2) << '\n';
  }
  return code_of(s);
}

void print_json(const json& j) { std::cout << j.dump(2) << '\n'; }

// ---- small helpers over files and JSON --------------------------------------------------------

[[nodiscard]] std::optional<std::string> read_file(const std::string& path, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    *error = "cannot read " + path;
    return std::nullopt;
  }
  return ss.str();
}

// A file written under a temporary name in its final directory and moved into place by commit(),
// so a reader never sees half a key or signature, and a crash leaves the old file intact. The
// temporary is removed if it is never committed.
class staged_file {
 public:
  staged_file() = default;
  staged_file(const staged_file&) = delete;
  staged_file& operator=(const staged_file&) = delete;
  staged_file(staged_file&& o) noexcept
      : path_(std::move(o.path_)), tmp_(std::exchange(o.tmp_, {})) {}
  ~staged_file() {
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
  }

  // Writes `content` with permissions `mode` (not subject to the umask).
  [[nodiscard]] static std::optional<staged_file> write(const std::string& path,
                                                        std::string_view content, mode_t mode,
                                                        std::string* error) {
    staged_file f;
    f.path_ = path;
    std::string tmpl = path + ".tmp.XXXXXX";
    const int fd = ::mkstemp(tmpl.data());  // created 0600: a secret is never readable by others
    if (fd < 0) {
      *error = "cannot create a file next to " + path + ": " + std::strerror(errno);
      return std::nullopt;
    }
    f.tmp_ = tmpl;
    int err = ::fchmod(fd, mode) == 0 ? 0 : errno;
    for (std::size_t done = 0; err == 0 && done < content.size();) {
      const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
      if (n > 0)
        done += static_cast<std::size_t>(n);
      else if (n < 0 && errno != EINTR)
        err = errno;
    }
    if (err == 0 && ::fsync(fd) != 0) err = errno;
    if (::close(fd) != 0 && err == 0) err = errno;
    if (err != 0) {
      *error = "cannot write " + path + ": " + std::strerror(err);
      return std::nullopt;
    }
    return f;
  }

  // Moves the file into place. Without `overwrite`, fails if the path exists (link(2) is
  // atomic, so a file created meanwhile by someone else is not clobbered either).
  [[nodiscard]] bool commit(bool overwrite, std::string* error) {
    const int rc =
        overwrite ? ::rename(tmp_.c_str(), path_.c_str()) : ::link(tmp_.c_str(), path_.c_str());
    if (rc != 0) {
      *error = errno == EEXIST ? path_ + " exists (use --force to overwrite)"
                               : "cannot write " + path_ + ": " + std::strerror(errno);
      return false;
    }
    if (!overwrite) ::unlink(tmp_.c_str());
    tmp_.clear();
    return true;
  }

 private:
  std::string path_;
  std::string tmp_;
};

// Any scalar member as text ("" when absent or null), for printing answers whose exact types
// the contract leaves open.
[[nodiscard]] std::string text_of(const json& o, const std::string& key) {
  if (!o.is_object() || !o.contains(key)) return {};
  const json& v = o.at(key);
  if (v.is_null()) return {};
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

// Unix seconds as RFC 3339 UTC; strings are shown as given.
[[nodiscard]] std::string time_text(const json& o, const std::string& key) {
  if (!o.is_object() || !o.contains(key)) return "-";
  const json& v = o.at(key);
  if (v.is_number_integer() && v.get<std::int64_t>() > 0) {
    const std::time_t t = static_cast<std::time_t>(v.get<std::int64_t>());
    std::tm tm{};
    char buf[32];
    if (::gmtime_r(&t, &tm) != nullptr && std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm))
      return buf;
  }
  const std::string s = text_of(o, key);
  return s.empty() || s == "0" ? "-" : s;
}

// Rows printed as left-aligned columns.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << '\n';
  }
}

// Any JSON value as indented "key: value" text; used where the contract leaves the shape open
// (rollout, emergency stop, nodes' extra fields).
void print_human(const json& v, int indent = 0) {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  auto scalar = [](const json& s) { return s.is_string() ? s.get<std::string>() : s.dump(); };
  auto is_flat = [](const json& a) {
    for (const auto& e : a)
      if (e.is_structured()) return false;
    return true;
  };
  if (v.is_object()) {
    for (const auto& [key, val] : v.items()) {
      if (val.is_object() && !val.empty()) {
        std::cout << pad << key << ":\n";
        print_human(val, indent + 2);
      } else if (val.is_array() && !is_flat(val)) {
        std::cout << pad << key << ":\n";
        print_human(val, indent + 2);
      } else if (val.is_array()) {
        std::string joined;
        for (const auto& e : val) joined += (joined.empty() ? "" : ", ") + scalar(e);
        std::cout << pad << key << ": " << (joined.empty() ? "-" : joined) << '\n';
      } else {
        std::cout << pad << key << ": " << (val.is_object() ? "-" : scalar(val)) << '\n';
      }
    }
  } else if (v.is_array()) {
    for (const auto& e : v) {
      if (e.is_structured()) {
        std::cout << pad << "-\n";
        print_human(e, indent + 2);
      } else {
        std::cout << pad << "- " << scalar(e) << '\n';
      }
    }
  } else {
    std::cout << pad << scalar(v) << '\n';
  }
}

// ---- directive references ---------------------------------------------------------------------

// Character sets of control/directive/directive.hpp (issuer [a-z0-9._-]{1,64}, id
// [A-Za-z0-9._-]{1,64}); they also make the reference safe to put into a URL path unescaped.
// (No std::regex in this file: GCC 12 reports false maybe-uninitialized warnings inside
// libstdc++'s regex under -O2 with the sanitizers, which -Werror turns into a broken build.)
[[nodiscard]] bool is_name(std::string_view s, bool upper_case_ok) {
  if (s.empty() || s.size() > 64) return false;
  for (const char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                    c == '-' || (upper_case_ok && c >= 'A' && c <= 'Z');
    if (!ok) return false;
  }
  return true;
}

struct directive_ref {
  std::string issuer;
  std::string id;
  [[nodiscard]] std::string path() const { return "/v1/directives/" + issuer + "/" + id; }
};

[[nodiscard]] std::optional<directive_ref> parse_ref(const std::string& text) {
  const auto slash = text.find('/');
  if (slash == std::string::npos) return std::nullopt;
  directive_ref r{text.substr(0, slash), text.substr(slash + 1)};
  if (!is_name(r.issuer, false) || !is_name(r.id, true)) return std::nullopt;
  return r;
}

const CLI::Validator directive_ref_check(
    [](std::string& s) -> std::string {
      return parse_ref(s) ? std::string{}
                          : "'" + s + "' is not ISSUER/ID (issuer [a-z0-9._-], id [A-Za-z0-9._-])";
    },
    "ISSUER/ID");

const CLI::Validator single_line_check(
    [](std::string& s) -> std::string {
      return s.find_first_of("\r\n") == std::string::npos ? std::string{} : "must be a single line";
    },
    "");

// ---- the API client ---------------------------------------------------------------------------

enum class http_method : std::uint8_t { get, post, del };

struct api_response {
  exit_status status = exit_status::ok;
  // 2xx: the answer ({} when empty). Otherwise {"error", "message", "status"?, "line"?,
  // "column"?}: the controller's error object, or one describing the transport failure.
  json body;
  [[nodiscard]] bool ok() const noexcept { return status == exit_status::ok; }
};

// "http(s)://HOST[:PORT]" (one trailing '/' allowed and dropped), exactly what httplib's Client
// accepts: it would take anything else (a path, say) as a host name and fail later with a
// confusing message. HOST is a name or a bracketed IPv6 address.
[[nodiscard]] std::optional<std::string> controller_base(std::string_view url) {
  if (url.ends_with('/')) url.remove_suffix(1);
  std::string_view rest;
  if (url.starts_with("http://"))
    rest = url.substr(7);
  else if (url.starts_with("https://"))
    rest = url.substr(8);
  else
    return std::nullopt;
  std::string_view host;
  std::string_view after;
  if (rest.starts_with('[')) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = rest.substr(1, close - 1);
    after = rest.substr(close + 1);
    if (host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos)
      return std::nullopt;
  } else {
    const auto colon = rest.find(':');
    host = rest.substr(0, colon);
    after = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon);
    if (!is_name(host, true)) return std::nullopt;
  }
  if (host.empty()) return std::nullopt;
  if (!after.empty()) {
    const std::string_view port = after.substr(1);
    if (after[0] != ':' || port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoul(std::string(port)) > 65535)
      return std::nullopt;
  }
  return std::string(url);
}

class api_client {
 public:
  // nullopt with `*error` set when the URL or the token cannot be used (a usage error).
  [[nodiscard]] static std::optional<api_client> create(const global_options& g,
                                                        std::string* error) {
    auto base = controller_base(g.controller);
    if (!base) {
      *error = "--controller '" + g.controller + "' is not http(s)://HOST[:PORT]";
      return std::nullopt;
    }
    std::string token = g.token;
    if (token.empty() && !g.token_file.empty()) {
      auto text = read_file(g.token_file, error);
      if (!text) return std::nullopt;
      token = *text;
      while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
        token.pop_back();
    }
    if (token.empty()) {
      if (const char* env = std::getenv("SLUICE_TOKEN")) token = env;
    }
    if (token.find_first_of("\r\n") != std::string::npos) {
      *error = "the token contains a line break";
      return std::nullopt;
    }
    api_client c;
    c.base_ = std::move(*base);
    c.client_ = std::make_unique<httplib::Client>(c.base_);
    const auto usec = static_cast<std::int64_t>(g.timeout * 1e6);
    const auto sec = static_cast<time_t>(usec / 1000000);
    const auto frac = static_cast<time_t>(usec % 1000000);
    c.client_->set_connection_timeout(sec, frac);
    c.client_->set_read_timeout(sec, frac);
    c.client_->set_write_timeout(sec, frac);
    if (!g.ca.empty()) {
      if (!c.base_.starts_with("https://")) {
        *error = "--ca is for https:// controllers";
        return std::nullopt;
      }
      if (!read_file(g.ca, error)) return std::nullopt;
      c.client_->set_ca_cert_path(g.ca);
    }
    if (!token.empty()) c.headers_.emplace("Authorization", "Bearer " + token);
    c.headers_.emplace("Accept", "application/json");
    return c;
  }

  [[nodiscard]] api_response get(const std::string& path) {
    return request(http_method::get, path, nullptr);
  }
  [[nodiscard]] api_response post(const std::string& path, const json& body) {
    return request(http_method::post, path, &body);
  }
  [[nodiscard]] api_response del(const std::string& path, const json& body) {
    return request(http_method::del, path, &body);
  }

 private:
  api_client() = default;

  [[nodiscard]] api_response request(http_method method, const std::string& path,
                                     const json* body) {
    std::string payload;
    if (body != nullptr) {
      try {
        payload = body->dump();
      } catch (const json::type_error&) {
        return {exit_status::failed,
                {{"error", "invalid_text"},
                 {"message", "the request contains text that is not valid UTF-8"}}};
      }
    }
    httplib::Result r = method == http_method::get ? client_->Get(path, headers_)
                        : method == http_method::post
                            ? client_->Post(path, headers_, payload, "application/json")
                            : client_->Delete(path, headers_, payload, "application/json");
    if (!r) {
      return {exit_status::unreachable,
              {{"error", "unreachable"},
               {"message", "cannot reach the controller at " + base_ + " (" +
                               httplib::to_string(r.error()) + ")"}}};
    }
    const json parsed = json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    if (r->status >= 200 && r->status < 300) {
      if (r->body.empty()) return {exit_status::ok, json::object()};
      if (parsed.is_discarded()) {
        return {exit_status::failed,
                {{"error", "bad_response"},
                 {"message", "the controller answered HTTP " + std::to_string(r->status) +
                                 " with a body that is not JSON"}}};
      }
      return {exit_status::ok, parsed};
    }
    json err = {{"status", r->status}};
    if (parsed.is_object() && parsed.contains("error")) {
      for (const char* key : {"error", "message", "line", "column"})
        if (parsed.contains(key)) err[key] = parsed[key];
    } else {
      err["error"] = "http_" + std::to_string(r->status);
      std::string text = r->body.substr(0, 200);
      while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
        text.pop_back();
      err["message"] = text.empty() ? r->reason : text;
    }
    return {r->status >= 500 ? exit_status::unreachable : exit_status::failed, err};
  }

  std::string base_;
  std::unique_ptr<httplib::Client> client_;
  httplib::Headers headers_;
};

// "controller refused (HTTP 400): bad_value at 3:7: targets.prefixes[0]: ..." and the like.
[[nodiscard]] int fail_api(const global_options& g, const api_response& r) {
  const json& e = r.body;
  std::string msg;
  if (e.contains("status")) {
    const int status = e["status"].get<int>();
    msg = std::string(status >= 500 ? "controller failed" : "controller refused") + " (HTTP " +
          std::to_string(status) + "): ";
  }
  if (!msg.empty()) msg += text_of(e, "error");  // transport failures have no code worth showing
  if (e.contains("line") && e["line"].is_number_integer() && e["line"].get<int>() > 0)
    msg += " at " + text_of(e, "line") + ":" + text_of(e, "column");
  const std::string text = text_of(e, "message");
  if (!text.empty()) msg += (msg.empty() ? "" : ": ") + text;
  return fail(g, r.status, text_of(e, "error"), msg, e);
}

// One exchange whose answer a command prints: runs it, reports a failure, or hands the body on.
template <typename Print>
[[nodiscard]] int exchange(const global_options& g,
                           const std::function<api_response(api_client&)>& call,
                           Print&& print_human_answer) {
  std::string error;
  auto client = api_client::create(g, &error);
  if (!client) return fail(g, exit_status::usage, "usage", error);
  const api_response r = call(*client);
  if (!r.ok()) return fail_api(g, r);
  if (g.json)
    print_json(r.body);
  else
    print_human_answer(r.body);
  return code_of(exit_status::ok);
}

// ---- printing directives ----------------------------------------------------------------------

[[nodiscard]] std::string ref_text(const json& d) {
  return text_of(d, "issuer") + "/" + text_of(d, "id");
}

[[nodiscard]] std::string state_text(const json& d) {
  std::string s = text_of(d, "state");
  const std::string why = text_of(d, "end_reason");
  if (!why.empty()) s += " (" + why + ")";
  return s.empty() ? "-" : s;
}

[[nodiscard]] std::string enforcement_text(const json& d) {
  if (!d.contains("enforcement") || !d["enforcement"].is_object()) return "-";
  const json& e = d["enforcement"];
  return text_of(e, "enforcing") + "/" + text_of(e, "in_scope");
}

[[nodiscard]] std::string approvals_text(const json& d) {
  if (!d.contains("approvals") || !d["approvals"].is_array() || d["approvals"].empty())
    return "none";
  std::string s;
  for (const auto& a : d["approvals"])
    s += (s.empty() ? "" : ", ") + text_of(a, "actor") + " at " + time_text(a, "at");
  return s;
}

void print_directive_line(const json& d, std::string_view verb) {
  std::cout << verb << ' ' << ref_text(d) << ": " << text_of(d, "action") << ", " << state_text(d)
            << ", approvals: " << approvals_text(d) << '\n';
}

void print_indented(std::string_view text) {
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) std::cout << "  " << line << '\n';
}

void print_directive_detail(const json& d) {
  print_table({
      {"directive", ref_text(d)},
      {"action", text_of(d, "action")},
      {"state", state_text(d)},
      {"submitted", text_of(d, "submitted_by") + " at " + time_text(d, "received_at")},
      {"window", time_text(d, "not_before") + " .. " + time_text(d, "not_after")},
      {"approvals", approvals_text(d)},
      {"enforcing", enforcement_text(d) + " nodes in scope"},
  });
  if (d.contains("document")) {
    std::cout << "document:\n";
    print_indented(text_of(d, "document"));
  }
  if (d.contains("signature")) {
    std::cout << "signature:\n";
    print_indented(text_of(d, "signature"));
  }
}

// ---- offline: keys and signatures -------------------------------------------------------------

struct keygen_options {
  std::string public_path;
  std::string secret_path;
  std::string comment;
  bool force = false;
};

int run_keygen(const global_options& g, const keygen_options& o) {
  namespace fs = std::filesystem;
  std::error_code ec1, ec2;
  if (fs::weakly_canonical(o.public_path, ec1) == fs::weakly_canonical(o.secret_path, ec2))
    return fail(g, exit_status::usage, "usage", "--public and --secret name the same file");
  // Checked before generating anything; commit() checks again atomically.
  if (!o.force) {
    for (const std::string& p : {o.public_path, o.secret_path}) {
      std::error_code ec;
      if (fs::exists(fs::symlink_status(p, ec)))
        return fail(g, exit_status::failed, "exists", p + " exists (use --force to overwrite)");
    }
  }
  const auto pair = crypto::generate_key_pair();
  if (!pair) return fail(g, exit_status::failed, "crypto_failure", "key generation failed");
  const std::string id = crypto::to_hex(pair->pub.id);
  const std::string pub_comment = o.comment.empty() ? "minisign public key " + id : o.comment;
  const std::string sec_comment = o.comment.empty() ? "sluice secret key " + id : o.comment;

  std::string error;
  auto sec = staged_file::write(o.secret_path, crypto::format_secret_key(pair->sec, sec_comment),
                                0600, &error);
  if (!sec) return fail(g, exit_status::failed, "io", error);
  auto pub = staged_file::write(o.public_path, crypto::format_public_key(pair->pub, pub_comment),
                                0644, &error);
  if (!pub) return fail(g, exit_status::failed, "io", error);
  if (!sec->commit(o.force, &error)) return fail(g, exit_status::failed, "io", error);
  if (!pub->commit(o.force, &error)) {
    // A public key appeared meanwhile: do not leave a secret without its public half.
    if (!o.force) ::unlink(o.secret_path.c_str());
    return fail(g, exit_status::failed, "io", error);
  }
  if (g.json) {
    print_json({{"key_id", id}, {"public", o.public_path}, {"secret", o.secret_path}});
  } else {
    std::cout << "key id " << id << '\n'
              << "public key: " << o.public_path << '\n'
              << "secret key: " << o.secret_path << " (mode 0600; keep it offline)\n";
  }
  return code_of(exit_status::ok);
}

struct sign_options {
  std::string secret_path;
  std::string trusted_comment;
  std::string document;
  std::string signature_path;  // default DOC.minisig
};

int run_sign(const global_options& g, const sign_options& o) {
  std::string error;
  const auto key_text = read_file(o.secret_path, &error);
  if (!key_text) return fail(g, exit_status::failed, "io", error);
  const auto key = crypto::parse_secret_key(*key_text, &error);
  if (!key) return fail(g, exit_status::failed, "bad_key", o.secret_path + ": " + error);
  const auto doc = read_file(o.document, &error);
  if (!doc) return fail(g, exit_status::failed, "io", error);

  std::string comment = o.trusted_comment;
  if (comment.empty()) {
    // minisign's own default, so signatures made either way read alike.
    const std::string base = std::filesystem::path(o.document).filename().string();
    if (base.find_first_of("\r\n") != std::string::npos)
      return fail(g, exit_status::failed, "usage",
                  "file name contains a line break; give --trusted-comment");
    comment = "timestamp:" + std::to_string(std::time(nullptr)) + "\tfile:" + base + "\thashed";
  }
  const auto sig = crypto::sign(*key, std::string_view(*doc), comment,
                                "signature from sluicectl secret key " + crypto::to_hex(key->id));
  if (!sig) return fail(g, exit_status::failed, "crypto_failure", "signing failed");
  const std::string out = o.signature_path.empty() ? o.document + ".minisig" : o.signature_path;
  auto file = staged_file::write(out, *sig, 0644, &error);
  if (!file || !file->commit(/*overwrite=*/true, &error))
    return fail(g, exit_status::failed, "io", error);
  if (g.json) {
    print_json(
        {{"signature", out}, {"key_id", crypto::to_hex(key->id)}, {"trusted_comment", comment}});
  } else {
    std::cout << "signature written to " << out << " (key id " << crypto::to_hex(key->id) << ")\n"
              << "trusted comment: " << comment << '\n';
  }
  return code_of(exit_status::ok);
}

struct verify_options {
  std::string public_path;
  std::string document;
  std::string signature_path;  // default DOC.minisig
};

int run_verify(const global_options& g, const verify_options& o) {
  std::string error;
  const auto key_text = read_file(o.public_path, &error);
  if (!key_text) return fail(g, exit_status::failed, "io", error);
  const auto key = crypto::parse_public_key(*key_text, &error);
  if (!key) return fail(g, exit_status::failed, "bad_key", o.public_path + ": " + error);
  const auto doc = read_file(o.document, &error);
  if (!doc) return fail(g, exit_status::failed, "io", error);
  const std::string sig_path =
      o.signature_path.empty() ? o.document + ".minisig" : o.signature_path;
  const auto sig = read_file(sig_path, &error);
  if (!sig) return fail(g, exit_status::failed, "io", error);

  const crypto::verify_result r = crypto::verify(*key, std::string_view(*doc), *sig);
  if (!r) {
    std::string msg = sig_path + ": " + std::string(crypto::describe(r.outcome));
    if (r.outcome == crypto::verify_outcome::wrong_key) {
      if (const auto id = crypto::signature_key_id(*sig))
        msg +=
            ": signed by key " + crypto::to_hex(*id) + ", public key is " + crypto::to_hex(key->id);
    }
    return fail(g, exit_status::failed, crypto::to_string(r.outcome), msg, {{"valid", false}});
  }
  if (g.json) {
    print_json({{"valid", true},
                {"key_id", crypto::to_hex(key->id)},
                {"trusted_comment", r.trusted_comment}});
  } else {
    std::cout << "signature valid (key id " << crypto::to_hex(key->id) << ")\n"
              << "trusted comment: " << r.trusted_comment << '\n';
  }
  return code_of(exit_status::ok);
}

// ---- controller commands ----------------------------------------------------------------------

// The value of the document's top-level `action:` key. A line scan, not a YAML parse: sluicectl
// links no YAML library (the controller parses the document for real and refuses anything
// malformed). It only answers for the plain block style directives use, and nullopt when the key
// is missing, given twice or hidden in flow style, so `lift` refuses rather than guesses.
[[nodiscard]] std::optional<std::string> top_level_action(std::string_view doc) {
  auto skip_blanks = [](std::string_view& s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  };
  std::optional<std::string> found;
  while (!doc.empty()) {
    const auto nl = doc.find('\n');
    std::string_view line = doc.substr(0, nl);
    doc = nl == std::string_view::npos ? std::string_view{} : doc.substr(nl + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.starts_with('{')) return std::nullopt;  // flow style
    std::string_view rest;
    bool keyed = false;
    for (const std::string_view key : {"action", "\"action\"", "'action'"}) {
      if (!line.starts_with(key)) continue;
      rest = line.substr(key.size());
      skip_blanks(rest);
      keyed = rest.starts_with(':');  // else another key that starts with "action"
      break;
    }
    if (!keyed) continue;
    rest.remove_prefix(1);
    // A value on the next line, a second action key or trailing text: refuse, do not guess.
    if (found || rest.empty() || (rest.front() != ' ' && rest.front() != '\t')) return std::nullopt;
    skip_blanks(rest);
    std::string_view value;
    if (rest.starts_with('"') || rest.starts_with('\'')) {
      const auto close = rest.find(rest.front(), 1);
      if (close == std::string_view::npos) return std::nullopt;
      value = rest.substr(1, close - 1);
      rest.remove_prefix(close + 1);
    } else {
      const auto end = std::min(rest.find(' '), rest.find('\t'));
      value = rest.substr(0, end);
      rest.remove_prefix(value.size());
    }
    skip_blanks(rest);
    if (!rest.empty() && !rest.starts_with('#')) return std::nullopt;
    found = std::string(value);
  }
  return found;
}

struct submit_options {
  std::string document;
  std::string signature_path;  // default DOC.minisig
};

// `submit` and `lift` (which requires the document to be an unblock).
int run_submit(const global_options& g, const submit_options& o, bool lift) {
  std::string error;
  const auto doc = read_file(o.document, &error);
  if (!doc) return fail(g, exit_status::failed, "io", error);
  const std::string sig_path =
      o.signature_path.empty() ? o.document + ".minisig" : o.signature_path;
  const auto sig = read_file(sig_path, &error);
  if (!sig) return fail(g, exit_status::failed, "io", error);
  // Cheap local check so a wrong file is named here, not as a 400 from the controller.
  if (!crypto::signature_key_id(*sig))
    return fail(g, exit_status::failed, "malformed_signature",
                sig_path + ": " +
                    std::string(crypto::describe(crypto::verify_outcome::malformed_signature)));
  if (lift) {
    const auto action = top_level_action(*doc);
    if (!action)
      return fail(g, exit_status::failed, "not_unblock",
                  o.document +
                      ": cannot find one top-level 'action:' line; lift takes an "
                      "'action: unblock' directive");
    if (*action != "unblock")
      return fail(g, exit_status::failed, "not_unblock",
                  o.document + ": action is '" + *action +
                      "'; lift takes an 'action: unblock' "
                      "directive (use submit for others)");
  }
  const json body = {{"document", *doc}, {"signature", *sig}};
  return exchange(
      g, [&](api_client& c) { return c.post("/v1/directives", body); },
      [&](const json& d) {
        print_directive_line(d, "submitted");
        if (text_of(d, "state") == "awaiting_approval")
          std::cout << "next: an engineer runs 'sluicectl approve " << ref_text(d) << "'\n";
      });
}

int run_approve(const global_options& g, const directive_ref& ref) {
  return exchange(
      g, [&](api_client& c) { return c.post(ref.path() + "/approve", json::object()); },
      [](const json& d) { print_directive_line(d, "approved"); });
}

// revoke (ministry) or reject (engineer, awaiting approval only): the directive ends.
int run_end(const global_options& g, const directive_ref& ref, const std::string& reason,
            const std::string& verb) {
  return exchange(
      g,
      [&](api_client& c) {
        return c.post(ref.path() + "/" + verb, {{"reason", reason}});
      },
      [&verb](const json& d) { print_directive_line(d, verb == "revoke" ? "revoked" : "rejected"); });
}

int run_show(const global_options& g, const directive_ref& ref) {
  return exchange(
      g, [&](api_client& c) { return c.get(ref.path()); }, print_directive_detail);
}

// ---- directive impact and override (issue 8) --------------------------------------------------

struct impact_options {
  std::int64_t window = 3600;  // seconds back from now
  std::size_t top = 10;
};

// A share (0..1) as "66.67%"; "-" when the answer lacks it.
[[nodiscard]] std::string percent_text(const json& o, const std::string& key) {
  if (!o.is_object() || !o.contains(key) || !o.at(key).is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", o.at(key).get<double>() * 100.0);
  return buf;
}

[[nodiscard]] const json& array_of(const json& o, const std::string& key) {
  static const json empty = json::array();
  return o.is_object() && o.contains(key) && o.at(key).is_array() ? o.at(key) : empty;
}

void print_impact(const json& r) {
  std::cout << "directive " << text_of(r, "directive") << ": " << text_of(r, "reports")
            << " reports from " << text_of(r, "nodes") << " nodes, " << time_text(r, "since")
            << " .. " << time_text(r, "until") << " (newest window ends "
            << time_text(r, "newest_window_end") << ")\n";
  for (const auto& w : array_of(r, "warnings"))
    std::cout << "warning: " << (w.is_string() ? w.get<std::string>() : w.dump()) << '\n';
  const json& prefixes = array_of(r, "prefixes");
  std::cout << '\n';
  if (prefixes.empty()) {
    std::cout << "no prefixes\n";
  } else {
    // "own": flows whose name the directive's own domains match; the rest of a prefix's traffic
    // is collateral an address block would also hit.
    std::vector<std::vector<std::string>> rows{
        {"PREFIX", "FLOWS", "OWN", "UNNAMED", "OTHER", "TOP OTHER NAMES"}};
    for (const auto& p : prefixes) {
      std::string names;
      for (const auto& n : array_of(p, "top_other"))
        names += (names.empty() ? "" : ", ") + text_of(n, "name") + " " + percent_text(n, "share");
      rows.push_back({text_of(p, "prefix"), text_of(p, "flows"), percent_text(p, "own_share"),
                      percent_text(p, "unnamed_share"), text_of(p, "other_flows"),
                      names.empty() ? "-" : names});
    }
    print_table(rows);
  }
  const json& domains = array_of(r, "domains");
  if (domains.empty()) return;
  std::cout << '\n';
  std::vector<std::vector<std::string>> rows{{"DOMAIN", "FLOWS", "NAMES"}};
  for (const auto& d : domains) {
    std::string names;
    for (const auto& n : array_of(d, "names"))
      names += (names.empty() ? "" : ", ") + text_of(n, "name") + " " + text_of(n, "flows");
    rows.push_back({text_of(d, "domain"), text_of(d, "flows"), names.empty() ? "-" : names});
  }
  print_table(rows);
}

int run_directive_impact(const global_options& g, const directive_ref& ref,
                         const impact_options& o) {
  const std::string path = ref.path() + "/impact?window=" + std::to_string(o.window) +
                           "&top=" + std::to_string(o.top);
  return exchange(
      g, [&](api_client& c) { return c.get(path); }, print_impact);
}

int run_directive_override(const global_options& g, const directive_ref& ref,
                           const std::string& reason) {
  return exchange(
      g, [&](api_client& c) { return c.post(ref.path() + "/override", {{"reason", reason}}); },
      [](const json& d) {
        const json& overrides = array_of(d, "overrides");
        std::cout << "override recorded for " << ref_text(d) << ": " << state_text(d) << ", "
                  << overrides.size() << (overrides.size() == 1 ? " override" : " overrides")
                  << '\n';
        for (const auto& o : overrides)
          std::cout << "  " << text_of(o, "actor") << " at " << time_text(o, "at") << ": "
                    << text_of(o, "reason") << '\n';
      });
}

int run_list(const global_options& g) {
  return exchange(
      g, [](api_client& c) { return c.get("/v1/directives"); },
      [](const json& body) {
        const json list = body.contains("directives") ? body["directives"] : json::array();
        if (!list.is_array() || list.empty()) {
          std::cout << "no directives\n";
          return;
        }
        std::vector<std::vector<std::string>> rows{
            {"DIRECTIVE", "ACTION", "STATE", "NOT BEFORE", "NOT AFTER", "APPROVALS", "ENFORCING"}};
        for (const auto& d : list) {
          const std::size_t approvals =
              d.contains("approvals") && d["approvals"].is_array() ? d["approvals"].size() : 0;
          rows.push_back({ref_text(d), text_of(d, "action"), state_text(d),
                          time_text(d, "not_before"), time_text(d, "not_after"),
                          std::to_string(approvals), enforcement_text(d)});
        }
        print_table(rows);
      });
}

int run_nodes(const global_options& g) {
  return exchange(
      g, [](api_client& c) { return c.get("/v1/nodes"); },
      [](const json& body) {
        const json list = body.contains("nodes") ? body["nodes"] : json::array();
        if (!list.is_array() || list.empty()) {
          std::cout << "no nodes\n";
          return;
        }
        // The contract leaves a node's fields open; these follow store::node_record.
        auto first_of = [](const json& n, std::initializer_list<const char*> keys) {
          for (const char* k : keys)
            if (const std::string v = text_of(n, k); !v.empty()) return v;
          return std::string("-");
        };
        std::vector<std::vector<std::string>> rows{
            {"NODE", "REVISION", "HEALTH", "LAST SEEN", "LABELS", "PROBLEM"}};
        for (const auto& n : list) {
          std::string labels;
          if (n.contains("labels") && n["labels"].is_object())
            for (const auto& [k, v] : n["labels"].items())
              labels += (labels.empty() ? "" : ",") + k + "=" +
                        (v.is_string() ? v.get<std::string>() : v.dump());
          std::string problem;
          if (text_of(n, "stale") == "true") problem = "stale";
          if (const std::string st = text_of(n, "state"); st == "revoked" || st == "not_enrolled")
            problem = st;  // issue 14: refused by the inventory
          if (text_of(n, "nack") == "true")
            problem += (problem.empty() ? "" : "; ") + std::string("nack r") +
                       text_of(n, "nack_revision") + ": " + text_of(n, "error");
          rows.push_back({first_of(n, {"node_id", "node", "id"}),
                          first_of(n, {"applied_revision", "revision"}), first_of(n, {"health"}),
                          time_text(n, "last_seen"), labels.empty() ? "-" : labels,
                          problem.empty() ? "-" : problem});
        }
        print_table(rows);
      });
}

// ---- node identity (issue 14): the node CA and the inventory -----------------------------------

// "k=v,k=v" -> {"k": "v"}: names and values 1-64 of [A-Za-z0-9_.-], names unique.
[[nodiscard]] std::optional<json> parse_label_list(const std::string& text, std::string* error) {
  json out = json::object();
  if (text.empty()) return out;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    const auto eq = item.find('=');
    const std::string k = eq == std::string::npos ? item : item.substr(0, eq);
    const std::string v = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (eq == std::string::npos || !pki::valid_node_id(k) || !pki::valid_node_id(v)) {
      *error = "--labels: '" + item + "' is not name=value (each 1-64 of [A-Za-z0-9_.-])";
      return std::nullopt;
    }
    if (out.contains(k)) {
      *error = "--labels: '" + k + "' given twice";
      return std::nullopt;
    }
    out[k] = v;
  }
  return out;
}

[[nodiscard]] std::string label_text(const json& labels) {
  std::string s;
  if (labels.is_object())
    for (const auto& [k, v] : labels.items())
      s += (s.empty() ? "" : ",") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  return s;
}

const CLI::Validator node_id_check(
    [](std::string& s) -> std::string {
      return pki::valid_node_id(s) ? std::string{} : "'" + s + "' is not a node id (1-64 of [A-Za-z0-9_.-])";
    },
    "NODE");

// Files written together into `dir` (created 0700 if missing): all staged first, then moved
// into place; without --force none may exist already.
[[nodiscard]] int write_files(const global_options& g, const std::string& dir, bool force,
                              const std::vector<std::tuple<std::string, std::string, mode_t>>& files) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) return fail(g, exit_status::failed, "io", "cannot create " + dir + ": " + ec.message());
    fs::permissions(dir, fs::perms::owner_all, ec);
  }
  if (!force)
    for (const auto& [name, text, mode] : files)
      if (fs::exists(fs::symlink_status(fs::path(dir) / name, ec)))
        return fail(g, exit_status::failed, "exists",
                    (fs::path(dir) / name).string() + " exists (use --force to overwrite)");
  std::vector<staged_file> staged;
  std::string error;
  for (const auto& [name, text, mode] : files) {
    auto f = staged_file::write((fs::path(dir) / name).string(), text, mode, &error);
    if (!f) return fail(g, exit_status::failed, "io", error);
    staged.push_back(std::move(*f));
  }
  for (auto& f : staged)
    if (!f.commit(force, &error)) return fail(g, exit_status::failed, "io", error);
  return code_of(exit_status::ok);
}

struct ca_init_options {
  std::string out;
  std::string name = "Sluice node CA";
  int days = 3650;
  bool force = false;
};

// The controller's own node CA: DIR/node-ca.crt (for node_ca.cert, and for whoever verifies
// nodes) and DIR/node-ca.key (0600, for node_ca.key: the controller signs CSRs with it).
int run_ca_init(const global_options& g, const ca_init_options& o) {
  std::string error;
  const auto ca = pki::make_ca(o.name, o.days, error);
  if (!ca) return fail(g, exit_status::failed, "crypto_failure", error);
  if (const int rc = write_files(g, o.out, o.force,
                                 {{"node-ca.key", ca->key_pem, 0600}, {"node-ca.crt", ca->cert_pem, 0644}});
      rc != 0)
    return rc;
  const auto cert = pki::certificate::parse(ca->cert_pem, error);
  const std::string crt = (std::filesystem::path(o.out) / "node-ca.crt").string();
  const std::string key = (std::filesystem::path(o.out) / "node-ca.key").string();
  if (g.json) {
    print_json({{"cert", crt}, {"key", key}, {"fingerprint", cert ? cert->fingerprint() : ""}});
  } else {
    std::cout << "node CA \"" << o.name << "\" (" << o.days << " days)\n"
              << "certificate: " << crt << '\n'
              << "key:         " << key << " (mode 0600)\n"
              << "controld.yaml:\n  node_ca: { cert: " << crt << ", key: " << key << " }\n";
  }
  return code_of(exit_status::ok);
}

struct enroll_options {
  std::string node;
  std::string labels;
  std::string out;
  bool no_csr = false;  // an ISP CA issues the certificate: only put the node in the inventory
  bool force = false;
};

// One command for the engineer: the node's key and CSR made here (the key never leaves this
// host), the CSR signed by the controller, everything the node needs written to DIR.
int run_nodes_enroll(const global_options& g, const enroll_options& o) {
  std::string error;
  const auto labels = parse_label_list(o.labels, &error);
  if (!labels) return fail(g, exit_status::usage, "usage", error);
  if (!o.no_csr && o.out.empty())
    return fail(g, exit_status::usage, "usage", "--out DIR is required (where the node's key goes)");
  std::optional<pki::key_and_csr> kc;
  if (!o.no_csr) {
    kc = pki::make_key_and_csr(o.node, error);
    if (!kc) return fail(g, exit_status::failed, "crypto_failure", error);
    // Before asking: a refusal to write must not leave an enrolled certificate without its key.
    std::error_code ec;
    for (const char* name : {"node.key", "node.crt", "ca.crt"})
      if (!o.force && std::filesystem::exists(std::filesystem::path(o.out) / name, ec))
        return fail(g, exit_status::failed, "exists",
                    (std::filesystem::path(o.out) / name).string() + " exists (use --force to overwrite)");
  }
  auto client = api_client::create(g, &error);
  if (!client) return fail(g, exit_status::usage, "usage", error);
  json body = {{"labels", *labels}};
  if (kc) body["csr"] = kc->csr_pem;
  const api_response r = client->post("/v1/inventory/" + o.node + "/enroll", body);
  if (!r.ok()) return fail_api(g, r);
  const json& node = r.body.contains("node") ? r.body["node"] : json::object();
  const std::string certificate = text_of(r.body, "certificate");
  const std::string ca = text_of(r.body, "ca");
  namespace fs = std::filesystem;
  const std::string key_path = o.out.empty() ? "" : (fs::path(o.out) / "node.key").string();
  const std::string crt_path = o.out.empty() ? "" : (fs::path(o.out) / "node.crt").string();
  const std::string ca_path = o.out.empty() ? "" : (fs::path(o.out) / "ca.crt").string();
  if (kc) {
    if (certificate.empty())
      return fail(g, exit_status::failed, "bad_response", "the controller answered no certificate");
    if (const int rc = write_files(g, o.out, o.force,
                                   {{"node.key", kc->key_pem, 0600},
                                    {"node.crt", certificate, 0644},
                                    {"ca.crt", ca, 0644}});
        rc != 0)
      return rc;
  }
  const std::string controller_ca = !g.ca.empty() ? g.ca : ca_path.empty() ? "CA.crt" : ca_path;
  std::string flags = "--controller " + g.controller + " --node-id " + o.node;
  if (!label_text(*labels).empty()) flags += " --labels " + label_text(*labels);
  if (kc) {
    flags += " --node-cert " + crt_path + " --node-key " + key_path;
  } else {
    flags += " --node-cert NODE.crt --node-key NODE.key";  // issued by the ISP's CA, CN = node id
  }
  if (g.controller.starts_with("https://")) flags += " --controller-ca " + controller_ca;
  flags += " --controller-key controller.pub --state-dir /var/lib/sluice";
  if (g.json) {
    print_json({{"node", node},
                {"files", kc ? json{{"key", key_path}, {"certificate", crt_path}, {"ca", ca_path}} : json()},
                {"dataplane_flags", flags}});
    return code_of(exit_status::ok);
  }
  std::cout << "enrolled " << o.node << " (labels " << (labels->empty() ? "-" : label_text(*labels)) << ")\n";
  if (kc) {
    std::cout << "certificate valid until " << time_text(node, "certificate_not_after")
              << ", fingerprint " << text_of(node, "fingerprint") << " (only this one is accepted)\n"
              << "  " << key_path << " (mode 0600: the node's secret; install it on the node only)\n"
              << "  " << crt_path << '\n'
              << "  " << ca_path << " (the node CA)\n";
  } else {
    std::cout << "no CSR: the node is admitted with any certificate of the node CA whose CN is "
              << o.node << '\n';
  }
  if (!g.controller.starts_with("https://"))
    std::cout << "note: " << g.controller << " is not https://; the node's certificate is only "
              << "presented over TLS (give the controller's https:// URL to the node)\n";
  std::cout << "sluice-dataplane ... -- " << flags << '\n'
            << "(sluice-rtbh takes the same --controller, --node-id, --labels, --node-cert, --node-key, "
               "--controller-ca)\n";
  return code_of(exit_status::ok);
}

int run_nodes_revoke(const global_options& g, const std::string& node, const std::string& reason) {
  return exchange(
      g, [&](api_client& c) { return c.post("/v1/inventory/" + node + "/revoke", {{"reason", reason}}); },
      [&](const json& body) {
        std::cout << "revoked " << node << " at " << time_text(body, "revoked_at")
                  << ": its requests are refused from now on\n";
      });
}

int run_nodes_relabel(const global_options& g, const std::string& node, const std::string& labels_text) {
  std::string error;
  const auto labels = parse_label_list(labels_text, &error);
  if (!labels) return fail(g, exit_status::usage, "usage", error);
  return exchange(
      g, [&](api_client& c) { return c.post("/v1/inventory/" + node + "/labels", {{"labels", *labels}}); },
      [&](const json& body) {
        std::cout << "relabelled " << node << ": " << label_text(body.value("labels", json::object()))
                  << " (set the node's own --labels to match)\n";
      });
}

int run_nodes_inventory(const global_options& g) {
  return exchange(
      g, [](api_client& c) { return c.get("/v1/inventory"); },
      [](const json& body) {
        const json list = body.contains("nodes") ? body["nodes"] : json::array();
        if (!list.is_array() || list.empty()) {
          std::cout << "no nodes enrolled\n";
          return;
        }
        std::vector<std::vector<std::string>> rows{
            {"NODE", "STATE", "LABELS", "SOURCE", "ENROLLED", "BY", "CERTIFICATE UNTIL", "FINGERPRINT"}};
        for (const auto& n : list) {
          std::string state = text_of(n, "state");
          if (state == "revoked") state += " (" + text_of(n, "revoked_reason") + ")";
          const std::string fp = text_of(n, "fingerprint");
          rows.push_back({text_of(n, "node"), state, label_text(n.value("labels", json::object())),
                          text_of(n, "source"), time_text(n, "enrolled_at"), text_of(n, "enrolled_by"),
                          time_text(n, "certificate_not_after"),
                          fp.empty() ? "any (CN)" : fp.substr(0, 16) + "..."});
        }
        print_table(rows);
      });
}

int run_rollout_status(const global_options& g) {
  return exchange(
      g, [](api_client& c) { return c.get("/v1/rollout"); },
      [](const json& body) { print_human(body); });
}

// rollout pause|resume, emergency-stop set/clear: an engineer's fleet-wide switch with a reason.
int run_switch(const global_options& g, http_method method, const std::string& path,
               const std::string& reason, std::string_view done) {
  json body = json::object();
  if (!reason.empty()) body["reason"] = reason;
  return exchange(
      g,
      [&](api_client& c) {
        return method == http_method::del ? c.del(path, body) : c.post(path, body);
      },
      [&](const json& answer) {
        std::cout << done << '\n';
        if (!answer.empty()) print_human(answer, 2);
      });
}

// ---- audit ------------------------------------------------------------------------------------

[[nodiscard]] json record_to_json(const audit::audit_record& r) {
  return {
      {"seq", r.seq},         {"at", r.at},         {"actor", r.actor},         {"event", r.event},
      {"subject", r.subject}, {"detail", r.detail}, {"prev_hash", r.prev_hash}, {"hash", r.hash}};
}

// The API's record back into the struct the chain is computed over. `detail` is hashed as text,
// so it is taken verbatim when it is a string (an object can only be re-serialised, which
// matches only if the controller serialises it the same way).
[[nodiscard]] std::optional<audit::audit_record> record_from_json(const json& j) {
  if (!j.is_object()) return std::nullopt;
  try {
    audit::audit_record r;
    r.seq = j.at("seq").get<std::uint64_t>();
    r.at = j.at("at").get<std::int64_t>();
    r.actor = j.at("actor").get<std::string>();
    r.event = j.at("event").get<std::string>();
    r.subject = j.at("subject").get<std::string>();
    // The hash covers the exact stored text: the API sends it as detail_text (detail is the
    // same, parsed, for people); re-serialising the object is only a fallback.
    const json& detail = j.contains("detail_text") ? j.at("detail_text") : j.at("detail");
    r.detail = detail.is_string() ? detail.get<std::string>() : detail.dump();
    r.prev_hash = j.at("prev_hash").get<std::string>();
    r.hash = j.at("hash").get<std::string>();
    return r;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

struct audit_options {
  std::string db_path;  // empty: ask the controller
  // verify: checkpoints to compare the log with (files), the key they must verify with, and
  // whether to skip the fleet's reported ones. checkpoint: where to write it.
  std::vector<std::string> checkpoint_files;
  std::string controller_key;
  bool no_fleet = false;
  std::string out;
};

struct audit_fetch {
  exit_status status = exit_status::ok;
  std::vector<audit::audit_record> records;
  std::string server_head;  // the controller's "head" on its last page ("" from a store file)
  int failure = 0;          // exit code already reported when status != ok
};

// Every record, from the store file or the controller (in pages, so a long chain is not one
// giant answer).
[[nodiscard]] audit_fetch fetch_audit(const global_options& g, const audit_options& o) {
  audit_fetch out;
  auto failed = [&](exit_status s, int code) {
    out.status = s;
    out.failure = code;
    return out;
  };
  if (!o.db_path.empty()) {
    // open_sqlite_store creates a missing database; an empty chain must not pass for a typo.
    std::error_code ec;
    if (!std::filesystem::is_regular_file(o.db_path, ec))
      return failed(exit_status::failed,
                    fail(g, exit_status::failed, "io", o.db_path + ": no such database file"));
    try {
      auto st = store::open_sqlite_store(o.db_path);
      constexpr std::size_t page = 10000;
      for (std::uint64_t after = 0;;) {
        auto batch = st->audit_since(after, page);
        if (batch.empty()) break;
        after = batch.back().seq;
        out.records.insert(out.records.end(), std::make_move_iterator(batch.begin()),
                           std::make_move_iterator(batch.end()));
        if (batch.size() < page) break;
      }
    } catch (const store::store_error& e) {
      return failed(exit_status::failed,
                    fail(g, exit_status::failed, "store_error", o.db_path + ": " + e.what()));
    }
    return out;
  }

  std::string error;
  auto client = api_client::create(g, &error);
  if (!client) return failed(exit_status::usage, fail(g, exit_status::usage, "usage", error));
  constexpr int page = 500;
  for (std::uint64_t after = 0;;) {
    const api_response r =
        client->get("/v1/audit?after=" + std::to_string(after) + "&limit=" + std::to_string(page));
    if (!r.ok()) return failed(r.status, fail_api(g, r));
    const json& b = r.body;
    if (!b.contains("records") || !b["records"].is_array())
      return failed(exit_status::failed,
                    fail(g, exit_status::failed, "bad_response",
                         "the controller's audit answer has no \"records\" list"));
    out.server_head = text_of(b, "head");
    if (b["records"].empty()) break;
    for (const auto& j : b["records"]) {
      auto rec = record_from_json(j);
      if (!rec)
        return failed(exit_status::failed, fail(g, exit_status::failed, "bad_response",
                                                "malformed audit record after seq " +
                                                    std::to_string(after) + ": " + j.dump()));
      out.records.push_back(std::move(*rec));
    }
    // A page must move forward, or a misbehaving server would keep us here forever.
    if (out.records.back().seq <= after)
      return failed(exit_status::failed,
                    fail(g, exit_status::failed, "bad_response",
                         "the controller answered records up to seq " +
                             std::to_string(out.records.back().seq) +
                             " when asked for those after " + std::to_string(after)));
    after = out.records.back().seq;
  }
  return out;
}

// The checkpoints `audit verify` compares the log with: each --checkpoint file (one that does not
// parse or verify is an error: the operator vouched for it) and, unless --no-fleet, every one
// the fleet reported (GET /v1/nodes, or the nodes table of --db; one that does not verify proves
// nothing and is listed as ignored).
struct gathered_checkpoints {
  std::vector<audit::held_checkpoint> held;
  std::vector<std::string> ignored;  // why each reported one was left out
  std::size_t from_files = 0, from_fleet = 0;
  int failure = -1;  // an exit code already reported
};

[[nodiscard]] gathered_checkpoints gather_checkpoints(const global_options& g,
                                                      const audit_options& o) {
  gathered_checkpoints out;
  std::string error;
  const auto key_text = read_file(o.controller_key, &error);
  if (!key_text) {
    out.failure = fail(g, exit_status::failed, "io", error);
    return out;
  }
  const auto key = crypto::parse_public_key(*key_text, &error);
  if (!key) {
    out.failure = fail(g, exit_status::failed, "bad_key", o.controller_key + ": " + error);
    return out;
  }
  for (const std::string& path : o.checkpoint_files) {
    const auto text = read_file(path, &error);
    if (!text) {
      out.failure = fail(g, exit_status::failed, "io", error);
      return out;
    }
    auto cp = audit::parse_checkpoint(*text, error);
    audit::checkpoint_check v;
    if (cp) v = audit::verify_checkpoint(*key, *cp);
    if (!cp || !v) {
      out.failure = fail(g, exit_status::failed, "bad_checkpoint",
                         path + ": not an audit checkpoint signed by " + o.controller_key + ": " +
                             (cp ? v.problem : error));
      return out;
    }
    out.held.push_back({"file " + path, std::move(*cp)});
    ++out.from_files;
  }
  if (o.no_fleet) return out;
  // (node id, reported checkpoint text, conflicting one) per node.
  std::vector<std::tuple<std::string, std::string, std::string>> reported;
  if (!o.db_path.empty()) {
    try {
      for (const auto& n : store::open_sqlite_store(o.db_path)->list_nodes())
        reported.emplace_back(n.node_id, n.audit_checkpoint, n.audit_checkpoint_conflict);
    } catch (const store::store_error& e) {
      out.failure = fail(g, exit_status::failed, "store_error", o.db_path + ": " + e.what());
      return out;
    }
  } else {
    auto client = api_client::create(g, &error);
    if (!client) {
      out.failure = fail(g, exit_status::usage, "usage", error);
      return out;
    }
    const api_response r = client->get("/v1/nodes");
    if (!r.ok()) {
      out.failure = fail_api(g, r);
      return out;
    }
    const json list = r.body.contains("nodes") ? r.body["nodes"] : json::array();
    for (const auto& n : list.is_array() ? list : json::array()) {
      auto text = [&](const char* k) {
        return n.contains(k) && n[k].is_object() ? n[k].dump() : std::string();
      };
      reported.emplace_back(text_of(n, "node"), text("audit_checkpoint"),
                            text("audit_checkpoint_conflict"));
    }
  }
  for (const auto& [node, held, conflicting] : reported) {
    for (const bool conflict : {false, true}) {
      const std::string& text = conflict ? conflicting : held;
      if (text.empty()) continue;
      const std::string holder = "node " + node + (conflict ? " (conflicting)" : "");
      auto cp = audit::parse_checkpoint(text, error);
      audit::checkpoint_check v;
      if (cp) v = audit::verify_checkpoint(*key, *cp);
      if (!cp || !v) {
        out.ignored.push_back(holder + ": " + (cp ? v.problem : error));
        continue;
      }
      out.held.push_back({holder, std::move(*cp)});
      ++out.from_fleet;
    }
  }
  return out;
}

int run_audit_verify(const global_options& g, const audit_options& o) {
  if (o.controller_key.empty() && !o.checkpoint_files.empty())
    return fail(g, exit_status::usage, "usage",
                "--checkpoint needs --controller-key (the key checkpoints are signed with)");
  const audit_fetch f = fetch_audit(g, o);
  if (f.status != exit_status::ok) return f.failure;
  gathered_checkpoints cps;
  if (!o.controller_key.empty()) {
    cps = gather_checkpoints(g, o);
    if (cps.failure >= 0) return cps.failure;
  }
  const audit::checkpoints_report cmp = audit::check_log(f.records, cps.held);
  audit::chain_report rep = audit::verify_chain(f.records);
  // The chain may be intact yet not the controller's: its head must be the last record served.
  if (rep.ok && !f.server_head.empty() && f.server_head != rep.head_hash) {
    rep.ok = false;
    rep.problem = "the controller's head hash " + f.server_head +
                  " is not the last record's hash " + rep.head_hash + " (records withheld)";
  }
  const std::string source = o.db_path.empty() ? "controller" : o.db_path;
  const json checkpoints{{"checked", cps.held.size()},  {"from_files", cps.from_files},
                         {"from_fleet", cps.from_fleet}, {"covered", cmp.covered},
                         {"highest", cmp.highest},        {"problems", cmp.problems},
                         {"ignored", cps.ignored},        {"missing_tail", cmp.missing_tail}};
  for (const std::string& why : cps.ignored)
    std::cerr << "sluicectl: warning: ignored a checkpoint that does not verify: " << why << '\n';
  if (!rep.ok || !cmp.ok) {
    // The missing tail first: that is what the chain alone cannot show.
    std::string message;
    if (!cmp.missing_tail.empty()) message = "audit log SHORTENED (" + source + "): " + cmp.missing_tail;
    if (!rep.ok)
      message += (message.empty() ? "" : "\n") + std::string("audit chain BROKEN (") + source +
                 "): " + rep.problem;
    std::size_t shown = 0;
    for (const std::string& p : cmp.problems) {
      if (p == cmp.missing_tail) continue;
      if (++shown > 20) {
        message += "\n  ... and " + std::to_string(cmp.problems.size() - 20) + " more";
        break;
      }
      message += (message.empty() ? "audit log does not match its checkpoints (" + source + "): "
                                  : "\n  ") + p;
    }
    json detail{{"ok", false},
                {"records", rep.records},
                {"bad_seq", rep.bad_seq},
                {"problem", rep.problem}};
    if (!o.controller_key.empty()) detail["checkpoints"] = checkpoints;
    return fail(g, exit_status::failed, rep.ok ? "checkpoint_mismatch" : "chain_broken", message,
                detail);
  }
  if (g.json) {
    json out{{"ok", true}, {"records", rep.records}, {"head_hash", rep.head_hash}};
    if (!o.controller_key.empty()) out["checkpoints"] = checkpoints;
    print_json(out);
    return code_of(exit_status::ok);
  }
  std::cout << "audit chain OK (" << source << "): " << rep.records << " records, head "
            << rep.head_hash << '\n';
  if (o.controller_key.empty())
    std::cout << "checkpoints: not checked (--controller-key names the key they are signed with)\n";
  else
    std::cout << "checkpoints: the log covers all " << cps.held.size() << " (" << cps.from_fleet
              << " reported by nodes, " << cps.from_files << " from files; highest "
              << cmp.highest << " records)\n";
  return code_of(exit_status::ok);
}

// GET /v1/audit/checkpoint: the latest signed checkpoint, for the ministry to keep. Checked
// against --controller-key when given; written to --out (else printed).
int run_audit_checkpoint(const global_options& g, const audit_options& o) {
  std::string error;
  auto client = api_client::create(g, &error);
  if (!client) return fail(g, exit_status::usage, "usage", error);
  const api_response r = client->get("/v1/audit/checkpoint");
  if (!r.ok()) return fail_api(g, r);
  const auto cp = audit::parse_checkpoint(r.body.dump(), error);
  if (!cp) return fail(g, exit_status::failed, "bad_response", "the controller's checkpoint: " + error);
  if (!o.controller_key.empty()) {
    const auto key_text = read_file(o.controller_key, &error);
    if (!key_text) return fail(g, exit_status::failed, "io", error);
    const auto key = crypto::parse_public_key(*key_text, &error);
    if (!key) return fail(g, exit_status::failed, "bad_key", o.controller_key + ": " + error);
    if (const auto v = audit::verify_checkpoint(*key, *cp); !v)
      return fail(g, exit_status::failed, "bad_checkpoint",
                  "the controller's checkpoint does not verify with " + o.controller_key + ": " +
                      v.problem);
  }
  const std::string text = audit::checkpoint_json(*cp) + "\n";
  if (o.out.empty()) {
    std::cout << text;
    return code_of(exit_status::ok);
  }
  auto file = staged_file::write(o.out, text, 0644, &error);
  if (!file || !file->commit(/*overwrite=*/true, &error))
    return fail(g, exit_status::failed, "io", error);
  if (g.json)
    print_json({{"written", o.out}, {"count", cp->count}, {"head", cp->head}});
  else
    std::cout << audit::describe(*cp) << " written to " << o.out << '\n';
  return code_of(exit_status::ok);
}

int run_audit_export(const global_options& g, const audit_options& o) {
  const audit_fetch f = fetch_audit(g, o);
  if (f.status != exit_status::ok) return f.failure;
  for (const auto& r : f.records) std::cout << record_to_json(r).dump() << '\n';
  return code_of(exit_status::ok);
}

// ---- command line -----------------------------------------------------------------------------

int run(int argc, char** argv) {
  CLI::App app{
      "sluicectl: operate a Sluice control plane (sluice-controld), sign directives, "
      "check the audit trail.",
      "sluicectl"};
  app.footer(exit_status_footer);
  app.fallthrough();  // global options may follow the subcommand
  app.require_subcommand(1);

  global_options g;
  if (const char* env = std::getenv("SLUICE_CONTROLLER"); env != nullptr && *env != '\0')
    g.controller = env;
  app.add_option("--controller", g.controller, "Controller base URL (env SLUICE_CONTROLLER)")
      ->capture_default_str();
  auto* token_opt = app.add_option("--token", g.token, "Bearer token (env SLUICE_TOKEN)");
  auto* token_file_opt =
      app.add_option("--token-file", g.token_file, "Read the bearer token from FILE");
  token_opt->excludes(token_file_opt);
  app.add_option("--timeout", g.timeout, "Connect/read timeout in seconds")
      ->check(CLI::Range(0.001, 3600.0))
      ->capture_default_str();
  app.add_flag("--json", g.json, "Machine-readable JSON output");
  app.add_option("--ca", g.ca, "CA certificates (PEM) that vouch for an https:// controller")
      ->check(CLI::ExistingFile);

  // The command that runs is the deepest one parsed; children are registered after parents.
  std::vector<std::pair<CLI::App*, std::function<int()>>> commands;
  auto command = [&](CLI::App* parent, const std::string& name, const std::string& help,
                     std::function<int()> body) {
    CLI::App* sub = parent->add_subcommand(name, help);
    sub->footer(exit_status_footer);
    commands.emplace_back(sub, std::move(body));
    return sub;
  };

  keygen_options keygen;
  auto* keygen_cmd = command(&app, "keygen", "Create an Ed25519 key pair in minisign's format",
                             [&] { return run_keygen(g, keygen); });
  keygen_cmd->add_option("--public", keygen.public_path, "Public key file to write")->required();
  keygen_cmd->add_option("--secret", keygen.secret_path, "Secret key file to write (mode 0600)")
      ->required();
  keygen_cmd->add_option("--comment", keygen.comment, "Untrusted comment for both files")
      ->check(single_line_check);
  keygen_cmd->add_flag("--force", keygen.force, "Overwrite existing files");

  sign_options sign;
  auto* sign_cmd = command(&app, "sign", "Sign DOC, writing DOC.minisig (minisign-compatible)",
                           [&] { return run_sign(g, sign); });
  sign_cmd
      ->add_option("--secret", sign.secret_path, "Secret key (sluicectl keygen, or minisign -G -W)")
      ->required();
  sign_cmd
      ->add_option("--trusted-comment", sign.trusted_comment,
                   "Signed comment (default: timestamp and file name, as minisign)")
      ->check(single_line_check);
  sign_cmd->add_option("--signature,-x", sign.signature_path,
                       "Signature file to write (default DOC.minisig)");
  sign_cmd->add_option("DOC", sign.document, "Document to sign")->required();

  verify_options verify;
  auto* verify_cmd =
      command(&app, "verify", "Verify DOC's minisign signature and print its trusted comment",
              [&] { return run_verify(g, verify); });
  verify_cmd->add_option("--public", verify.public_path, "Public key file")->required();
  verify_cmd->add_option("--signature,-x", verify.signature_path,
                         "Signature file (default DOC.minisig)");
  verify_cmd->add_option("DOC", verify.document, "Signed document")->required();

  submit_options submit;
  auto* submit_cmd = command(&app, "submit", "Submit a signed directive (ministry token)",
                             [&] { return run_submit(g, submit, /*lift=*/false); });
  submit_cmd->add_option("--signature,-x", submit.signature_path,
                         "Signature file (default DOC.minisig)");
  submit_cmd->add_option("DOC", submit.document, "Directive YAML, byte-exact as signed")
      ->required();

  submit_options lift;
  auto* lift_cmd =
      command(&app, "lift", "Submit a signed 'action: unblock' directive (ministry token)",
              [&] { return run_submit(g, lift, /*lift=*/true); });
  lift_cmd->add_option("--signature,-x", lift.signature_path,
                       "Signature file (default DOC.minisig)");
  lift_cmd->add_option("DOC", lift.document, "Unblock directive YAML, byte-exact as signed")
      ->required();

  std::string ref_text_arg;
  std::string reason;
  auto add_ref = [&](CLI::App* sub) {
    sub->add_option("ISSUER/ID", ref_text_arg, "Directive reference")
        ->required()
        ->check(directive_ref_check);
  };
  // parse_ref cannot fail here: the option's check already accepted the text.
  auto ref = [&] { return *parse_ref(ref_text_arg); };

  add_ref(command(&app, "approve", "Approve a directive awaiting approval (engineer token)",
                  [&] { return run_approve(g, ref()); }));
  auto* revoke_cmd = command(&app, "revoke", "Revoke a directive (ministry token)",
                             [&] { return run_end(g, ref(), reason, "revoke"); });
  add_ref(revoke_cmd);
  revoke_cmd->add_option("--reason", reason, "Why (recorded in the audit trail)")->required();
  auto* reject_cmd = command(&app, "reject", "Reject a directive awaiting approval (engineer token)",
                             [&] { return run_end(g, ref(), reason, "reject"); });
  add_ref(reject_cmd);
  reject_cmd->add_option("--reason", reason, "Why (recorded in the audit trail)")->required();
  add_ref(command(&app, "show", "Show one directive, its document and signature",
                  [&] { return run_show(g, ref()); }));
  command(&app, "list", "List directives", [&] { return run_list(g); });
  auto* directive_cmd =
      command(&app, "directive", "Inspect or override a directive before approval", [] {
        return code_of(exit_status::usage);
      });  // unreachable: a child is required
  directive_cmd->require_subcommand(1);
  impact_options impact;
  auto* impact_cmd = command(
      directive_cmd, "impact",
      "Show what a directive hits per prefix and domain, from the nodes' impact reports",
      [&] { return run_directive_impact(g, ref(), impact); });
  add_ref(impact_cmd);
  impact_cmd->add_option("--window", impact.window, "Reports of the last SECONDS")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{366} * 86400))
      ->capture_default_str();
  impact_cmd->add_option("--top", impact.top, "Names listed per prefix and domain")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1000}))
      ->capture_default_str();
  auto* override_cmd = command(
      directive_cmd, "override",
      "Override its overlaps with protected ranges or names (engineer token)",
      [&] { return run_directive_override(g, ref(), reason); });
  add_ref(override_cmd);
  override_cmd->add_option("--reason", reason, "Why (recorded in the audit trail)")
      ->required()
      ->check(single_line_check);

  auto* nodes_cmd = command(&app, "nodes", "List nodes and what they enforce; enrol, revoke, relabel",
                            [&] { return run_nodes(g); });
  nodes_cmd->require_subcommand(0, 1);
  enroll_options enroll;
  auto* enroll_cmd = command(
      nodes_cmd, "enroll",
      "Enrol NODE: make its key and CSR here, have the controller sign it, write DIR/node.key, "
      "node.crt, ca.crt and print the node's flags (engineer token)",
      [&] { return run_nodes_enroll(g, enroll); });
  enroll_cmd->add_option("NODE", enroll.node, "Node id (its certificate's CN)")
      ->required()
      ->check(node_id_check);
  enroll_cmd->add_option("--labels", enroll.labels, "The node's labels, k=v,k=v (its scope, canary)");
  enroll_cmd->add_option("--out", enroll.out, "Directory for the node's key and certificates");
  enroll_cmd->add_flag("--no-csr", enroll.no_csr,
                       "Only put NODE in the inventory (its certificate comes from an ISP CA)");
  enroll_cmd->add_flag("--force", enroll.force, "Overwrite existing files in --out");
  std::string node_arg;
  auto* node_revoke_cmd = command(nodes_cmd, "revoke", "Revoke NODE: every request of it is refused (engineer token)",
                                  [&] { return run_nodes_revoke(g, node_arg, reason); });
  node_revoke_cmd->add_option("NODE", node_arg, "Node id")->required()->check(node_id_check);
  node_revoke_cmd->add_option("--reason", reason, "Why (recorded in the audit trail)")
      ->required()
      ->check(single_line_check);
  std::string relabel_labels;
  auto* relabel_cmd = command(nodes_cmd, "relabel", "Give NODE new labels (engineer token)",
                              [&] { return run_nodes_relabel(g, node_arg, relabel_labels); });
  relabel_cmd->add_option("NODE", node_arg, "Node id")->required()->check(node_id_check);
  relabel_cmd->add_option("--labels", relabel_labels, "The node's labels, k=v,k=v")->required();
  command(nodes_cmd, "inventory", "List the inventory: enrolled and revoked nodes, their labels",
          [&] { return run_nodes_inventory(g); });

  ca_init_options ca_init;
  auto* ca_cmd = command(&app, "ca", "The node CA (issue 14: node identity)", [] {
    return code_of(exit_status::usage);
  });  // unreachable: a child is required
  ca_cmd->require_subcommand(1);
  auto* ca_init_cmd = command(ca_cmd, "init",
                              "Make the controller's node CA: DIR/node-ca.crt and DIR/node-ca.key",
                              [&] { return run_ca_init(g, ca_init); });
  ca_init_cmd->add_option("--out", ca_init.out, "Directory to write to")->required();
  ca_init_cmd->add_option("--name", ca_init.name, "The CA's common name")->capture_default_str();
  ca_init_cmd->add_option("--days", ca_init.days, "Validity in days")
      ->check(CLI::Range(1, 36500))
      ->capture_default_str();
  ca_init_cmd->add_flag("--force", ca_init.force, "Overwrite existing files");

  auto* rollout_cmd =
      command(&app, "rollout", "Show the rollout state and timeline; pause or resume it",
              [&] { return run_rollout_status(g); });
  rollout_cmd->require_subcommand(0, 1);
  for (const auto& [name, done] :
       {std::pair{"pause", "rollout paused"}, std::pair{"resume", "rollout resumed"}}) {
    const std::string path = std::string("/v1/rollout/") + name;
    const std::string_view message = done;
    auto* sub = command(rollout_cmd, name,
                        std::string(name) == "pause" ? "Pause the rollout (engineer token)"
                                                     : "Resume the rollout (engineer token)",
                        [&g, &reason, path, message] {
                          return run_switch(g, http_method::post, path, reason, message);
                        });
    sub->add_option("--reason", reason, "Why (recorded in the audit trail)")->required();
  }

  bool clear = false;
  auto* stop_cmd = command(
      &app, "emergency-stop",
      "Stop enforcement fleet-wide (--reason), or end the stop (--clear); engineer token", [&] {
        return clear ? run_switch(g, http_method::del, "/v1/emergency-stop", reason,
                                  "emergency stop cleared")
                     : run_switch(g, http_method::post, "/v1/emergency-stop", reason,
                                  "emergency stop in force");
      });
  auto* stop_reason = stop_cmd->add_option("--reason", reason, "Why (recorded in the audit trail)");
  stop_cmd->add_flag("--clear", clear, "End the emergency stop");
  // Both setting and clearing are audited with their reason.
  stop_cmd->callback([&, stop_reason] {
    if (stop_reason->count() == 0) throw CLI::RequiredError("--reason");
  });

  audit_options audit_opts;
  auto* audit_cmd = command(&app, "audit", "Check or export the hash-chained audit trail", [] {
    return code_of(exit_status::usage);
  });  // unreachable: a child is required
  audit_cmd->require_subcommand(1);
  for (const bool is_verify : {true, false}) {
    auto* sub = command(
        audit_cmd, is_verify ? "verify" : "export",
        is_verify ? "Verify the audit hash chain and compare the log with signed checkpoints "
                    "(the fleet's, and --checkpoint files); prints OK, record count and head hash, "
                    "or the missing records and the checkpoint that proves them"
                  : "Print every audit record as JSON lines",
        [&g, &audit_opts, is_verify] {
          return is_verify ? run_audit_verify(g, audit_opts) : run_audit_export(g, audit_opts);
        });
    sub->add_option("--db", audit_opts.db_path,
                    "Read a SQLite store file instead of asking the controller (the fleet's "
                    "checkpoints then come from its nodes table)");
    if (!is_verify) continue;
    sub->add_option("--controller-key", audit_opts.controller_key,
                    "The controller's public key: compare the log with the checkpoints it signed");
    sub->add_option("--checkpoint", audit_opts.checkpoint_files,
                    "A checkpoint file (a node's audit_checkpoint.json, or one from `audit "
                    "checkpoint`); repeatable; needs --controller-key")
        ->allow_extra_args(false);
    sub->add_flag("--no-fleet", audit_opts.no_fleet,
                  "Only the --checkpoint files, not the checkpoints the nodes reported");
  }
  auto* checkpoint_cmd = command(
      audit_cmd, "checkpoint",
      "Fetch the controller's latest signed audit checkpoint (to keep outside the controller)",
      [&g, &audit_opts] { return run_audit_checkpoint(g, audit_opts); });
  checkpoint_cmd->add_option("--out", audit_opts.out, "Write it to FILE (default: print it)");
  checkpoint_cmd->add_option("--controller-key", audit_opts.controller_key,
                             "Check it with the controller's public key first");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help (exit 0) or the error with a hint
    return rc == 0 ? 0 : code_of(exit_status::usage);
  }
  for (auto it = commands.rbegin(); it != commands.rend(); ++it)
    if (it->first->parsed()) return it->second();
  return code_of(exit_status::usage);
}

}  // namespace
}  // namespace sluice::control::ctl

int main(int argc, char** argv) {
  sluice::control::ignore_sigpipe_unless_handled();  // a controller closing first: an error, not a kill
  try {
    return sluice::control::ctl::run(argc, argv);
  } catch (const std::exception& e) {
    // Only unexpected answers (a JSON type the contract does not allow) or memory exhaustion.
    std::cerr << "sluicectl: internal error: " << e.what() << '\n';
    return 1;
  }
}
