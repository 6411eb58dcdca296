#include "control/directive/directive.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstddef>
#include <limits>
#include <sstream>
#include <unordered_set>
#include <utility>

#include "dataplane/match/domain_name.hpp"
#include "dataplane/match/policy_config.hpp"
#include "dataplane/match/prefix_set.hpp"

namespace sluice::control::directive {

std::string_view to_string(directive_action a) noexcept {
  switch (a) {
    case directive_action::block:
      return "block";
    case directive_action::unblock:
      return "unblock";
    case directive_action::monitor:
      return "monitor";
    case directive_action::throttle:
      return "throttle";
  }
  return "?";
}

std::string_view to_string(block_response r) noexcept {
  switch (r) {
    case block_response::drop:
      return "drop";
    case block_response::reset:
      return "reset";
    case block_response::notice:
      return "notice";
  }
  return "?";
}

std::string_view to_string(error_code c) noexcept {
  switch (c) {
#define X(name, text)    \
  case error_code::name: \
    return #name;
    SLUICE_DIRECTIVE_ERRORS(X)
#undef X
    case error_code::count:
      break;
  }
  return "?";
}

std::string_view describe(error_code c) noexcept {
  switch (c) {
#define X(name, text)    \
  case error_code::name: \
    return text;
    SLUICE_DIRECTIVE_ERRORS(X)
#undef X
    case error_code::count:
      break;
  }
  return "?";
}

std::string parse_error::text() const {
  if (line == 0) return message;
  return std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

bool scope_spec::covers(const std::map<std::string, std::string>& node_labels) const {
  if (all) return true;
  if (sites.empty() && labels.empty()) return false;  // an empty scope names nobody
  if (!sites.empty()) {
    const auto site = node_labels.find("site");
    if (site == node_labels.end()) return false;
    bool listed = false;
    for (const auto& s : sites) listed = listed || s == site->second;
    if (!listed) return false;
  }
  for (const auto& [key, value] : labels) {
    const auto it = node_labels.find(key);
    if (it == node_labels.end() || it->second != value) return false;
  }
  return true;
}

namespace {

// Internal only: thrown while walking the document, turned into parse_error at the API, the
// same way dataplane/match/policy_config.cpp reports its errors.
struct failure {
  error_code code;
  YAML::Mark mark;
  std::string message;
};

[[noreturn]] void fail(error_code code, const YAML::Mark& mark, std::string message) {
  throw failure{code, mark, std::move(message)};
}
[[noreturn]] void fail(error_code code, const YAML::Node& node, std::string message) {
  fail(code, node.Mark(), std::move(message));
}

parse_error to_error(error_code code, const YAML::Mark& mark, std::string message) {
  parse_error e;
  e.code = code;
  if (!mark.is_null() && mark.line >= 0 && mark.column >= 0) {
    e.line = mark.line + 1;
    e.column = mark.column + 1;
  }
  e.message = std::move(message);
  return e;
}

std::string quote(std::string_view s) {
  // Keeps messages one line and bounded whatever the input holds.
  constexpr std::size_t limit = 80;
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  if (s.size() > limit) out += "...";
  return out + "'";
}

std::string join(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

std::string at(std::string_view path, std::size_t index) {
  return std::string(path) + "[" + std::to_string(index) + "]";
}

// A key's node (for its mark) and its value.
struct entry {
  YAML::Node key;
  YAML::Node value;
};

class fields {
 public:
  fields(const YAML::Node& node, std::string_view path,
         std::initializer_list<std::string_view> allowed)
      : node_(node) {
    if (!node.IsMap()) fail(error_code::bad_type, node, std::string(path) + " must be a mapping");
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) fail(error_code::bad_type, kv.first, "keys must be plain strings");
      const std::string& key = kv.first.Scalar();
      bool known = false;
      for (auto a : allowed) known = known || a == key;
      if (!known) fail(error_code::unknown_key, kv.first, "unknown key " + quote(join(path, key)));
      if (!entries_.emplace(key, entry{kv.first, kv.second}).second) {
        fail(error_code::duplicate_key, kv.first, "key " + quote(join(path, key)) + " given twice");
      }
      // No field takes null; yaml-cpp marks an empty value at the next token, so point at the key.
      if (kv.second.IsNull()) {
        fail(error_code::bad_type, kv.first, join(path, key) + " has no value");
      }
    }
  }

  [[nodiscard]] const entry* find(const std::string& key) const {
    const auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second;
  }
  [[nodiscard]] const entry& require(const std::string& key, std::string_view path) const {
    const entry* e = find(key);
    if (e == nullptr) {
      fail(error_code::missing_field, node_, join(path, key) + " is required");
    }
    return *e;
  }

 private:
  YAML::Node node_;
  std::map<std::string, entry> entries_;
};

const std::string& scalar(const YAML::Node& node, std::string_view path) {
  if (!node.IsScalar()) fail(error_code::bad_type, node, std::string(path) + " must be a string");
  return node.Scalar();
}

bool token_chars(std::string_view s, bool upper_ok) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                    c == '-' || (upper_ok && c >= 'A' && c <= 'Z');
    if (!ok) return false;
  }
  return true;
}

