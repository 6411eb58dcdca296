// rtnetlink through libnl: pipelined add/delete batches and a filtered dump.
//
// Batching: nl_send_auto() completes each request with NLM_F_ACK and a fresh sequence number; we
// keep up to `window` requests in flight and read acknowledgements as they come (one recv()
// returns many). The window is bounded so that the acks fit the socket's receive buffer (each
// ack is its own skb, about 1 KiB of truesize against rmem): losing one would leave us waiting,
// so the socket also has a receive timeout, after which it is reopened.

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "control/rtbh/route_table.hpp"

#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

namespace sluice::control::rtbh {

std::string_view to_string(route_kind k) noexcept {
  return k == route_kind::blackhole ? "blackhole" : "unreachable";
}

namespace {

constexpr std::size_t per_send = 64;
constexpr int wanted_receive_buffer = 8 << 20;
constexpr int ack_truesize = 2048;  // generous: one ack skb against the receive buffer
constexpr int receive_timeout_seconds = 5;

struct sock_deleter {
  void operator()(nl_sock* s) const noexcept { nl_socket_free(s); }
};
struct cb_deleter {
  void operator()(nl_cb* c) const noexcept { nl_cb_put(c); }
};
struct msg_deleter {
  void operator()(nl_msg* m) const noexcept { nlmsg_free(m); }
};
using sock_ptr = std::unique_ptr<nl_sock, sock_deleter>;
using cb_ptr = std::unique_ptr<nl_cb, cb_deleter>;
using msg_ptr = std::unique_ptr<nl_msg, msg_deleter>;

std::string errno_text(int e) { return std::strerror(e); }

sock_ptr open_socket(std::string& error) {
  sock_ptr s(nl_socket_alloc());
  if (!s) {
    error = "netlink: cannot allocate a socket";
    return nullptr;
  }
  if (const int r = nl_connect(s.get(), NETLINK_ROUTE); r < 0) {
    error = std::string("netlink: connect: ") + nl_geterror(r);
    return nullptr;
  }
  nl_socket_disable_seq_check(s.get());  // pipelined: we match acks to requests ourselves
  (void)nl_socket_set_buffer_size(s.get(), 1 << 20, 1 << 20);
  const int fd = nl_socket_get_fd(s.get());
  // Root may exceed net.core.rmem_max; without the privilege the capped buffer stays.
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &wanted_receive_buffer,
                   sizeof wanted_receive_buffer);
  timeval tv{receive_timeout_seconds, 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int one = 1;  // kernel-side dump filtering by table and protocol (Linux 4.20+); else we filter
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one);
  return s;
}

struct batch_state {
  std::uint32_t first_seq = 0;
  std::span<const prefix> prefixes;
  bool removing = false;
  std::size_t answered = 0;
  batch_result result;
};

struct dump_state {
  const route_table_config* config;
  std::vector<found_route>* routes;
};

int on_ack(nl_msg*, void* arg) {
  auto* st = static_cast<batch_state*>(arg);
  ++st->answered;
  ++st->result.done;
  return NL_OK;
}

int on_error(sockaddr_nl*, nlmsgerr* e, void* arg) {
  auto* st = static_cast<batch_state*>(arg);
  ++st->answered;
  const int err = -e->error;
  if (err == 0 || (st->removing && err == ESRCH)) {
    ++st->result.done;  // gone already: what we wanted
    return NL_SKIP;
  }
  ++st->result.failed;
  if (st->result.error.empty()) {
    const std::uint32_t i = e->msg.nlmsg_seq - st->first_seq;
    const std::string what = i < st->prefixes.size() ? to_string(st->prefixes[i]) : "?";
    st->result.error = std::string(st->removing ? "delete " : "add ") + what + ": " +
                       errno_text(err) +
                       (err == EPERM    ? " (sluice-rtbh needs CAP_NET_ADMIN)"
                        : err == EEXIST ? " (a route with another protocol holds it)"
                                        : "");
    st->result.error_number = err;
  }
  return NL_SKIP;
}

class netlink_route_table final : public route_table {
 public:
  netlink_route_table(route_table_config c, sock_ptr s) : config_(c), sock_(std::move(s)) {
    size_window();
  }

