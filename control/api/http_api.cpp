#include "control/api/http_api.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <any>
#include <charconv>
#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>

#include "control/common/node_protocol.hpp"
#include "control/crypto/minisign.hpp"
#include "control/fleet/compile.hpp"

namespace sluice::control::api {
namespace {

using json = nlohmann::json;
using controller::error_kind;
using controller::role;

json to_json(const controller::directive_view& v) {
  const auto& r = v.record;
  json approvals = json::array();
  json overrides = json::array();
  for (const auto& a : r.approvals) {
    if (a.kind == "override")
      overrides.push_back({{"actor", a.actor}, {"at", a.at}, {"reason", a.reason}});
    else if (a.reason.empty())
      approvals.push_back({{"actor", a.actor}, {"at", a.at}});
    else
      approvals.push_back({{"actor", a.actor}, {"at", a.at}, {"note", a.reason}});
  }
  json overlaps = json::array();
  for (const auto& o : v.overlaps) overlaps.push_back(o.message);
  json j{{"issuer", r.issuer},
         {"id", r.id},
         {"action", r.action},
         {"state", r.state},
         {"end_reason", r.end_reason},
         {"submitted_by", r.submitted_by},
         {"received_at", r.received_at},
         {"updated_at", r.updated_at},
         {"ended_at", r.ended_at},
         {"approvals", approvals},
         {"overrides", overrides},
         {"protected_overlaps", overlaps},
         {"enforcement", {{"in_scope", v.in_scope}, {"enforcing", v.enforcing},
                          {"pending", v.pending}, {"failing", v.failing}, {"stale", v.stale}}},
         {"approvals_required", v.approvals_required},
         {"overrides_required", v.overlaps.empty() ? 0 : v.overrides_required}};
  if (const auto key = crypto::signature_key_id(r.signature)) j["signed_by_key"] = crypto::to_hex(*key);
  if (v.parsed) {
    const auto& d = *v.parsed;
    j["legal_basis"] = d.legal_basis;
    j["not_before"] = fleet::format_rfc3339(d.not_before);
    j["not_after"] = d.not_after ? json(fleet::format_rfc3339(*d.not_after)) : json();
    j["targets"] = {{"apps", d.targets.apps}, {"prefixes", d.targets.prefixes},
                    {"domains", d.targets.domains}};
    j["scope"] = {{"all", d.scope.all}, {"sites", d.scope.sites}, {"labels", d.scope.labels}};
    if (d.action == directive::directive_action::block)
      j["response"] = directive::to_string(d.response);
    if (d.throttle)
      j["throttle"] = {{"rate_bps", d.throttle->rate_bps}, {"burst_bytes", d.throttle->burst_bytes}};
    if (!d.lifts.empty()) j["lifts"] = d.lifts;
  }
  return j;
}

json to_json(const controller::rollout_view& r) {
  return {{"target", r.target},       {"released", r.released}, {"stage", r.stage},
          {"paused", r.paused},       {"reason", r.reason},     {"stage_since", r.stage_since},
          {"emergency_stop", r.emergency_stop}, {"leader", r.leader}, {"is_leader", r.is_leader}};
}

// A stored checkpoint (JSON text, "" for none) as a JSON value.
json checkpoint_value(const std::string& text) {
  return text.empty() ? json() : json::parse(text, nullptr, false);
}

json to_json(const controller::node_view& n) {
  return {{"node", n.record.node_id},
          {"labels", n.record.labels},
          {"state", n.state},
          {"canary", n.canary},
          {"offered_revision", n.offered_revision},
          {"applied_revision", n.record.applied_revision},
          {"applied_at_ms", n.applied_at_ms},
          {"ruleset_sha256", n.record.ruleset_sha256},
          {"last_seen", n.record.last_seen},
          {"health", n.record.health},
          {"error", n.record.error},
          {"audit_checkpoint", checkpoint_value(n.record.audit_checkpoint)},
          {"audit_checkpoint_conflict", checkpoint_value(n.record.audit_checkpoint_conflict)}};
}

json to_json(const store::inventory_record& r) {
  return {{"node", r.node_id},           {"labels", r.labels},
          {"state", r.state},            {"fingerprint", r.fingerprint},
          {"certificate_not_after", r.certificate_not_after},
          {"source", r.source},          {"enrolled_at", r.enrolled_at},
          {"enrolled_by", r.enrolled_by}, {"revoked_at", r.revoked_at},
          {"revoked_by", r.revoked_by},  {"revoked_reason", r.revoked_reason}};
}

json to_json(const audit::audit_record& a) {
  json detail = json::parse(a.detail, nullptr, false);
  if (detail.is_discarded()) detail = a.detail;
  return {{"seq", a.seq},         {"at", a.at},           {"actor", a.actor},
          {"event", a.event},     {"subject", a.subject}, {"detail", detail},
          {"detail_text", a.detail}, {"prev_hash", a.prev_hash}, {"hash", a.hash}};
}

void send_json(response& res, int status, const json& body) {
  res.status = status;
  // Invalid UTF-8 from the caller (a node id in a message) is replaced, not thrown on.
  res.set_body(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// 200 {"KEY": [item...]}, serialised one item at a time: a JSON DOM of one item, never of the
// whole list (GET /v1/nodes or /v1/audit over a 10,000-node fleet built tens of MB of DOM at once,
// which stayed in the controller's peak RSS).
template <class Items>
void send_json_list(response& res, std::string_view key, const Items& items) {
  std::string body = "{\"";
  body += key;
  body += "\":[";
  bool first = true;
  for (const auto& item : items) {
    if (!first) body += ',';
    first = false;
    body += to_json(item).dump(-1, ' ', false, json::error_handler_t::replace);
  }
  body += "]}";
  res.status = 200;
  res.set_body(std::move(body), "application/json");
}

void send_error(response& res, const controller::op_error& e) {
  json body{{"error", e.code}, {"message", e.message}};
  if (e.line > 0) {
    body["line"] = e.line;
    body["column"] = e.column;
  }
  send_json(res, controller::http_status(e.kind), body);
}

std::map<std::string, std::string> parse_labels(const std::string& text) {
  std::map<std::string, std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    const std::string kv = text.substr(pos, end - pos);
    const auto eq = kv.find('=');
    if (eq != std::string::npos && eq > 0) out[kv.substr(0, eq)] = kv.substr(eq + 1);
    pos = end + 1;
  }
  return out;
}

// "N", quoted: the ETag of revision N.
std::string etag(std::uint64_t revision) { return "\"" + std::to_string(revision) + "\""; }

std::optional<json> body_json(const request& req) {
  if (req.body.empty()) return json::object();
  json j = json::parse(req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

// One waiting long poll (issue 13): answered when the controller wakes it (the node's offer
// moved) or when its timer runs out (304), whichever comes first. No thread waits: the wake
// posts to the io_context, the timer is an asio timer. `mutex_` orders the two and guards the
// timer; it is always taken before the controller's lock, never inside it (the wake only posts).
class long_poll : public std::enable_shared_from_this<long_poll> {
 public:
  long_poll(controller::controller& core, boost::asio::io_context& ioc, responder out,
            std::string node, std::map<std::string, std::string> labels,
            std::optional<std::uint64_t> held)
      : core_(core), timer_(ioc), out_(std::move(out)), node_(std::move(node)),
        labels_(std::move(labels)), held_(held) {}

  void start(std::chrono::milliseconds wait) {
    std::lock_guard lock(mutex_);
    attempt_locked();
    if (done_) return;
    timer_.expires_after(wait);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->expire();
    });
  }

 private:
  void attempt_locked() {
    auto p = core_.poll_snapshot(node_, labels_, held_, [weak = weak_from_this()] {
      if (auto self = weak.lock())
        boost::asio::post(self->timer_.get_executor(), [self] { self->woken(); });
    });
    switch (p.k) {
      case controller::snapshot_poll::kind::waiting:
        ticket_ = p.ticket;
        return;
      case controller::snapshot_poll::kind::offer: {
        response res;
        res.status = 200;
        res.content_type = "application/json";
        res.headers.emplace_back("ETag", etag(p.offer.revision));
        res.headers.emplace_back(status_carry_header_name, "yes");
        res.body = std::move(p.offer.body);
        return finish_locked(std::move(res));
      }
      case controller::snapshot_poll::kind::failed: {
        response res;
        send_error(res, p.error);
        return finish_locked(std::move(res));
      }
    }
  }

  void finish_locked(response res) {
    done_ = true;
    out_.send(std::move(res));
  }

  void woken() {
    std::lock_guard lock(mutex_);
    if (done_) return;
    attempt_locked();  // may wait again: the wake says "may have moved"
    if (done_) timer_.cancel();
  }

  void expire() {
    std::lock_guard lock(mutex_);
    if (done_) return;
    core_.cancel_poll(ticket_);  // false: a wake is on its way and will find done_
    response res;
    res.status = 304;
    res.headers.emplace_back("ETag", etag(*held_));
    res.headers.emplace_back(status_carry_header_name, "yes");
    // A node whose revision does not move still gets each new audit checkpoint (issue 14).
    if (auto cp = core_.audit_checkpoint_header())
      res.headers.emplace_back("X-Sluice-Audit-Checkpoint", *cp);
    finish_locked(std::move(res));
  }

  controller::controller& core_;
  std::mutex mutex_;
  boost::asio::steady_timer timer_;
  responder out_;
  std::string node_;
  std::map<std::string, std::string> labels_;
  std::optional<std::uint64_t> held_;
  std::uint64_t ticket_ = 0;
  bool done_ = false;
};

}  // namespace

std::string token_hash(const std::string& token) { return audit::sha256_hex(token); }

std::optional<status_body> parse_status_body(std::string_view text) {
  json body = text.empty() ? json::object() : json::parse(text, nullptr, false);
  if (body.is_discarded() || !body.is_object()) return std::nullopt;
  status_body out;
  controller::status_report& rep = out.report;
  try {
    // Revisions are unsigned (nlohmann would wrap a negative number silently).
    const auto unsigned_field = [&](const char* name) -> std::optional<std::uint64_t> {
      if (!body.contains(name)) return std::uint64_t{0};
      if (!body[name].is_number_unsigned()) return std::nullopt;
      return body[name].get<std::uint64_t>();
    };
    if (!body.contains("revision")) return std::nullopt;
    const auto revision = unsigned_field("revision"), offered = unsigned_field("offered");
    if (!revision || !offered) return std::nullopt;
    rep.revision = *revision;
    rep.offered = *offered;
    rep.ruleset_sha256 = body.value("ruleset_sha256", std::string());
    const std::string result = body.at("result").get<std::string>();
    if (result != "ack" && result != "nack") return std::nullopt;
    rep.ack = result == "ack";
    rep.error = body.value("error", std::string());
    rep.health = body.value("health", std::string("ok"));
    if (body.contains("labels"))
      out.labels = body.at("labels").get<std::map<std::string, std::string>>();
    // The signed audit checkpoint the node holds, and one that conflicts with it (issue 14): kept
    // as JSON text, checked by the controller.
    for (auto [key, field] : {std::pair{"audit_checkpoint", &rep.audit_checkpoint},
                              std::pair{"audit_checkpoint_conflict", &rep.audit_checkpoint_conflict}})
      if (body.contains(key) && body.at(key).is_object()) *field = body.at(key).dump();
  } catch (const json::exception&) {
    return std::nullopt;
  }
  return out;
}

std::optional<controller::status_report> parse_status_header(std::string_view value) {
  // Takes "NAME=" off the front of `value` and returns what comes before the next space (a
  // space must be followed by another field: no trailing space).
  const auto field = [&value](std::string_view name) -> std::optional<std::string_view> {
    if (!value.starts_with(name) || value.size() <= name.size() || value[name.size()] != '=')
      return std::nullopt;
    value.remove_prefix(name.size() + 1);
    const std::size_t space = value.find(' ');
    const std::string_view out = value.substr(0, space);
    if (space == std::string_view::npos) {
      value = {};
    } else {
      value.remove_prefix(space + 1);
      if (value.empty()) return std::nullopt;
    }
    return out;
  };
  const auto number = [](std::optional<std::string_view> text) -> std::optional<std::uint64_t> {
    std::uint64_t n = 0;
    // Canonical decimal only (no leading zero): one report, one spelling.
    if (!text || text->empty() || text->size() > 20 || (text->size() > 1 && (*text)[0] == '0'))
      return std::nullopt;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), n);
    if (ec != std::errc() || end != text->data() + text->size()) return std::nullopt;
    return n;
  };
  if (!value.starts_with("ack ")) return std::nullopt;
  value.remove_prefix(4);
  controller::status_report r;
  const auto revision = number(field("revision"));
  const auto offered = number(field("offered"));
  const auto ruleset = field("ruleset");
  if (!revision || !offered || !ruleset) return std::nullopt;
  const bool hex = std::all_of(ruleset->begin(), ruleset->end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
  if (!hex || (!ruleset->empty() && ruleset->size() != 64)) return std::nullopt;
  r.revision = *revision;
  r.offered = *offered;
  r.ruleset_sha256 = *ruleset;
  if (!value.empty()) {
    const auto checkpoint = field("checkpoint");
    if (!checkpoint || checkpoint->empty() || !value.empty() ||
        checkpoint->size() > 4 * ((audit::max_checkpoint_bytes + 2) / 3))
      return std::nullopt;
    r.audit_checkpoint_header = *checkpoint;
  }
  return r;
}

http_api::http_api(controller::controller& core, const std::vector<token_entry>& tokens,
                   api_limits limits, console_config console)
    : core_(core), limits_(limits), per_token_(limits.per_token, limits.max_rate_keys),
      per_address_(limits.per_address, limits.max_rate_keys), sessions_(console) {
  for (const auto& t : tokens) by_hash_[t.sha256] = t;
  if (!console.assets.empty()) assets_ = load_console_assets(console.assets);
}

namespace {

response too_many(const rate_decision& d, std::string_view who) {
  response r = error_response(429, "rate_limited", std::string(who) + " is over its request rate; retry later");
  r.headers.emplace_back("Retry-After", std::to_string(d.retry_after.count()));
  return r;
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json session_json(const console_session& s, const console_config& cfg) {
  return {{"name", s.who.name},
          {"role", controller::to_string(s.who.r)},
          {"csrf", s.csrf},
          {"expires_at", s.expires_ms(cfg)}};
}

response refusal_response(const controller::op_error& e) {
  response r;
  send_error(r, e);
  return r;
}

}  // namespace

// Requests without a valid credential share their remote address's bucket: a flood of bad or
// missing tokens from one address is cut to 429 before it costs more than a hash each.
admission http_api::admit_public(const request& req) {
  if (const auto d = per_address_.take(req.remote_address); !d.allowed)
    return admission::refuse(refusal::rate_limited, too_many(d, "this address"));
  return admission::admit(0);
}

std::variant<controller::principal, admission> http_api::operator_of(const request& req) {
  const auto unauthenticated = [this, &req](std::string code, std::string message) {
    if (const auto d = per_address_.take(req.remote_address); !d.allowed)
      return admission::refuse(refusal::rate_limited, too_many(d, "this address"));
    return admission::refuse(refusal::unauthenticated,
                             refusal_response({error_kind::unauthorized, std::move(code), std::move(message)}));
  };
  const std::string auth = req.header("Authorization");
  if (!auth.empty()) {
    const auto it = auth.size() > 7 && auth.compare(0, 7, "Bearer ") == 0
                        ? by_hash_.find(token_hash(auth.substr(7)))
                        : by_hash_.end();
    if (it == by_hash_.end()) return unauthenticated("unauthorized", "missing or unknown bearer token");
    return controller::principal{it->second.name, it->second.r};
  }
  const std::string cookie = cookie_value(req.header("Cookie"), session_cookie_name);
  if (cookie.empty()) return unauthenticated("unauthorized", "missing or unknown bearer token");
  const auto session = sessions_.find(cookie, wall_ms(), req.header(std::string(poll_header_name)).empty());
  if (!session) return unauthenticated("session_expired", "the session has expired or ended; sign in again");
  // A cookie rides along on any request the browser sends, a cross-site one included
  // (SameSite=Strict aside): a change needs the token only the console's own page can read.
  if (req.method != "GET" && req.method != "HEAD" &&
      !same_secret(req.header(std::string(csrf_header_name)), session->csrf))
    return admission::refuse(refusal::forbidden,
                             refusal_response({error_kind::forbidden, "csrf",
                                               "a change made with a browser session needs its "
                                               "X-CSRF-Token"}));
  return session->who;
}

admission http_api::admit(http_server& server, const route_rule& rule, const request& req) {
  std::optional<controller::principal> who;
  if (rule.node && req.peer.verified) {
    // A node's own certificate (issue 14): its CN is its node id, and it speaks only for that.
    const std::string& node = req.matches.at(0);
    // Its bucket is its own (a certificate without a usable CN: its fingerprint's), even when
    // it asks for another node's routes.
    const std::string own = req.peer.common_name.empty() ? "cert:" + req.peer.fingerprint
                                                         : "node:" + req.peer.common_name;
    if (const auto d = per_token_.take(own); !d.allowed)
      return admission::refuse(refusal::rate_limited, too_many(d, "this node"));
    // Its CN must be {node}, and the inventory must have that node enrolled, not revoked, and
    // (when the controller issued it) this very certificate. Refusals are audited, aggregated.
    if (const auto e = core_.admit_node_peer(node, true, req.peer.common_name, req.peer.fingerprint))
      return admission::refuse(refusal::forbidden, refusal_response(*e));
    who = controller::principal{node, role::node};
  } else if (rule.node && limits_.node_certificates_required) {
    return admission::refuse(
        refusal::unauthenticated,
        refusal_response(*core_.admit_node_peer(req.matches.at(0), false, "", "")));
  } else {
    auto found = operator_of(req);
    if (auto* refused = std::get_if<admission>(&found)) return std::move(*refused);
    who = std::get<controller::principal>(std::move(found));
    // A session is for people: node routes take a node's certificate or token only.
    if (rule.node && who->r != role::node && req.header("Authorization").empty())
      return admission::refuse(refusal::unauthenticated,
                               refusal_response({error_kind::unauthorized, "unauthorized",
                                                 "node routes take no browser session"}));
    // A node token is fleet-wide (until per-node certificates): each node id gets its own bucket.
    const std::string key =
        rule.node && who->r == role::node ? "node:" + req.matches.at(0) : "token:" + who->name;
    if (const auto d = per_token_.take(key); !d.allowed)
      return admission::refuse(refusal::rate_limited, too_many(d, "this credential"));
  }
  if (std::find(rule.roles.begin(), rule.roles.end(), who->r) == rule.roles.end()) {
    const std::string message = "role " + std::string(controller::to_string(who->r)) + " may not " +
                                rule.method + " " + rule.route;
    // Audited on a blocking thread (it writes the store); the refusal goes out now.
    if (rule.method != "GET")
      server.post_blocking([this, p = *who, request = rule.method + " " + rule.route, message] {
        core_.audit_refused(p, request, "forbidden", message);
      });
    return admission::refuse(refusal::forbidden,
                             refusal_response({error_kind::forbidden, "forbidden", message}));
  }
  return admission::admit(rule.body_limit, std::move(*who));
}

void http_api::attach(http_server& server) {
  auto* requests = &prometheus::BuildCounter()
                        .Name("sluice_control_api_requests_total")
                        .Help("API requests by route and status code")
                        .Register(*core_.registry());
  // Each (route, code) counter is looked up in the family once (building its label map and
  // hashing it is most of the cost of counting an answer), then found here.
  auto counters = std::make_shared<std::pair<std::mutex, std::map<std::pair<std::string, int>,
                                                                  prometheus::Counter*>>>();
  server.on_answer([requests, counters](const std::string& route, int status) {
    std::lock_guard lock(counters->first);
    auto [it, fresh] = counters->second.try_emplace({route, status}, nullptr);
    if (fresh)
      it->second = &requests->Add(
          {{"route", route.empty() ? "unmatched" : route}, {"code", std::to_string(status)}});
    it->second->Increment();
  });
  auto& connections = prometheus::BuildGauge()
                          .Name("sluice_control_http_connections")
                          .Help("Open HTTP connections (nodes' long polls included)")
                          .Register(*core_.registry())
                          .Add({});
  auto& refused = prometheus::BuildCounter()
                      .Name("sluice_control_http_connections_refused_total")
                      .Help("Connections closed at once because max_connections were open")
                      .Register(*core_.registry())
                      .Add({});
  // Every refusal before a handler, by reason (http_server.hpp: SLUICE_HTTP_REFUSALS).
  auto& refused_family = prometheus::BuildCounter()
                             .Name("sluice_control_http_refused_total")
                             .Help("Requests and connections refused before a handler, by reason")
                             .Register(*core_.registry());
  auto refusals = std::make_shared<std::vector<prometheus::Counter*>>();
  for (std::size_t i = 0; i < static_cast<std::size_t>(refusal::count); ++i)
    refusals->push_back(&refused_family.Add({{"reason", std::string(to_string(static_cast<refusal>(i)))}}));
  auto& reload_family = prometheus::BuildCounter()
                            .Name("sluice_control_tls_reloads_total")
                            .Help("TLS certificate reloads (SIGHUP) by result")
                            .Register(*core_.registry());
  auto& reloads = reload_family.Add({{"result", "ok"}});
  auto& reload_failures = reload_family.Add({{"result", "failed"}});
  auto& waiting = prometheus::BuildGauge()
                      .Name("sluice_control_long_polls_waiting")
                      .Help("Nodes' snapshot long polls waiting for a new revision")
                      .Register(*core_.registry())
                      .Add({});

  // Admission (authentication, rate limit, role, body limit) runs on the head; the handler gets
  // the admitted principal. A route's body limit: GET none, POST and DELETE a few KiB unless
  // stated (documents, impact reports).
  using handler_fn = std::function<void(const request&, const responder&, const controller::principal&)>;
  auto add = [this, &server](const std::string& method, const std::string& route, run_on where,
                             std::vector<role> roles, handler_fn h,
                             std::optional<std::size_t> body_limit = std::nullopt) {
    route_rule rule;
    rule.method = method;
    rule.route = route;
    rule.node = roles == std::vector<role>{role::node} && route.rfind("/v1/nodes/{node}/", 0) == 0;
    rule.roles = std::move(roles);
    rule.body_limit = body_limit ? *body_limit : method == "GET" ? 0 : limits_.max_small_body_bytes;
    server.route(method, route, where,
                 [this, &server, rule = std::move(rule)](const request& req) { return admit(server, rule, req); },
                 [h = std::move(h)](const request& req, const responder& out) {
                   const auto* who = std::any_cast<controller::principal>(&req.admitted);
                   if (who == nullptr) throw std::logic_error("request without its admitted principal");
                   h(req, out, *who);
                 });
  };
  // Most handlers answer at once: `res` is sent when they return.
  using sync_fn = std::function<void(const request&, response&, const controller::principal&)>;
  auto now = [](sync_fn h) {
    return [h = std::move(h)](const request& req, const responder& out, const controller::principal& who) {
      response res;
      h(req, res, who);
      out.send(std::move(res));
    };
  };
  // The calls whose body is {"reason": text}: parse it, call, answer the call's view.
  auto with_reason = [&now](auto call) {
    return now([call](const auto& req, auto& res, const auto& who) {
      const auto body = body_json(req);
      if (!body) return send_error(res, {error_kind::invalid, "bad_request", "body must be a JSON object"});
      const auto r = call(req, who, body->value("reason", std::string()));
      if (!r) return send_error(res, r.error);
      send_json(res, 200, to_json(*r.value));
    });
  };
  const std::vector<role> readers{role::viewer, role::ministry, role::engineer};
  const std::vector<role> ministry{role::ministry};
  const std::vector<role> engineer{role::engineer};
  const std::vector<role> node{role::node};
  // Operators' calls read or write the store: they run on the blocking threads, so a slow
  // store never stalls the node feed's event loop.
  const run_on op = run_on::blocking;

  server.route("GET", "/v1/health", run_on::io, [](const request&) { return admission::admit(0); },
               [](const request&, const responder& out) {
    response res;
    send_json(res, 200, {{"status", "ok"}});
    out.send(std::move(res));
  });
  server.route("GET", "/metrics", run_on::blocking, [this](const request& req) { return admit_public(req); },
               [this, &server, &connections, &refused, &waiting, refusals, &reloads,
                &reload_failures](const request&, const responder& out) {
                 connections.Set(static_cast<double>(server.counters().connections_open.load()));
                 {
                   // The server counts; the counters catch up at each scrape (one at a time).
                   static std::mutex scrape;
                   std::lock_guard lock(scrape);
                   const auto catch_up = [](prometheus::Counter& c, std::uint64_t total) {
                     if (static_cast<double>(total) > c.Value()) c.Increment(static_cast<double>(total) - c.Value());
                   };
                   const auto& n = server.counters();
                   catch_up(refused, n.connections_refused.load());
                   for (std::size_t i = 0; i < refusals->size(); ++i)
                     catch_up(*(*refusals)[i], n.refused[i].load());
                   catch_up(reloads, n.tls_reloads.load());
                   catch_up(reload_failures, n.tls_reload_failures.load());
                 }
                 waiting.Set(static_cast<double>(core_.waiting_polls()));
                 response res;
                 res.set_body(prometheus::TextSerializer().Serialize(core_.registry()->Collect()),
                              "text/plain; version=0.0.4");
                 out.send(std::move(res));
               });

  add("POST", "/v1/directives", op, ministry, now([this](const auto& req, auto& res, const auto& who) {
        const auto body = body_json(req);
        if (!body || !(*body).contains("document") || !(*body)["document"].is_string() ||
            !(*body).contains("signature") || !(*body)["signature"].is_string()) {
          const std::string message = "body must be {\"document\": string, \"signature\": string}";
          core_.audit_refused(who, "POST /v1/directives", "bad_request", message);
          return send_error(res, {error_kind::invalid, "bad_request", message});
        }
        const auto r = core_.submit(who, (*body)["document"].template get<std::string>(),
                                    (*body)["signature"].template get<std::string>());
        if (!r) return send_error(res, r.error);
        send_json(res, 201, to_json(*r.value));
      }),
      limits_.max_document_bytes);
  // The console's dry run: submit()'s checks, nothing stored, counted or audited. A refusal of
  // the document is this call's answer (200 ok=false), not its failure.
  add("POST", "/v1/directives/check", op, ministry, now([this](const auto& req, auto& res, const auto& who) {
        const auto body = body_json(req);
        if (!body || !(*body).contains("document") || !(*body)["document"].is_string() ||
            !(*body).contains("signature") || !(*body)["signature"].is_string())
          return send_error(res, {error_kind::invalid, "bad_request",
                                  "body must be {\"document\": string, \"signature\": string}"});
        std::optional<controller::directive_view> checked;
        const auto problems = core_.check(who, (*body)["document"].template get<std::string>(),
                                          (*body)["signature"].template get<std::string>(), checked);
        if (!problems.empty() && problems.front().kind == error_kind::unavailable)
          return send_error(res, problems.front());
        if (!problems.empty()) {
          json list = json::array();
          for (const auto& p : problems) {
            json problem{{"code", p.code}, {"message", p.message}};
            if (p.line > 0) {
              problem["line"] = p.line;
              problem["column"] = p.column;
            }
            list.push_back(std::move(problem));
          }
          return send_json(res, 200, {{"ok", false}, {"problems", list}});
        }
        json j = to_json(*checked);
        j["ok"] = true;
        send_json(res, 200, j);
      }),
      limits_.max_document_bytes);
  add("GET", "/v1/directives", op, readers, now([this](const auto&, auto& res, const auto&) {
        const auto r = core_.directives();
        if (!r) return send_error(res, r.error);
        send_json_list(res, "directives", *r.value);
      }));
  add("GET", "/v1/directives/{issuer}/{id}", op, readers, now([this](const auto& req, auto& res, const auto&) {
        const auto r = core_.get(req.matches[0], req.matches[1]);
        if (!r) return send_error(res, r.error);
        json j = to_json(*r.value);
        j["document"] = r.value->record.document;
        j["signature"] = r.value->record.signature;
        send_json(res, 200, j);
      }));
  add("POST", "/v1/directives/{issuer}/{id}/approve", op, engineer,
      now([this](const auto& req, auto& res, const auto& who) {
        // An empty body, {} or {"reason": note}: the note is kept with the approval.
        const auto body = body_json(req);
        if (!body || (body->contains("reason") && !(*body)["reason"].is_string()))
          return send_error(res, {error_kind::invalid, "bad_request",
                                  "body must be {} or {\"reason\": text}"});
        const auto r = core_.approve(who, req.matches[0], req.matches[1], body->value("reason", std::string()));
        if (!r) return send_error(res, r.error);
        send_json(res, 200, to_json(*r.value));
      }));
  add("POST", "/v1/directives/{issuer}/{id}/override", op, engineer,
      with_reason([this](const request& req, const controller::principal& who, const std::string& reason) {
        return core_.override_protection(who, req.matches[0], req.matches[1], reason);
      }));
  add("GET", "/v1/directives/{issuer}/{id}/impact", op, readers,
      now([this](const auto& req, auto& res, const auto&) {
        std::int64_t window = 3600;
        std::size_t top = 10;
        try {
          if (req.has_param("window")) window = std::stoll(req.param("window"));
          if (req.has_param("top")) top = std::stoull(req.param("top"));
        } catch (const std::exception&) {
          window = -1;
        }
        if (window < 1 || window > 366LL * 86400 || top > 1000)
          return send_error(res, {error_kind::invalid, "bad_request",
                                  "window must be 1..31622400 seconds, top 0..1000"});
        const auto r = core_.impact(req.matches[0], req.matches[1], window, top);
        if (!r) return send_error(res, r.error);
        res.status = 200;
        res.set_body(*r.value, "application/json");
      }));
  add("POST", "/v1/directives/{issuer}/{id}/reject", op, engineer,
      with_reason([this](const request& req, const controller::principal& who, const std::string& reason) {
        return core_.reject(who, req.matches[0], req.matches[1], reason);
      }));
  add("POST", "/v1/directives/{issuer}/{id}/revoke", op, ministry,
      with_reason([this](const request& req, const controller::principal& who, const std::string& reason) {
        return core_.revoke(who, req.matches[0], req.matches[1], reason);
      }));

  add("GET", "/v1/nodes", op, readers, now([this](const auto&, auto& res, const auto&) {
        send_json_list(res, "nodes", core_.nodes());
      }));
  add("GET", "/v1/rollout", op, readers, now([this](const auto&, auto& res, const auto&) {
        send_json(res, 200, to_json(core_.rollout()));
      }));
  for (const bool pause : {true, false}) {
    add("POST", pause ? "/v1/rollout/pause" : "/v1/rollout/resume", op, engineer,
        with_reason([this, pause](const request&, const controller::principal& who, const std::string& reason) {
          return core_.set_paused(who, pause, reason);
        }));
  }
  for (const bool on : {true, false}) {
    add(on ? "POST" : "DELETE", "/v1/emergency-stop", op, engineer,
        with_reason([this, on](const request&, const controller::principal& who, const std::string& reason) {
          return core_.set_emergency_stop(who, on, reason);
        }));
  }
  add("GET", "/v1/audit", op, readers, now([this](const auto& req, auto& res, const auto&) {
        std::uint64_t after = 0;
        std::size_t limit = 1000;
        try {
          if (req.has_param("after")) after = std::stoull(req.param("after"));
          if (req.has_param("limit")) limit = std::stoull(req.param("limit"));
        } catch (const std::exception&) {
          return send_error(res, {error_kind::invalid, "bad_request", "after and limit must be numbers"});
        }
        // ?subject=ISSUER/ID: that directive's own records (the console's timeline); ?last=1:
        // the newest `limit` records.
        limit = std::min<std::size_t>(limit, 10000);
        const auto r = req.has_param("subject") ? core_.audit_of(req.param("subject"), limit)
                       : req.param("last") == "1" ? core_.audit_last(limit)
                                                  : core_.audit(after, limit);
        if (!r) return send_error(res, r.error);
        send_json_list(res, "records", *r.value);
      }));
  add("GET", "/v1/audit/verify", op, readers, now([this](const auto&, auto& res, const auto&) {
        const auto r = core_.verify_audit();
        if (!r) return send_error(res, r.error);
        const auto& c = *r.value;
        send_json(res, 200, {{"ok", c.ok}, {"records", c.records},
                             {"head_seq", c.ok ? c.records : c.bad_seq - 1},
                             {"head_hash", c.head_hash}, {"bad_seq", c.bad_seq},
                             {"problem", c.problem}});
      }));
  // The caller's browser session (the console, control/console/README.md).
  add("GET", "/v1/session", op, readers, now([this](const auto& req, auto& res, const auto& who) {
        const auto s = sessions_.find(cookie_value(req.header("Cookie"), session_cookie_name), wall_ms());
        if (!s) return send_json(res, 200, {{"name", who.name}, {"role", controller::to_string(who.r)}});
        send_json(res, 200, session_json(*s, sessions_.config()));
      }));
  add("DELETE", "/v1/session", op, readers, now([this](const auto& req, auto& res, const auto& who) {
        sessions_.close(cookie_value(req.header("Cookie"), session_cookie_name));
        core_.audit_session(who, false);
        res.status = 204;
        res.headers.emplace_back("Set-Cookie", std::string(session_cookie_name) +
                                                   "=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
      }));
  attach_console(server);

  // The node feed: on the io threads (no store access on the way; the controller's lock only).
  add("GET", "/v1/nodes/{node}/snapshot", run_on::io, node,
      [this, &server](const request& req, const responder& out, const controller::principal&) {
        std::optional<std::uint64_t> held;
        std::int64_t wait_s = 0;
        try {
          std::string etag = req.header("If-None-Match");
          std::erase(etag, '"');
          if (!etag.empty()) held = std::stoull(etag);
          if (req.has_param("wait")) wait_s = std::stoll(req.param("wait"));
        } catch (const std::exception&) {
          response res;
          send_error(res, {error_kind::invalid, "bad_request", "If-None-Match and wait must be numbers"});
          return out.send(std::move(res));
        }
        const auto wait = std::min<std::chrono::milliseconds>(
            std::chrono::seconds(std::max<std::int64_t>(0, wait_s)), core_.max_wait());
        auto labels = parse_labels(req.header("X-Sluice-Labels"));
        // A report carried on the poll (agent.hpp, "Reports carried on the long poll") is
        // recorded before the poll waits, as the POST would be.
        if (const std::string carried = req.header(std::string(status_header_name));
            !carried.empty()) {
          const auto report = parse_status_header(carried);
          response res;
          if (!report) {
            send_error(res, {error_kind::invalid, "bad_request",
                             "X-Sluice-Status must be \"ack revision=N offered=N ruleset=HEX "
                             "[checkpoint=BASE64]\""});
            return out.send(std::move(res));
          }
          if (const auto r = core_.node_status(req.matches[0], labels, *report); !r) {
            send_error(res, r.error);
            return out.send(std::move(res));
          }
        }
        std::make_shared<long_poll>(core_, server.context(), out, req.matches[0],
                                    std::move(labels), held)
            ->start(wait);
      });
  add("POST", "/v1/nodes/{node}/impact", run_on::io, node,
      now([this](const auto& req, auto& res, const auto&) {
        const auto r = core_.node_impact(req.matches[0], req.body);
        if (!r) return send_error(res, r.error);
        res.status = 204;
      }),
      limits_.max_impact_bytes);
  add("POST", "/v1/nodes/{node}/status", run_on::io, node,
      now([this](const auto& req, auto& res, const auto&) {
        const auto body = parse_status_body(req.body);
        if (!body)
          return send_error(res, {error_kind::invalid, "bad_request",
                                  "body must be {\"revision\": n, \"result\": \"ack\"|\"nack\", ...}"});
        const auto& rep = body->report;
        const auto& labels = body->labels;
        const auto r = core_.node_status(req.matches[0], labels, rep);
        if (!r) return send_error(res, r.error);
        res.status = 204;
      }));

  // ---- node identity (issue 14): the inventory ---------------------------------------------
  // Labels in request bodies: {"name": "value", ...}; anything else is bad_request.
  auto labels_of = [](const json& body, std::map<std::string, std::string>& out) {
    const auto it = body.find("labels");
    if (it == body.end()) return true;
    if (!it->is_object()) return false;
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string()) return false;
      out[k] = v.template get<std::string>();
    }
    return true;
  };
  auto refuse_body = [this](const controller::principal& who, const std::string& request,
                            response& res, const std::string& message) {
    core_.audit_refused(who, request, "bad_request", message);
    send_error(res, {error_kind::invalid, "bad_request", message});
  };
  add("GET", "/v1/inventory", op, readers, now([this](const auto&, auto& res, const auto&) {
        send_json_list(res, "nodes", core_.inventory());
      }));
  add("POST", "/v1/inventory", op, engineer,
      now([this, labels_of, refuse_body](const auto& req, auto& res, const auto& who) {
        const auto body = body_json(req);
        std::vector<controller::configured_node> nodes;
        bool ok = body && body->contains("nodes") && (*body)["nodes"].is_array();
        for (std::size_t i = 0; ok && i < (*body)["nodes"].size(); ++i) {
          const json& n = (*body)["nodes"][i];
          controller::configured_node c;
          ok = n.is_object() && n.contains("node") && n["node"].is_string() && labels_of(n, c.labels);
          if (ok) c.id = n["node"].template get<std::string>();
          nodes.push_back(std::move(c));
        }
        if (!ok)
          return refuse_body(who, "POST /v1/inventory", res,
                             "body must be {\"nodes\": [{\"node\": id, \"labels\": {name: value}}...]}");
        const auto r = core_.enroll_nodes(who, nodes);
        if (!r) return send_error(res, r.error);
        send_json_list(res, "nodes", *r.value);
      }),
      256 * 1024);  // up to 1,000 nodes with their labels
  add("POST", "/v1/inventory/{node}/enroll", op, engineer,
      now([this, labels_of, refuse_body](const auto& req, auto& res, const auto& who) {
        const auto body = body_json(req);
        std::map<std::string, std::string> labels;
        if (!body || !labels_of(*body, labels) || (body->contains("csr") && !(*body)["csr"].is_string()))
          return refuse_body(who, "POST /v1/inventory/{node}/enroll", res,
                             "body must be {\"labels\": {name: value}, \"csr\": PEM (optional)}");
        const auto r = core_.enroll_node(who, req.matches[0], labels, body->value("csr", std::string()));
        if (!r) return send_error(res, r.error);
        send_json(res, 200, {{"node", to_json(r.value->record)},
                             {"certificate", r.value->certificate_pem},
                             {"ca", r.value->ca_pem}});
      }));
  add("POST", "/v1/inventory/{node}/revoke", op, engineer,
      with_reason([this](const request& req, const controller::principal& who, const std::string& reason) {
        return core_.revoke_node(who, req.matches[0], reason);
      }));
  add("POST", "/v1/inventory/{node}/labels", op, engineer,
      now([this, labels_of, refuse_body](const auto& req, auto& res, const auto& who) {
        const auto body = body_json(req);
        std::map<std::string, std::string> labels;
        if (!body || !body->contains("labels") || !labels_of(*body, labels))
          return refuse_body(who, "POST /v1/inventory/{node}/labels", res,
                             "body must be {\"labels\": {name: value}}");
        const auto r = core_.relabel_node(who, req.matches[0], labels);
        if (!r) return send_error(res, r.error);
        send_json(res, 200, to_json(*r.value));
      }));
  // The latest signed audit checkpoint (issue 14), for the ministry: `sluicectl audit checkpoint`.
  add("GET", "/v1/audit/checkpoint", op, readers, now([this](const auto&, auto& res, const auto&) {
        const auto cp = core_.audit_checkpoint();
        if (!cp) return send_error(res, {error_kind::unavailable, "no_checkpoint",
                                         "no audit checkpoint signed yet"});
        res.status = 200;
        res.set_body(audit::checkpoint_json(*cp), "application/json");
      }));
}

void http_api::attach_console(http_server& server) {
  // Signing in: the token in the body (never in a URL or a header the browser keeps), rate
  // limited per address like any unauthenticated request.
  server.route("POST", "/v1/session", run_on::blocking,
               [this](const request& req) {
                 if (const auto d = per_address_.take(req.remote_address); !d.allowed)
                   return admission::refuse(refusal::rate_limited, too_many(d, "this address"));
                 return admission::admit(limits_.max_small_body_bytes);
               },
               [this](const request& req, const responder& out) {
                 response res;
                 const auto body = body_json(req);
                 const auto it = body && body->contains("token") && (*body)["token"].is_string()
                                     ? by_hash_.find(token_hash((*body)["token"].template get<std::string>()))
                                     : by_hash_.end();
                 if (it == by_hash_.end() || it->second.r == role::node) {
                   send_error(res, {error_kind::unauthorized, "unauthorized", "unknown token"});
                   return out.send(std::move(res));
                 }
                 const controller::principal who{it->second.name, it->second.r};
                 auto [cookie, session] = sessions_.open(who, wall_ms());
                 core_.audit_session(who, true);
                 send_json(res, 200, session_json(session, sessions_.config()));
                 res.headers.emplace_back("Set-Cookie", std::string(session_cookie_name) + "=" + cookie +
                                                            "; Path=/; HttpOnly; Secure; SameSite=Strict");
                 res.headers.emplace_back("Cache-Control", "no-store");
                 out.send(std::move(res));
               });
  if (assets_.empty()) return;
  const auto admit = [this](const request& req) { return admit_public(req); };
  server.route("GET", "/", run_on::io, admit, [](const request&, const responder& out) {
    response res;
    res.status = 302;
    res.headers.emplace_back("Location", "/ui/");
    out.send(std::move(res));
  });
  const auto serve = [this](const request& req, const responder& out) {
    response res;
    const auto it = assets_.find(req.path);
    if (it == assets_.end()) {
      res = error_response(404, "not_found", "no such console file");
    } else {
      res.body = it->second.body;  // shared: never copied
      res.content_type = it->second.content_type;
    }
    for (const auto& h : console_headers()) res.headers.push_back(h);
    out.send(std::move(res));
  };
  for (const char* pattern : {"/ui/", "/ui/{file}", "/ui/{dir}/{file}"})
    server.route("GET", pattern, run_on::io, admit, serve);
}

}  // namespace sluice::control::api