std::string directive_id(const YAML::Node& node, std::string_view path) {
  const std::string& s = scalar(node, path);
  if (!token_chars(s, true)) {
    fail(error_code::bad_value, node,
         std::string(path) + ": " + quote(s) + " is not an id ([A-Za-z0-9._-], 1..64 characters)");
  }
  return s;
}

// Counts code points of well-formed UTF-8 without control characters; -1 otherwise. The legal
// basis ends up in HTTP 451 pages and audit records, so it must be clean one-line text.
long printable_utf8_length(std::string_view s) {
  long count = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      n = 1;
      cp = c;
    } else if ((c & 0xe0) == 0xc0) {
      n = 2;
      cp = c & 0x1fu;
    } else if ((c & 0xf0) == 0xe0) {
      n = 3;
      cp = c & 0x0fu;
    } else if ((c & 0xf8) == 0xf0) {
      n = 4;
      cp = c & 0x07u;
    } else {
      return -1;
    }
    if (i + n > s.size()) return -1;
    for (std::size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return -1;
      cp = (cp << 6) | (cc & 0x3fu);
    }
    static constexpr std::uint32_t min_for_length[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_length[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
    if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) return -1;
    i += n;
    ++count;
  }
  return count;
}

std::int64_t time_value(const YAML::Node& node, std::string_view path) {
  const std::string& s = scalar(node, path);
  if (auto t = sluice::match::parse_rfc3339(s)) return *t;
  fail(
      error_code::bad_time, node,
      std::string(path) + ": " + quote(s) + " is not an RFC 3339 time (e.g. 2026-11-28T00:00:00Z)");
}

std::uint64_t positive_integer(const YAML::Node& node, std::string_view path) {
  const std::string& s = scalar(node, path);
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || s.front() < '0' || s.front() > '9' || end != s.data() + s.size() ||
      (ec != std::errc{} && ec != std::errc::result_out_of_range)) {
    fail(error_code::bad_type, node, std::string(path) + ": " + quote(s) + " is not an integer");
  }
  if (ec == std::errc::result_out_of_range) {
    fail(error_code::bad_value, node, std::string(path) + ": " + quote(s) + " is too large");
  }
  if (v == 0) fail(error_code::bad_value, node, std::string(path) + " must be greater than 0");
  return v;
}

const YAML::Node& sequence(const YAML::Node& node, std::string_view path) {
  if (!node.IsSequence()) fail(error_code::bad_type, node, std::string(path) + " must be a list");
  return node;
}

// A list that refuses repeats: each is a bad_value at the repeating node. The set keeps it
// linear (a directive may name hundreds of thousands of targets; a scan per entry was quadratic).
class unique_list {
 public:
  explicit unique_list(std::vector<std::string>& out) : out_(out) {}
  void add(std::string value, const YAML::Node& node, std::string_view path,
           std::string_view written) {
    if (!seen_.insert(value).second) {
      fail(error_code::bad_value, node,
           std::string(path) + ": " + quote(written) + " repeats an earlier entry" +
               (written == value ? "" : " (" + quote(value) + ")"));
    }
    out_.push_back(std::move(value));
  }

 private:
  std::vector<std::string>& out_;
  std::unordered_set<std::string> seen_;
};

std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) {
    return b > 0 ? std::numeric_limits<std::int64_t>::max()
                 : std::numeric_limits<std::int64_t>::min();
  }
  return r;
}