  list_result list() override {
    list_result out;
    std::string error;
    if (!ensure_socket(error)) {
      out.error = error;
      return out;
    }
    rtmsg rtm{};
    rtm.rtm_family = AF_UNSPEC;
    rtm.rtm_table = config_.table < 256 ? static_cast<std::uint8_t>(config_.table) : 0;
    rtm.rtm_protocol = config_.protocol;
    msg_ptr m(nlmsg_alloc_simple(RTM_GETROUTE, NLM_F_DUMP));
    if (!m || nlmsg_append(m.get(), &rtm, sizeof rtm, NLMSG_ALIGNTO) < 0 ||
        nla_put_u32(m.get(), RTA_TABLE, config_.table) < 0) {
      out.error = "netlink: cannot build the dump request";
      return out;
    }
    dump_state st{&config_, &out.routes};
    cb_ptr cb(nl_cb_alloc(NL_CB_DEFAULT));
    nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, &netlink_route_table::on_route, &st);
    int r = nl_send_auto(sock_.get(), m.get());
    if (r >= 0) r = nl_recvmsgs(sock_.get(), cb.get());
    if (r < 0) {
      out.routes.clear();
      out.error = std::string("netlink: route dump: ") + nl_geterror(r);
      out.error_number = EIO;
      sock_.reset();  // unknown state: a fresh socket next time
      return out;
    }
    out.ok = true;
    return out;
  }

  batch_result add(std::span<const prefix> prefixes) override { return run(prefixes, false); }
  batch_result remove(std::span<const prefix> prefixes) override { return run(prefixes, true); }

 private:
  static int on_route(nl_msg* msg, void* arg) {
    auto* ds = static_cast<dump_state*>(arg);
    rtnl_route* route = nullptr;
    if (rtnl_route_parse(nlmsg_hdr(msg), &route) < 0 || route == nullptr) return NL_SKIP;
    const std::uint32_t table = rtnl_route_get_table(route);
    const std::uint8_t protocol = rtnl_route_get_protocol(route);
    const std::uint8_t type = rtnl_route_get_type(route);
    nl_addr* dst = rtnl_route_get_dst(route);
    const int family = rtnl_route_get_family(route);
    if (table == ds->config->table && protocol == ds->config->protocol && dst != nullptr &&
        (family == AF_INET || family == AF_INET6)) {
      found_route f;
      f.dst.family = family == AF_INET ? 4 : 6;
      const unsigned len = nl_addr_get_len(dst);
      if (len <= f.dst.bytes.size()) {
        std::memcpy(f.dst.bytes.data(), nl_addr_get_binary_addr(dst), len);
      }
      f.dst.length = static_cast<std::uint8_t>(nl_addr_get_prefixlen(dst));
      const std::uint8_t want =
          ds->config->kind == route_kind::blackhole ? RTN_BLACKHOLE : RTN_UNREACHABLE;
      f.right_type = type == want;
      ds->routes->push_back(f);
    }
    rtnl_route_put(route);
    return NL_OK;
  }

  bool ensure_socket(std::string& error) {
    if (!sock_) {
      sock_ = open_socket(error);
      if (sock_) size_window();
    }
    return sock_ != nullptr;
  }

  // As many requests in flight as their acks fit the receive buffer we got (half of it: the
  // kernel counts its own overhead in SO_RCVBUF).
  void size_window() {
    int size = 0;
    socklen_t len = sizeof size;
    if (getsockopt(nl_socket_get_fd(sock_.get()), SOL_SOCKET, SO_RCVBUF, &size, &len) < 0) {
      size = 0;
    }
    window_ = std::clamp<std::size_t>(static_cast<std::size_t>(size) / 2 / ack_truesize, 32, 2048);
  }

