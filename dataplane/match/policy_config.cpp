#include "dataplane/match/policy_config.hpp"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <fstream>
#include <istream>
#include <map>
#include <set>

#include "dataplane/match/domain_name.hpp"
#include "dataplane/match/prefix_set.hpp"

namespace sluice::match {

std::string config_error::text() const {
  std::string out = file.empty() ? std::string("<input>") : file;
  out += ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
  return out;
}

// ---- time --------------------------------------------------------------------------------------

namespace {

// Howard Hinnant's days_from_civil.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, unsigned& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + static_cast<unsigned>(s[i] - '0');
  }
  return true;
}

}  // namespace

std::optional<std::int64_t> parse_rfc3339(std::string_view s) {
  unsigned y, mo, d, h, mi, sec;
  if (!digits(s, 0, 4, y) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !digits(s, 11, 2, h) || s[13] != ':' || !digits(s, 14, 2, mi) || s[16] != ':' ||
      !digits(s, 17, 2, sec)) {
    return std::nullopt;
  }
  static constexpr unsigned month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] || (mo == 2 && d == 29 && !leap) ||
      h > 23 || mi > 59 || sec > 60) {
    return std::nullopt;
  }
  std::size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    const std::size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
    if (pos == start) return std::nullopt;
  }
  std::int64_t offset = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    unsigned oh, om;
    if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !digits(s, pos + 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset = (s[pos] == '+' ? 1 : -1) * static_cast<std::int64_t>(oh * 3600 + om * 60);
    pos += 6;
  } else {
    return std::nullopt;  // a time without a zone is ambiguous
  }
  if (pos != s.size()) return std::nullopt;
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + std::min(sec, 59u) - offset;
}

// ---- YAML helpers ---------------------------------------------------------------------------------

namespace {

// Internal only: thrown while walking the document, turned into config_error at the API.
struct config_failure {
  YAML::Mark mark;
  std::string message;
  std::string file;
};

[[noreturn]] void fail(const YAML::Node& node, std::string message) {
  throw config_failure{node.Mark(), std::move(message), {}};
}

config_error to_error(const config_failure& f) {
  config_error e;
  e.file = f.file;
  e.line = f.mark.is_null() ? 0 : f.mark.line + 1;
  e.column = f.mark.is_null() ? 0 : f.mark.column + 1;
  e.message = f.message;
  return e;
}

// Checks a mapping's keys against `allowed` (unknown and repeated keys are errors) and returns
// key -> value node.
std::map<std::string, YAML::Node> mapping(const YAML::Node& node, std::string_view what,
                                          const std::set<std::string_view>& allowed) {
  if (!node.IsMap()) fail(node, std::string(what) + " must be a mapping");
  std::map<std::string, YAML::Node> out;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) fail(kv.first, "keys must be plain strings");
    const std::string key = kv.first.Scalar();
    if (!allowed.contains(key)) fail(kv.first, "unknown key '" + key + "' in " + std::string(what));
    if (!out.emplace(key, kv.second).second) fail(kv.first, "repeated key '" + key + "'");
  }
  return out;
}

std::string scalar(const YAML::Node& node, std::string_view what) {
  if (!node.IsScalar()) fail(node, std::string(what) + " must be a scalar");
  return node.Scalar();
}

std::uint64_t unsigned_value(const YAML::Node& node, std::string_view what) {
  const std::string s = scalar(node, what);
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) {
    fail(node, std::string(what) + " must be a non-negative integer, got '" + s + "'");
  }
  return v;
}

std::int64_t time_value(const YAML::Node& node, std::string_view what) {
  const std::string s = scalar(node, what);
  if (auto t = parse_rfc3339(s)) return *t;
  fail(node, std::string(what) + ": bad time '" + s + "' (want RFC 3339, e.g. 2026-11-28T00:00:00Z)");
}

std::vector<std::string> prefix_list(const YAML::Node& node) {
  if (!node.IsSequence()) fail(node, "prefixes must be a list");
  std::vector<std::string> out;
  for (const auto& item : node) {
    std::string text = scalar(item, "prefix");
    const prefix_result p = parse_prefix(text);
    if (!p) fail(item, "bad prefix '" + text + "': " + to_string(p.error));
    out.push_back(std::move(text));
  }
  return out;
}

