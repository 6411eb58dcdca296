#pragma once
// The controller's store on an etcd v3 cluster (issue 7), for several sluice-controld replicas
// sharing one state. Same contract as store.hpp; how each guarantee maps onto etcd:
//  - commit() is one etcd Txn: its compares are the batch's CAS conditions (directive
//    mod_revision, the audit chain head, the latest revision number, meta values, and the leader
//    key when require_leadership), its success ops every put/delete. etcd acknowledges a Txn
//    only once a quorum has it in its log, so an acknowledged commit survives losing a minority.
//    When only the audit head moved (another replica appended), the store re-reads it, re-seals
//    and retries (bounded); any other failed compare is `conflict`.
//  - directive_record::version and commit_result::store_revision are etcd revisions
//    (mod_revision / header.revision), so they rise with every commit by anyone.
//  - audit records live at PREFIX/audit/<seq, 20 digits>; PREFIX/audit_head holds the head's
//    {seq, hash}; appending = Txn comparing audit_head's value.
//  - revisions at PREFIX/revisions/<20 digits>, PREFIX/revision_latest = the number.
//  - node records at PREFIX/nodes/<id> (no lease); PREFIX/alive/<id> is written with a lease of
//    node_ttl on every upsert, so a node that stops reporting expires by itself (list_nodes()
//    sets node_record::expired). Leases are shared per time bucket, not one per node.
//  - impacts at PREFIX/impacts/<window_end, 20 digits>/<node_id>.
//  - leadership: a background thread keeps a lease of leader_ttl alive and creates
//    PREFIX/leader = replica name with it only if absent (Txn on create_revision == 0). The
//    leader is whoever's key it is; term = that key's create_revision. A replica that cannot
//    refresh its lease for leader_ttl stops calling itself leader before etcd expires its key.
//    resign (destructor) deletes the key and revokes the lease so a clean stop hands over at once.
//  - wait_for_change: a watch on PREFIX from the last seen revision; on a broken stream it
//    resumes from that revision; when the revision was compacted, it re-reads
//    (header.revision) and resumes from there. Waiters wake on every event.
//
// Client: etcd's JSON gateway (/v3/kv/range, /v3/kv/txn, /v3/lease/grant, /v3/lease/keepalive,
// /v3/lease/revoke, /v3/watch) over HTTP, or HTTPS (issue 14: the members' certificates verified
// against tls_ca, a client certificate for etcd's --client-cert-auth), with cpp-httplib and
// nlohmann-json; keys and values are base64 in that API (OpenSSL EVP_EncodeBlock/DecodeBlock).
// A request that fails on one endpoint is retried on the next (a dead member, or one whose TLS
// handshake fails, is skipped); only when every endpoint fails does a read throw store_error or
// a commit return `failed`. A failed commit whose outcome is unknown (the request may have
// reached etcd) is reported `failed` with "outcome unknown" in the error.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "control/store/store.hpp"

namespace sluice::control::store {

struct etcd_options {
  std::vector<std::string> endpoints;   // "http://127.0.0.1:2379", ... (client URLs)
  // https:// endpoints (all of them, or none): the CA file that verifies the members' server
  // certificates (required), this controller's client certificate and key (optional, both).
  // Empty for http:// endpoints.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string prefix = "/sluice";       // every key lives under it
  std::string replica;                  // this controller's name in the leader key
  std::chrono::seconds leader_ttl{5};   // leadership lease
  std::chrono::seconds node_ttl{90};    // node liveness lease (the controller's stale_after)
  std::chrono::milliseconds request_timeout{3000};
  // Limits of one commit's etcd Txn, checked before sending: a batch over either is `failed`
  // with an error naming the limit. Each must not exceed the cluster's own (--max-txn-ops,
  // default 128; --max-request-bytes, default 1.5 MiB): run etcd with --max-txn-ops 10000 so a
  // fleet's node status batch (2 ops per node) fits. Request bytes are counted as the keys' and
  // values' raw sizes plus a small per-op overhead (roughly the protobuf size etcd limits).
  std::size_t max_txn_ops = 10000;
  std::size_t max_request_bytes = 1536 * 1024;
};

// Connects (reads the cluster once: an unreachable cluster or a prefix holding something that is
// not a Sluice store throws store_error), starts the watch and the campaign threads.
[[nodiscard]] std::unique_ptr<store> open_etcd_store(const etcd_options& options);

}  // namespace sluice::control::store