  msg_ptr build(const prefix& p, bool removing) const {
    msg_ptr m(nlmsg_alloc_simple(removing ? RTM_DELROUTE : RTM_NEWROUTE,
                                 removing ? 0 : NLM_F_CREATE | NLM_F_EXCL));
    if (!m) return nullptr;
    rtmsg rtm{};
    rtm.rtm_family = p.family == 4 ? AF_INET : AF_INET6;
    rtm.rtm_dst_len = p.length;
    rtm.rtm_table = config_.table < 256 ? static_cast<std::uint8_t>(config_.table)
                                        : std::uint8_t{RT_TABLE_UNSPEC};
    rtm.rtm_protocol = config_.protocol;  // deletes match on it: never someone else's route
    if (removing) {
      rtm.rtm_scope = RT_SCOPE_NOWHERE;  // any scope
      rtm.rtm_type = RTN_UNSPEC;         // any kind: a leftover of the other kind goes too
    } else {
      rtm.rtm_scope = RT_SCOPE_UNIVERSE;
      rtm.rtm_type = config_.kind == route_kind::blackhole ? RTN_BLACKHOLE : RTN_UNREACHABLE;
    }
    if (nlmsg_append(m.get(), &rtm, sizeof rtm, NLMSG_ALIGNTO) < 0 ||
        nla_put(m.get(), RTA_DST, p.family == 4 ? 4 : 16, p.bytes.data()) < 0 ||
        nla_put_u32(m.get(), RTA_TABLE, config_.table) < 0) {
      return nullptr;
    }
    return m;
  }

  batch_result run(std::span<const prefix> prefixes, bool removing) {
    batch_state st;
    st.prefixes = prefixes;
    st.removing = removing;
    if (prefixes.empty()) return st.result;
    std::string error;
    if (!ensure_socket(error)) {
      st.result.error = error;
      st.result.error_number = EIO;
      return st.result;
    }
    cb_ptr cb(nl_cb_alloc(NL_CB_DEFAULT));
    nl_cb_set(cb.get(), NL_CB_ACK, NL_CB_CUSTOM, on_ack, &st);
    nl_cb_err(cb.get(), NL_CB_CUSTOM, on_error, &st);
    std::vector<std::uint8_t> buf;
    std::size_t sent = 0;
    while (st.answered < prefixes.size()) {
      // Up to `per_send` requests in one sendmsg (the kernel walks every message of the skb),
      // never more than `window_` unanswered.
      buf.clear();
      for (std::size_t k = 0;
           k < per_send && sent < prefixes.size() && sent - st.answered < window_; ++k, ++sent) {
        msg_ptr m = build(prefixes[sent], removing);
        if (!m) {
          st.result.error = "netlink: cannot build a request";
          return st.result;
        }
        nl_complete_msg(sock_.get(), m.get());  // our port id, a fresh seq, NLM_F_ACK
        const nlmsghdr* h = nlmsg_hdr(m.get());
        if (sent == 0) st.first_seq = h->nlmsg_seq;
        const auto* bytes = reinterpret_cast<const std::uint8_t*>(h);
        buf.insert(buf.end(), bytes, bytes + NLMSG_ALIGN(h->nlmsg_len));
      }
      if (!buf.empty()) {
        const int r = nl_sendto(sock_.get(), buf.data(), buf.size());
        if (r < 0) {
          st.result.error = std::string("netlink: send: ") + nl_geterror(r);
          st.result.error_number = EIO;
          sock_.reset();
          return st.result;
        }
      }
      if (sent - st.answered < window_ && sent < prefixes.size()) continue;
      const int r = nl_recvmsgs(sock_.get(), cb.get());
      if (r < 0) {
        st.result.error = std::string("netlink: waiting for acknowledgements: ") + nl_geterror(r);
        st.result.error_number = EIO;
        sock_.reset();  // acks may still arrive: they must not be counted for the next batch
        return st.result;
      }
    }
    return st.result;
  }

  route_table_config config_;
  sock_ptr sock_;
  std::size_t window_ = 32;
};

}  // namespace

std::unique_ptr<route_table> make_netlink_route_table(route_table_config config,
                                                      std::string& error) {
  sock_ptr s = open_socket(error);
  if (!s) return nullptr;
  return std::make_unique<netlink_route_table>(config, std::move(s));
}

}  // namespace sluice::control::rtbh