std::vector<std::string> domain_list(const YAML::Node& node) {
  if (!node.IsSequence()) fail(node, "domains must be a list");
  std::vector<std::string> out;
  for (const auto& item : node) {
    std::string text = scalar(item, "domain");
    const rule_name n = normalize_rule_name(text);
    if (!n) fail(item, "bad domain '" + text + "': " + to_string(n.error));
    out.push_back(std::move(text));
  }
  return out;
}

YAML::Node parse_document(std::istream& in) {
  YAML::Node root = YAML::Load(in);
  if (!root.IsDefined() || root.IsNull()) {
    throw config_failure{YAML::Mark(), "empty document", {}};
  }
  return root;
}

app_profile app_from_node(const YAML::Node& root) {
  auto keys = mapping(root, "app profile", {"name", "description", "prefixes", "domains"});
  app_profile app;
  if (!keys.contains("name")) fail(root, "app profile needs a name");
  app.name = scalar(keys["name"], "name");
  if (keys.contains("description")) app.description = scalar(keys["description"], "description");
  if (keys.contains("prefixes")) app.prefixes = prefix_list(keys["prefixes"]);
  if (keys.contains("domains")) app.domains = domain_list(keys["domains"]);
  if (app.prefixes.empty() && app.domains.empty()) fail(root, "app profile has no targets");
  return app;
}

bool valid_app_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  }
  return true;
}

class policy_reader {
 public:
  explicit policy_reader(std::filesystem::path apps_dir) : apps_dir_(std::move(apps_dir)) {}

  policy_spec read(const YAML::Node& root) {
    auto keys = mapping(root, "policy", {"revision", "generated_at", "rules"});
    policy_spec spec;
    if (keys.contains("revision")) spec.revision = unsigned_value(keys["revision"], "revision");
    if (keys.contains("generated_at")) {
      spec.generated_at = time_value(keys["generated_at"], "generated_at");
    }
    if (!keys.contains("rules")) fail(root, "policy needs 'rules'");
    const YAML::Node& rules = keys["rules"];
    if (!rules.IsSequence()) fail(rules, "rules must be a list");
    std::set<std::string> ids;
    for (const auto& node : rules) {
      spec.rules.push_back(read_rule(node));
      if (!ids.insert(spec.rules.back().id).second) {
        fail(node, "duplicate rule id '" + spec.rules.back().id + "'");
      }
    }
    return spec;
  }

 private:
  rule_spec read_rule(const YAML::Node& node) {
    auto keys = mapping(node, "rule",
                        {"id", "directive", "action", "legal_basis", "throttle", "not_before",
                         "not_after", "prefixes", "domains", "apps"});
    rule_spec r;
    if (!keys.contains("id")) fail(node, "rule needs an id");
    r.id = scalar(keys["id"], "id");
    if (r.id.empty()) fail(keys["id"], "rule id is empty");
    if (keys.contains("directive")) r.directive = scalar(keys["directive"], "directive");
    if (!keys.contains("action")) fail(node, "rule '" + r.id + "' needs an action");
    const std::string act = scalar(keys["action"], "action");
    const auto parsed = parse_action(act);
    if (!parsed) {
      fail(keys["action"], "unknown action '" + act + "' (drop | reset | notice | throttle | monitor)");
    }
    r.act = *parsed;
    if (keys.contains("legal_basis")) r.legal_basis = scalar(keys["legal_basis"], "legal_basis");
    if (r.act == action::notice && r.legal_basis.empty()) {
      fail(node, "rule '" + r.id + "': notice needs a legal_basis");
    }
    if (keys.contains("throttle")) {
      if (r.act != action::throttle) fail(keys["throttle"], "throttle given for a non-throttle rule");
      auto t = mapping(keys["throttle"], "throttle", {"rate_bps", "burst_bytes"});
      if (!t.contains("rate_bps")) fail(keys["throttle"], "throttle needs rate_bps");
      r.throttle.rate_bps = unsigned_value(t["rate_bps"], "rate_bps");
      if (r.throttle.rate_bps == 0) fail(t["rate_bps"], "rate_bps must be > 0");
      if (t.contains("burst_bytes")) {
        r.throttle.burst_bytes = unsigned_value(t["burst_bytes"], "burst_bytes");
        if (r.throttle.burst_bytes == 0) fail(t["burst_bytes"], "burst_bytes must be > 0");
        if (r.throttle.burst_bytes > max_throttle_burst_bytes)
          fail(t["burst_bytes"], "burst_bytes must be at most " +
                                     std::to_string(max_throttle_burst_bytes) +
                                     " (the fast path's token bucket)");
      } else {
        r.throttle.burst_bytes = default_burst_bytes;
      }
    } else if (r.act == action::throttle) {
      fail(node, "rule '" + r.id + "': throttle needs 'throttle: { rate_bps: N }'");
    }
    if (keys.contains("not_before")) r.not_before = time_value(keys["not_before"], "not_before");
    if (keys.contains("not_after")) {
      r.not_after = time_value(keys["not_after"], "not_after");
      if (r.not_before && *r.not_after <= *r.not_before) {
        fail(keys["not_after"], "not_after must be later than not_before");
      }
    }
    if (keys.contains("prefixes")) r.prefixes = prefix_list(keys["prefixes"]);
    if (keys.contains("domains")) r.domains = domain_list(keys["domains"]);
    if (keys.contains("apps")) {
      const YAML::Node& apps = keys["apps"];
      if (!apps.IsSequence()) fail(apps, "apps must be a list");
      for (const auto& item : apps) {
        const app_profile& app = resolve_app(item);
        r.prefixes.insert(r.prefixes.end(), app.prefixes.begin(), app.prefixes.end());
        r.domains.insert(r.domains.end(), app.domains.begin(), app.domains.end());
      }
    }
    if (r.prefixes.empty() && r.domains.empty()) {
      fail(node, "rule '" + r.id + "' has no prefixes, domains or apps");
    }
    return r;
  }

