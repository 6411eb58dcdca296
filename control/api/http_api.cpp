#include "control/api/http_api.hpp"

#include <httplib.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <nlohmann/json.hpp>
#include <optional>

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
    else
      approvals.push_back({{"actor", a.actor}, {"at", a.at}});
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
         {"enforcement", {{"in_scope", v.in_scope}, {"enforcing", v.enforcing}}}};
  if (v.parsed) {
    j["legal_basis"] = v.parsed->legal_basis;
    j["not_before"] = fleet::format_rfc3339(v.parsed->not_before);
    j["not_after"] = v.parsed->not_after ? json(fleet::format_rfc3339(*v.parsed->not_after)) : json();
  }
  return j;
}

json to_json(const controller::rollout_view& r) {
  return {{"target", r.target},       {"released", r.released}, {"stage", r.stage},
          {"paused", r.paused},       {"reason", r.reason},     {"stage_since", r.stage_since},
          {"emergency_stop", r.emergency_stop}, {"leader", r.leader}, {"is_leader", r.is_leader}};
}

json to_json(const controller::node_view& n) {
  return {{"node", n.record.node_id},
          {"labels", n.record.labels},
          {"state", n.state},
          {"canary", n.canary},
          {"offered_revision", n.offered_revision},
          {"applied_revision", n.record.applied_revision},
          {"ruleset_sha256", n.record.ruleset_sha256},
          {"last_seen", n.record.last_seen},
          {"health", n.record.health},
          {"error", n.record.error}};
}

