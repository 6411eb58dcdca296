#include "control/audit/audit.hpp"

#include <openssl/evp.h>

#include <array>
#include <memory>
#include <stdexcept>

namespace sluice::control::audit {

namespace {

// Canonical form, version 1 (what record_hash digests):
//   field("sluice-audit-v1") field(seq) field(at) field(actor) field(event) field(subject)
//   field(detail) field(prev_hash)
// where field(x) = 8-byte big-endian byte length of x, then x's bytes, and integers are their
// decimal text (at may be negative: "-5"). Length prefixes keep field boundaries unambiguous
// ("ab"+"c" differs from "a"+"bc"); the leading tag keeps a future form from colliding with
// this one. The store's chains depend on this byte for byte: never change it in place.
constexpr std::string_view form_tag = "sluice-audit-v1";

struct md_ctx_deleter {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};

class sha256 {
 public:
  sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) {
      throw std::runtime_error("audit: OpenSSL SHA-256 init failed");
    }
  }

  // Raw bytes, no length prefix.
  void bytes(std::string_view b) { update(b.data(), b.size()); }

  void field(std::string_view bytes) {
    std::array<unsigned char, 8> len{};
    std::uint64_t n = bytes.size();
    for (int i = 7; i >= 0; --i) {
      len[static_cast<std::size_t>(i)] = static_cast<unsigned char>(n & 0xffu);
      n >>= 8;
    }
    update(len.data(), len.size());
    update(bytes.data(), bytes.size());
  }

  [[nodiscard]] std::string hex_digest() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned int md_len = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), md.data(), &md_len) != 1) {
      throw std::runtime_error("audit: OpenSSL SHA-256 final failed");
    }
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(md_len * 2u);
    for (unsigned int i = 0; i < md_len; ++i) {
      out.push_back(digits[md[i] >> 4]);
      out.push_back(digits[md[i] & 0x0f]);
    }
    return out;
  }

 private:
  void update(const void* p, std::size_t n) {
    if (n != 0 && EVP_DigestUpdate(ctx_.get(), p, n) != 1) {
      throw std::runtime_error("audit: OpenSSL SHA-256 update failed");
    }
  }
  std::unique_ptr<EVP_MD_CTX, md_ctx_deleter> ctx_;
};

std::string seq_range(std::uint64_t first, std::uint64_t last) {
  if (first == last) return "record " + std::to_string(first);
  return "records " + std::to_string(first) + ".." + std::to_string(last);
}

}  // namespace

const std::string& genesis_hash() {
  static const std::string g(64, '0');
  return g;
}

std::string record_hash(const audit_record& r) {
  sha256 h;
  h.field(form_tag);
  h.field(std::to_string(r.seq));
  h.field(std::to_string(r.at));
  h.field(r.actor);
  h.field(r.event);
  h.field(r.subject);
  h.field(r.detail);
  h.field(r.prev_hash);
  return h.hex_digest();
}

std::string sha256_hex(std::string_view data) {
  sha256 h;
  h.bytes(data);
  return h.hex_digest();
}

void seal(audit_record& r, const audit_record* prev) {
  r.seq = prev ? prev->seq + 1 : 1;
  r.prev_hash = prev ? prev->hash : genesis_hash();
  r.hash = record_hash(r);
}

chain_report verify_chain(std::span<const audit_record> records) {
  return verify_chain_after(records, 0, genesis_hash());
}

chain_report verify_chain_after(std::span<const audit_record> records, std::uint64_t after_seq,
                                std::string_view after_hash) {
  chain_report rep;
  rep.head_hash = std::string(after_hash);
  std::uint64_t prev_seq = after_seq;
  std::string prev_hash(after_hash);

  auto fail = [&](const audit_record& r, std::string problem) {
    rep.ok = false;
    rep.bad_seq = r.seq;
    rep.problem = std::move(problem);
    return rep;
  };
  auto prev_name = [&]() {
    return prev_seq == 0 ? std::string("the genesis hash")
                         : "record " + std::to_string(prev_seq) + "'s hash";
  };

  for (std::size_t i = 0; i < records.size(); ++i) {
    const audit_record& r = records[i];
    ++rep.records;
    const std::string name = "record " + std::to_string(r.seq);

    // Contents first: an edited record (seq included) is named as edited, not as whatever
    // ordering symptom the edit happens to cause.
    if (record_hash(r) != r.hash) {
      return fail(r, name + ": hash does not match its contents (edited)");
    }
    const std::uint64_t expected = prev_seq + 1;
    if (r.seq > expected) {
      const std::uint64_t first_missing = expected;
      const std::uint64_t last_missing = r.seq - 1;
      // A missing seq that turns up later means the records were moved, not deleted.
      bool appears_later = false;
      for (std::size_t j = i + 1; j < records.size() && !appears_later; ++j) {
        appears_later = records[j].seq >= first_missing && records[j].seq <= last_missing;
      }
      const std::string where = i == 0 && after_seq == 0
                                    ? std::string("is the first record")
                                    : "follows record " + std::to_string(prev_seq);
      return fail(r, name + " " + where + " (" + seq_range(first_missing, last_missing) +
                         (appears_later ? " out of order: reordered)" : " removed)"));
    }
    if (r.seq < expected) {
      return fail(r, name + " follows record " + std::to_string(prev_seq) +
                         " (out of order: reordered or duplicated)");
    }
    if (r.prev_hash != prev_hash) {
      return fail(r, name + ": prev_hash is not " + prev_name() +
                         " (that record edited and re-hashed, or records removed or reordered "
                         "before it)");
    }
    prev_seq = r.seq;
    prev_hash = r.hash;
    rep.head_hash = r.hash;
  }
  return rep;
}

}  // namespace sluice::control::audit