  const app_profile& resolve_app(const YAML::Node& item) {
    const std::string name = scalar(item, "app name");
    if (!valid_app_name(name)) fail(item, "bad app name '" + name + "'");
    if (auto it = apps_.find(name); it != apps_.end()) return it->second;
    if (apps_dir_.empty()) fail(item, "app '" + name + "' given but no apps directory configured");
    const std::filesystem::path path = apps_dir_ / (name + ".yaml");
    std::ifstream in(path);
    if (!in) fail(item, "app '" + name + "': cannot open " + path.string());
    app_profile app;
    try {
      app = app_from_node(parse_document(in));
    } catch (config_failure& f) {
      f.file = path.string();
      throw;
    } catch (const YAML::Exception& e) {
      throw config_failure{e.mark, e.msg, path.string()};
    }
    if (app.name != name) fail(item, "app file " + path.string() + " names '" + app.name + "'");
    return apps_.emplace(name, std::move(app)).first->second;
  }

  static constexpr std::uint64_t default_burst_bytes = 16384;
  std::filesystem::path apps_dir_;
  std::map<std::string, app_profile> apps_;
};

}  // namespace

app_load_result load_app_profile(std::istream& in) {
  app_load_result res;
  try {
    res.profile = app_from_node(parse_document(in));
  } catch (const config_failure& f) {
    res.error = to_error(f);
  } catch (const YAML::Exception& e) {
    res.error = to_error(config_failure{e.mark, e.msg, {}});
  }
  return res;
}

app_load_result load_app_profile_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) {
    app_load_result res;
    res.error.file = path.string();
    res.error.message = "cannot open file";
    return res;
  }
  app_load_result res = load_app_profile(in);
  if (!res) res.error.file = path.string();
  return res;
}

policy_load_result load_policy(std::istream& in, const std::filesystem::path& apps_dir) {
  policy_load_result res;
  try {
    policy_reader reader(apps_dir);
    res.spec = reader.read(parse_document(in));
  } catch (const config_failure& f) {
    res.error = to_error(f);
  } catch (const YAML::Exception& e) {
    res.error = to_error(config_failure{e.mark, e.msg, {}});
  }
  return res;
}

policy_load_result load_policy_file(const std::filesystem::path& path,
                                    const std::filesystem::path& apps_dir) {
  std::ifstream in(path);
  if (!in) {
    policy_load_result res;
    res.error.file = path.string();
    res.error.message = "cannot open file";
    return res;
  }
  policy_load_result res =
      load_policy(in, apps_dir.empty() ? path.parent_path() / "apps" : apps_dir);
  if (!res && res.error.file.empty()) res.error.file = path.string();
  return res;
}

}  // namespace sluice::match