// One pass over the event stream before any tree is built (yaml-cpp's nodes cost a few hundred
// bytes each): refuses anchors and aliases (a directive has no use for them, and they are how a
// YAML bomb multiplies), more than `max_entries` nodes and nesting deeper than `max_depth`, each
// at the node that crosses the line; and notes where a second document starts.
class prescan final : public YAML::EventHandler {
 public:
  explicit prescan(const validation_context& ctx) : ctx_(ctx) {}
  std::vector<YAML::Mark> starts;

  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { node(mark, anchor); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
    fail(error_code::anchor_not_allowed, mark, "aliases are not allowed in a directive");
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string&) override {
    node(mark, anchor);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(mark, anchor);
  }
  void OnSequenceEnd() override { --depth_; }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(mark, anchor);
  }
  void OnMapEnd() override { --depth_; }

 private:
  void node(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (anchor != YAML::NullAnchor)
      fail(error_code::anchor_not_allowed, mark, "anchors are not allowed in a directive");
    if (++entries_ > ctx_.max_entries)
      fail(error_code::too_many_entries, mark,
           "more than " + std::to_string(ctx_.max_entries) + " YAML entries (targets and keys)");
  }
  void open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    node(mark, anchor);
    if (++depth_ > ctx_.max_depth)
      fail(error_code::nesting_too_deep, mark,
           "collections nested more than " + std::to_string(ctx_.max_depth) + " deep");
  }

  const validation_context& ctx_;
  std::size_t entries_ = 0;
  int depth_ = 0;
};

// Scans at most two documents: not YAML::LoadAll, which in yaml-cpp 0.7 never returns (and
// allocates without bound) on a stream such as ", a", found by tests/fuzz/fuzz_directive.cpp.
// Returns where a second document starts, if the stream has one. Throws failure or
// YAML::Exception.
std::optional<YAML::Mark> scan(const std::string& text, const validation_context& ctx) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  prescan events(ctx);
  int documents = 0;
  while (documents < 2 && parser.HandleNextDocument(events)) ++documents;
  if (documents < 2) return std::nullopt;
  return events.starts.size() >= 2 ? events.starts[1] : YAML::Mark::null_mark();
}

class reader {
 public:
  explicit reader(const validation_context& ctx) : ctx_(ctx) {}

  directive read(const YAML::Node& root) {
    if (!root.IsMap()) fail(error_code::not_a_mapping, root, "document must be a mapping");
    const fields f(root, "",
                   {"id", "issuer", "issued_at", "legal_basis", "action", "response", "throttle",
                    "targets", "lifts", "scope", "not_before", "not_after"});
    directive d;
    d.id = directive_id(f.require("id", "").value, "id");
    d.issuer = scalar(f.require("issuer", "").value, "issuer");
    if (!token_chars(d.issuer, false)) {
      fail(error_code::bad_value, f.find("issuer")->value,
           "issuer: " + quote(d.issuer) + " is not an issuer name ([a-z0-9._-], 1..64 characters)");
    }
    const entry& issued = f.require("issued_at", "");
    d.issued_at = time_value(issued.value, "issued_at");
    if (d.issued_at > saturating_add(ctx_.now, ctx_.max_clock_skew)) {
      fail(error_code::issued_in_future, issued.value,
           "issued_at is " + std::to_string(d.issued_at - ctx_.now) + " s ahead of now (allowed " +
               std::to_string(ctx_.max_clock_skew) + " s)");
    }
    const entry& basis = f.require("legal_basis", "");
    d.legal_basis = scalar(basis.value, "legal_basis");
    const long basis_length = printable_utf8_length(d.legal_basis);
    if (basis_length < 1 || basis_length > 200) {
      fail(error_code::bad_value, basis.value,
           basis_length < 0
               ? "legal_basis must be UTF-8 text without control characters"
               : "legal_basis must be 1..200 characters, got " + std::to_string(basis_length));
    }
    read_action(f, d);
    if (const entry* e = f.find("response")) {
      if (d.action != directive_action::block) not_allowed(*e, "response", d.action);
      const std::string& r = scalar(e->value, "response");
      if (r == "drop") {
        d.response = block_response::drop;
      } else if (r == "reset") {
        d.response = block_response::reset;
      } else if (r == "notice") {
        d.response = block_response::notice;
      } else {
        fail(error_code::bad_value, e->value,
             "response: " + quote(r) + " is not drop | reset | notice");
      }
    }
    if (const entry* e = f.find("throttle")) {
      if (d.action != directive_action::throttle) not_allowed(*e, "throttle", d.action);
      d.throttle = read_throttle(e->value);
    } else if (d.action == directive_action::throttle) {
      fail(error_code::missing_field, root, "throttle is required for action throttle");
    }
    const entry* targets = f.find("targets");
    if (targets != nullptr) d.targets = read_targets(targets->value);
    const entry* lifts = f.find("lifts");
    if (lifts != nullptr) {
      if (d.action != directive_action::unblock) not_allowed(*lifts, "lifts", d.action);
      d.lifts = read_lifts(lifts->value, d.id);
    }
    if (d.action == directive_action::unblock) {
      if (!d.targets.empty() && !d.lifts.empty()) {
        fail(error_code::bad_value, lifts->key, "unblock takes targets or lifts, not both");
      }
      if (d.targets.empty() && d.lifts.empty()) {
        fail(error_code::no_targets,
             lifts != nullptr     ? lifts->value
             : targets != nullptr ? targets->value
                                  : root,
             "unblock needs non-empty targets or lifts");
      }
    } else if (d.targets.empty()) {
      fail(error_code::no_targets, targets != nullptr ? targets->value : root,
           std::string(to_string(d.action)) +
               " needs at least one target (apps, prefixes or domains)");
    }
    d.scope = read_scope(f.require("scope", "").value);
    read_window(f, d);
    return d;
  }