json to_json(const audit::audit_record& a) {
  json detail = json::parse(a.detail, nullptr, false);
  if (detail.is_discarded()) detail = a.detail;
  return {{"seq", a.seq},         {"at", a.at},           {"actor", a.actor},
          {"event", a.event},     {"subject", a.subject}, {"detail", detail},
          {"detail_text", a.detail}, {"prev_hash", a.prev_hash}, {"hash", a.hash}};
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void send_error(httplib::Response& res, const controller::op_error& e) {
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

std::optional<json> body_json(const httplib::Request& req) {
  if (req.body.empty()) return json::object();
  json j = json::parse(req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

}  // namespace

std::string token_hash(const std::string& token) { return audit::sha256_hex(token); }

http_api::http_api(controller::controller& core, const std::vector<token_entry>& tokens)
    : core_(core) {
  for (const auto& t : tokens) by_hash_[t.sha256] = t;
}

void http_api::attach(httplib::Server& server) {
  auto* requests = &prometheus::BuildCounter()
                       .Name("sluice_control_api_requests_total")
                       .Help("API requests by route and status code")
                       .Register(*core_.registry());

  // Wraps a handler: authentication, role, metrics. `route` is the pattern (bounded label).
  using handler = std::function<void(const httplib::Request&, httplib::Response&,
                                     const controller::principal&)>;
  auto guarded = [this, requests](std::string route, std::vector<role> roles, handler h) {
    return [this, requests, route = std::move(route), roles = std::move(roles), h = std::move(h)](
               const httplib::Request& req, httplib::Response& res) {
      const std::string auth = req.get_header_value("Authorization");
      const auto it = auth.rfind("Bearer ", 0) == 0 ? by_hash_.find(token_hash(auth.substr(7)))
                                                   : by_hash_.end();
      if (it == by_hash_.end()) {
        send_error(res, {error_kind::unauthorized, "unauthorized",
                         "missing or unknown bearer token"});
      } else {
        const controller::principal who{it->second.name, it->second.r};
        if (std::find(roles.begin(), roles.end(), who.r) == roles.end()) {
          const std::string message = "role " + std::string(controller::to_string(who.r)) +
                                      " may not " + req.method + " " + route;
          if (req.method != "GET") core_.audit_refused(who, req.method + " " + route, "forbidden", message);
          send_error(res, {error_kind::forbidden, "forbidden", message});
        } else {
          h(req, res, who);
        }
      }
      requests->Add({{"route", req.method + " " + route}, {"code", std::to_string(res.status)}})
          .Increment();
    };
  };
  const std::vector<role> readers{role::viewer, role::ministry, role::engineer};
  const std::vector<role> ministry{role::ministry};
  const std::vector<role> engineer{role::engineer};
  const std::vector<role> node{role::node};

  server.Get("/v1/health", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"status", "ok"}});
  });
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(prometheus::TextSerializer().Serialize(core_.registry()->Collect()),
                    "text/plain; version=0.0.4");
  });

  server.Post("/v1/directives",
              guarded("/v1/directives", ministry, [this](const auto& req, auto& res, const auto& who) {
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
              }));
  server.Get("/v1/directives",
             guarded("/v1/directives", readers, [this](const auto&, auto& res, const auto&) {
               const auto r = core_.directives();
               if (!r) return send_error(res, r.error);
               json list = json::array();
               for (const auto& v : *r.value) list.push_back(to_json(v));
               send_json(res, 200, {{"directives", list}});
             }));
  server.Get(R"(/v1/directives/([^/]+)/([^/]+))",
             guarded("/v1/directives/{issuer}/{id}", readers,
                     [this](const auto& req, auto& res, const auto&) {
                       const auto r = core_.get(req.matches[1], req.matches[2]);
                       if (!r) return send_error(res, r.error);
                       json j = to_json(*r.value);
                       j["document"] = r.value->record.document;
                       j["signature"] = r.value->record.signature;
                       send_json(res, 200, j);
                     }));
  server.Post(R"(/v1/directives/([^/]+)/([^/]+)/approve)",
              guarded("/v1/directives/{issuer}/{id}/approve", engineer,
                      [this](const auto& req, auto& res, const auto& who) {
                        const auto r = core_.approve(who, req.matches[1], req.matches[2]);
                        if (!r) return send_error(res, r.error);
                        send_json(res, 200, to_json(*r.value));
                      }));
  server.Post(R"(/v1/directives/([^/]+)/([^/]+)/override)",
              guarded("/v1/directives/{issuer}/{id}/override", engineer,
                      [this](const auto& req, auto& res, const auto& who) {
                        const auto body = body_json(req);
                        if (!body) return send_error(res, {error_kind::invalid, "bad_request",
                                                           "body must be a JSON object"});
                        const auto r = core_.override_protection(
                            who, req.matches[1], req.matches[2], body->value("reason", std::string()));
                        if (!r) return send_error(res, r.error);
                        send_json(res, 200, to_json(*r.value));
                      }));
  server.Get(R"(/v1/directives/([^/]+)/([^/]+)/impact)",
             guarded("/v1/directives/{issuer}/{id}/impact", readers,
                     [this](const auto& req, auto& res, const auto&) {
                       std::int64_t window = 3600;
                       std::size_t top = 10;
                       try {
                         if (req.has_param("window")) window = std::stoll(req.get_param_value("window"));
                         if (req.has_param("top")) top = std::stoull(req.get_param_value("top"));
                       } catch (const std::exception&) {
                         window = -1;
                       }
                       if (window < 1 || window > 366LL * 86400 || top > 1000)
                         return send_error(res, {error_kind::invalid, "bad_request",
                                                 "window must be 1..31622400 seconds, top 0..1000"});
                       const auto r = core_.impact(req.matches[1], req.matches[2], window, top);
                       if (!r) return send_error(res, r.error);
                       res.status = 200;
                       res.set_content(*r.value, "application/json");
                     }));
  server.Post(R"(/v1/directives/([^/]+)/([^/]+)/revoke)",
              guarded("/v1/directives/{issuer}/{id}/revoke", ministry,
                      [this](const auto& req, auto& res, const auto& who) {
                        const auto body = body_json(req);
                        if (!body) return send_error(res, {error_kind::invalid, "bad_request",
                                                           "body must be a JSON object"});
                        const auto r = core_.revoke(who, req.matches[1], req.matches[2],
                                                    body->value("reason", std::string()));
                        if (!r) return send_error(res, r.error);
                        send_json(res, 200, to_json(*r.value));
                      }));

  server.Get("/v1/nodes", guarded("/v1/nodes", readers, [this](const auto&, auto& res, const auto&) {
               json list = json::array();
               for (const auto& n : core_.nodes()) list.push_back(to_json(n));
               send_json(res, 200, {{"nodes", list}});
             }));
  server.Get("/v1/rollout",
             guarded("/v1/rollout", readers, [this](const auto&, auto& res, const auto&) {
               send_json(res, 200, to_json(core_.rollout()));
             }));
  auto rollout_switch = [&](const char* path, bool pause) {
    server.Post(path, guarded(path, engineer, [this, pause](const auto& req, auto& res, const auto& who) {
                  const auto body = body_json(req);
                  if (!body) return send_error(res, {error_kind::invalid, "bad_request",
                                                     "body must be a JSON object"});
                  const auto r = core_.set_paused(who, pause, body->value("reason", std::string()));
                  if (!r) return send_error(res, r.error);
                  send_json(res, 200, to_json(*r.value));
                }));
  };
  rollout_switch("/v1/rollout/pause", true);
  rollout_switch("/v1/rollout/resume", false);
  auto emergency = [this](bool on) {
    return [this, on](const auto& req, auto& res, const auto& who) {
      const auto body = body_json(req);
      if (!body) return send_error(res, {error_kind::invalid, "bad_request",
                                         "body must be a JSON object"});
      const auto r = core_.set_emergency_stop(who, on, body->value("reason", std::string()));
      if (!r) return send_error(res, r.error);
      send_json(res, 200, to_json(*r.value));
    };
  };
  server.Post("/v1/emergency-stop", guarded("/v1/emergency-stop", engineer, emergency(true)));
  server.Delete("/v1/emergency-stop", guarded("/v1/emergency-stop", engineer, emergency(false)));

  server.Get("/v1/audit", guarded("/v1/audit", readers, [this](const auto& req, auto& res, const auto&) {
               std::uint64_t after = 0;
               std::size_t limit = 1000;
               try {
                 if (req.has_param("after")) after = std::stoull(req.get_param_value("after"));
                 if (req.has_param("limit")) limit = std::stoull(req.get_param_value("limit"));
               } catch (const std::exception&) {
                 return send_error(res, {error_kind::invalid, "bad_request",
                                         "after and limit must be numbers"});
               }
               const auto r = core_.audit(after, std::min<std::size_t>(limit, 10000));
               if (!r) return send_error(res, r.error);
               json list = json::array();
               for (const auto& a : *r.value) list.push_back(to_json(a));
               send_json(res, 200, {{"records", list}});
             }));

  server.Get(R"(/v1/nodes/([^/]+)/snapshot)",
             guarded("/v1/nodes/{node}/snapshot", node, [this](const auto& req, auto& res, const auto&) {
               std::optional<std::uint64_t> held;
               std::int64_t wait_s = 0;
               try {
                 std::string etag = req.get_header_value("If-None-Match");
                 std::erase(etag, '"');
                 if (!etag.empty()) held = std::stoull(etag);
                 if (req.has_param("wait")) wait_s = std::stoll(req.get_param_value("wait"));
               } catch (const std::exception&) {
                 return send_error(res, {error_kind::invalid, "bad_request",
                                         "If-None-Match and wait must be numbers"});
               }
               const auto r = core_.snapshot(req.matches[1],
                                             parse_labels(req.get_header_value("X-Sluice-Labels")),
                                             held, std::chrono::seconds(std::max<std::int64_t>(0, wait_s)));
               if (!r) {
                 if (r.error.code == "not_modified") {
                   res.status = 304;
                   res.set_header("ETag", "\"" + std::to_string(*held) + "\"");
                   return;
                 }
                 return send_error(res, r.error);
               }
               res.set_header("ETag", "\"" + std::to_string(r.value->revision) + "\"");
               res.status = 200;
               res.set_content(r.value->body, "application/json");
             }));
  server.Post(R"(/v1/nodes/([^/]+)/impact)",
              guarded("/v1/nodes/{node}/impact", node, [this](const auto& req, auto& res, const auto&) {
                const auto r = core_.node_impact(req.matches[1], req.body);
                if (!r) return send_error(res, r.error);
                res.status = 204;
              }));
  server.Post(R"(/v1/nodes/([^/]+)/status)",
              guarded("/v1/nodes/{node}/status", node, [this](const auto& req, auto& res, const auto&) {
                const auto body = body_json(req);
                controller::status_report rep;
                std::map<std::string, std::string> labels;
                try {
                  if (!body) throw std::invalid_argument("not an object");
                  rep.revision = body->at("revision").template get<std::uint64_t>();
                  rep.offered = body->value("offered", std::uint64_t{0});
                  rep.ruleset_sha256 = body->value("ruleset_sha256", std::string());
                  const std::string result = body->at("result").template get<std::string>();
                  if (result != "ack" && result != "nack") throw std::invalid_argument("result");
                  rep.ack = result == "ack";
                  rep.error = body->value("error", std::string());
                  rep.health = body->value("health", std::string("ok"));
                  if (body->contains("labels"))
                    labels = body->at("labels").template get<std::map<std::string, std::string>>();
                } catch (const std::exception&) {
                  return send_error(res, {error_kind::invalid, "bad_request",
                                          "body must be {\"revision\": n, \"result\": \"ack\"|\"nack\", ...}"});
                }
                const auto r = core_.node_status(req.matches[1], labels, rep);
                if (!r) return send_error(res, r.error);
                res.status = 204;
              }));
}

}  // namespace sluice::control::api
