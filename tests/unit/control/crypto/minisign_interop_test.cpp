// Interop with the real minisign (Debian package `minisign`, 0.11), both directions, in a temp
// dir. minisign missing is a failure, not a skip: CI installs it (tools/setup.sh), and without
// it nothing shows that `minisign -V` accepts what we sign.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "control/crypto/minisign.hpp"
#include "tests/unit/control/crypto/crypto_test_util.hpp"

using namespace sluice::control::crypto;
using namespace sluice::control::crypto::test;

namespace {

bool have_minisign() { return std::system("command -v minisign >/dev/null 2>&1") == 0; }

void require_minisign() {
  if (!have_minisign()) {
    FAIL(
        "minisign is not installed (needed for the interop tests); run tools/setup.sh "
        "(apt-get install minisign)");
  }
}

// Runs `cmd` in `dir` with stdin closed; returns its exit status, output in dir/last.log.
int run_in(const temp_dir& dir, const std::string& cmd) {
  const std::string full =
      "cd '" + dir.path().string() + "' && " + cmd + " </dev/null >last.log 2>&1";
  const int status = std::system(full.c_str());
  if (status == -1 || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

const std::string document =
    "id: d-42\nissuer: ministry\naction: block\ntargets:\n  apps: [telegram]\n";

}  // namespace

TEST_CASE(
    "interop: what minisign makes, we read and verify; what we sign with its key, it "
    "verifies") {
  require_minisign();
  const temp_dir dir;
  write_file(dir / "doc.yaml", document);
  REQUIRE_MESSAGE(run_in(dir, "minisign -G -W -p k.pub -s k.key") == 0,
                  read_file(dir / "last.log"));
  REQUIRE_MESSAGE(run_in(dir, "minisign -S -s k.key -m doc.yaml -t 'trusted text'") == 0,
                  read_file(dir / "last.log"));

  std::string err;
  const auto pub_text = read_file(dir / "k.pub");
  const auto pub = parse_public_key(pub_text, &err);
  REQUIRE_MESSAGE(pub.has_value(), err);
  // minisign's comment names the id the way to_hex prints it, but without leading zeros
  // (printf's %PRIX64: one key in sixteen starts with a zero digit).
  std::string id_hex = to_hex(pub->id);
  id_hex.erase(0, std::min(id_hex.find_first_not_of('0'), id_hex.size() - 1));
  CHECK(pub_text.starts_with("untrusted comment: minisign public key " + id_hex + "\n"));

  const auto sig_text = read_file(dir / "doc.yaml.minisig");
  CHECK(signature_key_id(sig_text) == pub->id);
  const auto res = verify(*pub, document, sig_text);
  CHECK(to_string(res.outcome) == "ok");
  CHECK(res.trusted_comment == "trusted text");
  std::string changed = document;
  changed[5] = 'X';
  CHECK(verify(*pub, changed, sig_text).outcome == verify_outcome::bad_signature);

  // minisign's legacy (non-prehashed) mode.
  REQUIRE(run_in(dir, "minisign -S -l -s k.key -m doc.yaml -x legacy.minisig -t 'legacy'") == 0);
  const auto legacy_text = read_file(dir / "legacy.minisig");
  const auto legacy = verify(*pub, document, legacy_text);
  CHECK(to_string(legacy.outcome) == "ok");
  CHECK(legacy.trusted_comment == "legacy");
  CHECK(verify(*pub, changed, legacy_text).outcome == verify_outcome::bad_signature);

  // Its unencrypted secret key, used by us; minisign verifies the result.
  const auto sec = parse_secret_key(read_file(dir / "k.key"), &err);
  REQUIRE_MESSAGE(sec.has_value(), err);
  CHECK(sec->id == pub->id);
  CHECK(std::equal(pub->key.begin(), pub->key.end(), sec->key.begin() + 32));
  const auto ours = sign(*sec, document, "sluice-snapshot node=n1 revision=7");
  REQUIRE(ours.has_value());
  write_file(dir / "doc.yaml.minisig", *ours);
  CHECK_MESSAGE(run_in(dir, "minisign -V -p k.pub -m doc.yaml") == 0, read_file(dir / "last.log"));
  CHECK_MESSAGE(run_in(dir, "minisign -V -H -p k.pub -m doc.yaml") == 0,  // -H: prehashed only
                read_file(dir / "last.log"));
  CHECK(run_in(dir, "minisign -V -Q -p k.pub -m doc.yaml") == 0);
  CHECK(read_file(dir / "last.log") == "sluice-snapshot node=n1 revision=7\n");
}

TEST_CASE("interop: minisign verifies our keys and signatures, and rejects a changed document") {
  require_minisign();
  const temp_dir dir;
  const auto kp = generate_key_pair();
  REQUIRE(kp.has_value());
  write_file(dir / "ours.pub", format_public_key(kp->pub));
  write_file(dir / "doc", document);
  const auto sig = sign(kp->sec, document, "directive d-42");
  REQUIRE(sig.has_value());
  write_file(dir / "doc.minisig", *sig);
  CHECK_MESSAGE(run_in(dir, "minisign -V -p ours.pub -m doc") == 0, read_file(dir / "last.log"));
  CHECK(run_in(dir, "minisign -V -Q -p ours.pub -m doc") == 0);
  CHECK(read_file(dir / "last.log") == "directive d-42\n");
  // The public key alone on the command line (-P) works too.
  const auto b64_line = lines_of(format_public_key(kp->pub)).at(1);
  CHECK(run_in(dir, "minisign -V -P " + b64_line + " -m doc") == 0);

  // One byte of the document changed: minisign refuses.
  std::string changed = document;
  changed[0] = 'I';
  write_file(dir / "doc", changed);
  CHECK(run_in(dir, "minisign -V -p ours.pub -m doc") != 0);

  // Our trusted comment altered: minisign refuses.
  write_file(dir / "doc", document);
  auto lines = lines_of(*sig);
  lines[2] = "trusted comment: directive d-43";
  write_file(dir / "doc.minisig", join_lines(lines));
  CHECK(run_in(dir, "minisign -V -p ours.pub -m doc") != 0);

  // A key written as our PEM secret key, read back and used: still verifies with minisign.
  const auto sec = parse_secret_key(format_secret_key(kp->sec));
  REQUIRE(sec.has_value());
  const auto sig2 = sign(*sec, document, "from PEM");
  REQUIRE(sig2.has_value());
  write_file(dir / "doc.minisig", *sig2);
  CHECK_MESSAGE(run_in(dir, "minisign -V -p ours.pub -m doc") == 0, read_file(dir / "last.log"));
}