 private:
  [[noreturn]] static void not_allowed(const entry& e, std::string_view key, directive_action a) {
    fail(error_code::field_not_allowed, e.key,
         std::string(key) + " is not allowed for action " + std::string(to_string(a)));
  }

  static void read_action(const fields& f, directive& d) {
    const entry& e = f.require("action", "");
    const std::string& a = scalar(e.value, "action");
    if (a == "block") {
      d.action = directive_action::block;
    } else if (a == "unblock") {
      d.action = directive_action::unblock;
    } else if (a == "monitor") {
      d.action = directive_action::monitor;
    } else if (a == "throttle") {
      d.action = directive_action::throttle;
    } else {
      fail(error_code::bad_value, e.value,
           "action: " + quote(a) + " is not block | unblock | monitor | throttle");
    }
  }

  static throttle_spec read_throttle(const YAML::Node& node) {
    constexpr std::uint64_t max_burst = sluice::match::max_throttle_burst_bytes;
    const fields f(node, "throttle", {"rate_bps", "burst_bytes"});
    throttle_spec t;
    t.rate_bps = positive_integer(f.require("rate_bps", "throttle").value, "throttle.rate_bps");
    const entry& burst = f.require("burst_bytes", "throttle");
    t.burst_bytes = positive_integer(burst.value, "throttle.burst_bytes");
    if (t.burst_bytes > max_burst) {
      fail(error_code::bad_value, burst.value,
           "throttle.burst_bytes must be at most " + std::to_string(max_burst) + " (16 MiB - 1, the fast path's token bucket)");
    }
    return t;
  }

  target_set read_targets(const YAML::Node& node) const {
    const fields f(node, "targets", {"apps", "prefixes", "domains"});
    target_set t;
    if (const entry* e = f.find("apps")) {
      std::size_t i = 0;
      unique_list apps(t.apps);
      for (const auto& item : sequence(e->value, "targets.apps")) {
        const std::string path = at("targets.apps", i++);
        const std::string& name = scalar(item, path);
        if (!ctx_.known_apps.contains(name)) {
          fail(error_code::unknown_app, item, path + ": no app profile named " + quote(name));
        }
        apps.add(name, item, path, name);
      }
    }
    if (const entry* e = f.find("prefixes")) {
      std::size_t i = 0;
      unique_list prefixes(t.prefixes);
      for (const auto& item : sequence(e->value, "targets.prefixes")) {
        const std::string path = at("targets.prefixes", i++);
        const std::string& text = scalar(item, path);
        const auto p = sluice::match::parse_prefix(text);
        if (!p) {
          using sluice::match::prefix_error;
          const char* why = p.error == prefix_error::host_bits_set ? "has host bits set"
                            : p.error == prefix_error::bad_length  ? "has a bad prefix length"
                                                                   : "is not an IPv4/IPv6 prefix";
          fail(error_code::bad_prefix, item, path + ": " + quote(text) + " " + why);
        }
        prefixes.add(p.prefix.text(), item, path, text);
      }
    }
    if (const entry* e = f.find("domains")) {
      std::size_t i = 0;
      unique_list domains(t.domains);
      for (const auto& item : sequence(e->value, "targets.domains")) {
        const std::string path = at("targets.domains", i++);
        const std::string& text = scalar(item, path);
        const auto n = sluice::match::normalize_rule_name(text);
        if (!n) {
          fail(error_code::bad_domain, item,
               path + ": " + quote(text) + " is not a domain name (" + to_string(n.error) + ")");
        }
        domains.add(n.text(), item, path, text);
      }
    }
    return t;
  }

  static std::vector<std::string> read_lifts(const YAML::Node& node, const std::string& own_id) {
    std::vector<std::string> out;
    unique_list lifts(out);
    std::size_t i = 0;
    for (const auto& item : sequence(node, "lifts")) {
      const std::string path = at("lifts", i++);
      std::string id = directive_id(item, path);
      if (id == own_id)
        fail(error_code::bad_value, item, path + ": a directive cannot lift itself");
      lifts.add(id, item, path, id);
    }
    return out;
  }

