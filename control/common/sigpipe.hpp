#pragma once
// cpp-httplib writes TLS records with write(2), not send(MSG_NOSIGNAL) as it does on plain
// sockets: a peer that closes first (a controller restarting or refusing a certificate, an etcd
// member going away) would kill the writing process with SIGPIPE instead of failing the
// request. Every program that runs an httplib TLS client calls this first: SIGPIPE is then
// ignored (the write fails with EPIPE), as gRPC's clients do, unless the program installed a
// handler of its own.

#include <csignal>

namespace sluice::control {

inline void ignore_sigpipe_unless_handled() {
  struct sigaction old {};
  if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    ::sigaction(SIGPIPE, &ign, nullptr);
  }
}

}  // namespace sluice::control