  scope_spec read_scope(const YAML::Node& node) const {
    scope_spec s;
    if (node.IsScalar()) {
      if (node.Scalar() != "all") {
        fail(error_code::bad_value, node,
             "scope: " + quote(node.Scalar()) + " is not 'all' (or a mapping of sites and labels)");
      }
      s.all = true;
      return s;
    }
    if (!node.IsMap()) fail(error_code::bad_type, node, "scope must be 'all' or a mapping");
    const fields f(node, "scope", {"sites", "labels"});
    if (const entry* e = f.find("sites")) {
      std::size_t i = 0;
      unique_list sites(s.sites);
      for (const auto& item : sequence(e->value, "scope.sites")) {
        const std::string path = at("scope.sites", i++);
        const std::string& site = scalar(item, path);
        if (!ctx_.known_sites.contains(site)) {
          fail(error_code::unknown_site, item, path + ": no site named " + quote(site));
        }
        sites.add(site, item, path, site);
      }
    }
    if (const entry* e = f.find("labels")) {
      if (!e->value.IsMap()) fail(error_code::bad_type, e->value, "scope.labels must be a mapping");
      for (const auto& kv : e->value) {
        const std::string& key = scalar(kv.first, "scope.labels key");
        const std::string path = "scope.labels." + key;
        const auto known = ctx_.known_labels.find(key);
        if (known == ctx_.known_labels.end()) {
          fail(error_code::unknown_label, kv.first, "scope.labels: no node label " + quote(key));
        }
        if (kv.second.IsNull()) fail(error_code::bad_type, kv.first, path + " has no value");
        const std::string& value = scalar(kv.second, path);
        if (!known->second.contains(value)) {
          fail(error_code::unknown_label, kv.second,
               path + ": " + quote(value) + " is not a known value of label " + quote(key));
        }
        if (!s.labels.emplace(key, value).second) {
          fail(error_code::duplicate_key, kv.first,
               "key " + quote("scope.labels." + key) + " given twice");
        }
      }
    }
    if (s.sites.empty() && s.labels.empty()) {
      fail(error_code::bad_value, node,
           "scope names no sites and no labels (use 'all' for every node)");
    }
    return s;
  }

  void read_window(const fields& f, directive& d) const {
    const entry& nb = f.require("not_before", "");
    d.not_before = time_value(nb.value, "not_before");
    const entry* na = f.find("not_after");
    if (na != nullptr) {
      const std::int64_t end = time_value(na->value, "not_after");
      if (end <= d.not_before) {
        fail(error_code::bad_window, na->value, "not_after must be later than not_before");
      }
      d.not_after = end;
    }
    if (d.not_before > saturating_add(ctx_.now, ctx_.max_lead)) {
      fail(error_code::bad_window, nb.value,
           "not_before is more than " + std::to_string(ctx_.max_lead) + " s ahead of now");
    }
    if (na != nullptr) {
      if (*d.not_after - d.not_before > ctx_.max_duration) {
        fail(error_code::bad_window, na->value,
             "validity window is longer than " + std::to_string(ctx_.max_duration) + " s");
      }
      if (*d.not_after <= ctx_.now) {
        fail(error_code::expired, na->value, "not_after is not after now: the directive has ended");
      }
    }
  }

  const validation_context& ctx_;
};

}  // namespace

parse_result parse_directive(std::string_view yaml, const validation_context& ctx) {
  parse_result res;
  try {
    if (yaml.size() > ctx.max_document_bytes) {
      res.error = to_error(error_code::document_too_large, YAML::Mark::null_mark(),
                           "document is " + std::to_string(yaml.size()) + " bytes, over the limit of " +
                               std::to_string(ctx.max_document_bytes));
      return res;
    }
    const std::string text(yaml);
    const auto second = scan(text, ctx);
    const YAML::Node root = YAML::Load(text);
    if (!root.IsDefined() || root.IsNull()) {
      res.error = to_error(error_code::not_a_mapping, root.Mark(), "document is empty");
      return res;
    }
    reader r(ctx);
    directive d = r.read(root);
    // A second document would be signed but silently ignored; refuse it.
    if (second) {
      res.error = to_error(error_code::malformed_yaml, *second,
                           "more than one YAML document in the stream");
      return res;
    }
    res.value = std::move(d);
  } catch (const failure& f) {
    res.error = to_error(f.code, f.mark, f.message);
  } catch (const YAML::Exception& e) {
    res.error = to_error(error_code::malformed_yaml, e.mark, e.msg);
  }
  return res;
}

}  // namespace sluice::control::directive
