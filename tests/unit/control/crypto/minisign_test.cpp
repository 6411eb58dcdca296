// minisign-format keys and signatures: round trips, every verify outcome, key file parsing and
// its error texts, legacy "Ed" signatures. Interop with the real minisign is in
// minisign_interop_test.cpp.
#include "control/crypto/minisign.hpp"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tests/unit/control/crypto/crypto_test_util.hpp"

using namespace sluice::control::crypto;
using namespace sluice::control::crypto::test;

namespace {

key_pair fresh_pair() {
  auto kp = generate_key_pair();
  REQUIRE(kp.has_value());
  return *kp;
}

std::string signed_text(const key_pair& kp, std::string_view msg, std::string_view tc) {
  auto s = sign(kp.sec, msg, tc);
  REQUIRE(s.has_value());
  return *s;
}

// Decodes base64 line `line` of a signature file, lets `edit` change the bytes, re-encodes.
template <typename F>
std::string edit_line_bytes(const std::string& sig_text, std::size_t line, F edit) {
  auto lines = lines_of(sig_text);
  auto bytes = unb64(lines.at(line));
  edit(bytes);
  lines.at(line) = b64(bytes);
  return join_lines(lines);
}

// Ed25519 by OpenSSL directly, to build legacy signatures the library never makes.
std::array<std::uint8_t, 64> raw_ed25519(const secret_key& k, std::string_view msg) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, k.key.data(), 32), EVP_PKEY_free);
  REQUIRE(pkey);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) == 1);
  std::array<std::uint8_t, 64> sig{};
  std::size_t len = sig.size();
  REQUIRE(EVP_DigestSign(ctx.get(), sig.data(), &len,
                         reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1);
  REQUIRE(len == 64);
  return sig;
}

std::string legacy_signature(const key_pair& kp, std::string_view msg, std::string_view tc) {
  const auto sig = raw_ed25519(kp.sec, msg);
  std::vector<std::uint8_t> blob{'E', 'd'};
  blob.insert(blob.end(), kp.sec.id.begin(), kp.sec.id.end());
  blob.insert(blob.end(), sig.begin(), sig.end());
  std::string global_msg(sig.begin(), sig.end());
  global_msg += tc;
  const auto global = raw_ed25519(kp.sec, global_msg);
  return "untrusted comment: legacy\n" + b64(blob) + "\ntrusted comment: " + std::string(tc) +
         "\n" + b64({global.begin(), global.end()}) + "\n";
}

// minisign's unencrypted secret key blob, built field by field.
std::vector<std::uint8_t> minisign_secret_blob(const secret_key& k,
                                               std::string_view kdf = {"\0\0", 2},
                                               std::string_view alg = "Ed",
                                               std::string_view chk = "B2") {
  std::vector<std::uint8_t> b(alg.begin(), alg.end());
  b.insert(b.end(), kdf.begin(), kdf.end());
  b.insert(b.end(), chk.begin(), chk.end());
  b.resize(b.size() + 32 + 8 + 8, 0);  // salt, opslimit, memlimit
  b.insert(b.end(), k.id.begin(), k.id.end());
  b.insert(b.end(), k.key.begin(), k.key.end());
  b.resize(b.size() + 32, 0);  // checksum (not checked: BLAKE2b-256 is beyond OpenSSL 3.0)
  return b;
}

}  // namespace

TEST_CASE("verify outcome names and descriptions are distinct and complete") {
  std::set<std::string_view> names;
  std::set<std::string_view> texts;
  for (int i = 0; i < static_cast<int>(verify_outcome::count); ++i) {
    const auto o = static_cast<verify_outcome>(i);
    CHECK_FALSE(to_string(o).empty());
    CHECK(to_string(o) != "unknown");
    names.insert(to_string(o));
    texts.insert(describe(o));
  }
  CHECK(names.size() == static_cast<std::size_t>(verify_outcome::count));
  CHECK(texts.size() == static_cast<std::size_t>(verify_outcome::count));
  CHECK(to_string(verify_outcome::wrong_key) == "wrong_key");
  CHECK(describe(verify_outcome::bad_trusted_comment) ==
        "trusted comment signature does not match (comment altered)");
}

TEST_CASE("key ids print as minisign prints them (little-endian u64) and parse back") {
  // Bytes from a real `minisign -G` public key whose comment said "FF5E672A0D16F7FA".
  const key_id id{0xfa, 0xf7, 0x16, 0x0d, 0x2a, 0x67, 0x5e, 0xff};
  CHECK(to_hex(id) == "FF5E672A0D16F7FA");
  CHECK(parse_key_id_hex("FF5E672A0D16F7FA") == id);
  CHECK(parse_key_id_hex("ff5e672a0d16f7fa") == id);
  struct row {
    const char* what;
    const char* text;
  };
  for (const row& r :
       {row{"empty", ""}, row{"short", "FF5E672A0D16F7F"}, row{"long", "FF5E672A0D16F7FA0"},
        row{"not hex", "FF5E672A0D16F7FG"}, row{"spaces", " FF5E672A0D16F7F"}}) {
    CAPTURE(r.what);
    CHECK_FALSE(parse_key_id_hex(r.text).has_value());
  }
}

TEST_CASE("generated key pairs are distinct and consistent") {
  const auto a = fresh_pair();
  const auto b = fresh_pair();
  CHECK(a.pub.id == a.sec.id);
  CHECK(std::equal(a.pub.key.begin(), a.pub.key.end(), a.sec.key.begin() + 32));
  CHECK(a.pub.key != b.pub.key);
  CHECK(a.pub.id != b.pub.id);
}

TEST_CASE("sign then verify round trips and returns the trusted comment") {
  const auto kp = fresh_pair();
  struct row {
    const char* what;
    std::string message;
    std::string trusted;
  };
  const std::vector<row> rows{
      {"yaml document", "id: d-1\nissuer: ministry\naction: block\n", "sluice directive d-1"},
      {"empty message", "", "empty"},
      {"binary bytes", std::string("\0\xff\x80\n\r", 5), "binary"},
      {"empty trusted comment", "x", ""},
      {"tabs in trusted comment", "x", "timestamp:1\tfile:doc.yaml\thashed"},
      {"large message", std::string(1 << 20, 'a'), "a megabyte"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    const auto text = signed_text(kp, r.message, r.trusted);
    const auto lines = lines_of(text);
    REQUIRE(lines.size() == 4);
    CHECK(lines[0] == "untrusted comment: signature from sluice key " + to_hex(kp.pub.id));
    CHECK(lines[2] == "trusted comment: " + r.trusted);
    CHECK(unb64(lines[1]).at(0) == 'E');
    CHECK(unb64(lines[1]).at(1) == 'D');  // prehashed, as minisign 0.11 makes
    const auto res = verify(kp.pub, r.message, text);
    CHECK(res.outcome == verify_outcome::ok);
    CHECK(static_cast<bool>(res));
    CHECK(res.trusted_comment == r.trusted);
    const std::vector<std::uint8_t> bytes(r.message.begin(), r.message.end());
    CHECK(verify(kp.pub, std::span<const std::uint8_t>(bytes), text).outcome == verify_outcome::ok);
    CHECK(signature_key_id(text) == kp.pub.id);
  }
}

TEST_CASE("sign uses the given untrusted comment on one line and refuses multi-line trusted ones") {
  const auto kp = fresh_pair();
  const auto text = sign(kp.sec, "m", "t", "from\nthe ministry");
  REQUIRE(text.has_value());
  CHECK(lines_of(*text).at(0) == "untrusted comment: from the ministry");
  CHECK(verify(kp.pub, "m", *text).outcome == verify_outcome::ok);
  CHECK_FALSE(sign(kp.sec, "m", "two\nlines").has_value());
  CHECK_FALSE(sign(kp.sec, "m", "carriage\rreturn").has_value());
}

TEST_CASE("every verify outcome") {
  const auto kp = fresh_pair();
  const auto other = fresh_pair();
  const std::string msg = "id: d-7\naction: block\n";
  const std::string good = signed_text(kp, msg, "directive d-7");
  auto same_id_other_key = other.pub;
  same_id_other_key.id = kp.pub.id;
  const auto flip = [](std::size_t at) {
    return [at](std::vector<std::uint8_t>& b) { b.at(at) ^= 0x01; };
  };
  auto lines = lines_of(good);
  auto altered_comment = lines;
  altered_comment[2] = "trusted comment: directive d-8";
  auto no_untrusted_prefix = lines;
  no_untrusted_prefix[0] = "comment: x";
  auto no_trusted_prefix = lines;
  no_trusted_prefix[2] = "directive d-7";
  // Same bytes, non-canonical text: a low bit set among the 4 unused bits before "==".
  auto non_canonical = lines;
  {
    static constexpr std::string_view alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    auto& g = non_canonical[3];
    REQUIRE(g.ends_with("=="));
    const auto v = alphabet.find(g[g.size() - 3]);
    REQUIRE((v & 0x0f) == 0);
    g[g.size() - 3] = alphabet[v | 1];
    REQUIRE(unb64(g) == unb64(lines[3]));
  }
  auto crlf = good;
  for (std::size_t p = 0; (p = crlf.find('\n', p)) != std::string::npos; p += 2)
    crlf.insert(p, "\r");

  struct row {
    const char* what;
    public_key key;
    std::string message;
    std::string signature;
    verify_outcome expected;
  };
  const std::vector<row> rows{
      {"good", kp.pub, msg, good, verify_outcome::ok},
      {"good without final newline", kp.pub, msg, good.substr(0, good.size() - 1),
       verify_outcome::ok},
      {"good with CRLF lines", kp.pub, msg, crlf, verify_outcome::ok},
      {"message byte changed", kp.pub, "id: d-7\naction: blocK\n", good,
       verify_outcome::bad_signature},
      {"message extended", kp.pub, msg + " ", good, verify_outcome::bad_signature},
      {"trusted comment altered", kp.pub, msg, join_lines(altered_comment),
       verify_outcome::bad_trusted_comment},
      {"signature byte flipped", kp.pub, msg, edit_line_bytes(good, 1, flip(20)),
       verify_outcome::bad_signature},
      {"global signature byte flipped", kp.pub, msg, edit_line_bytes(good, 3, flip(5)),
       verify_outcome::bad_trusted_comment},
      {"key id byte flipped", kp.pub, msg, edit_line_bytes(good, 1, flip(3)),
       verify_outcome::wrong_key},
      {"other key", other.pub, msg, good, verify_outcome::wrong_key},
      {"other key claiming the same id", same_id_other_key, msg, good,
       verify_outcome::bad_signature},
      {"unknown algorithm EX", kp.pub, msg, edit_line_bytes(good, 1, [](auto& b) { b[1] = 'X'; }),
       verify_outcome::unsupported_algorithm},
      {"unknown algorithm zeros", kp.pub, msg,
       edit_line_bytes(good, 1, [](auto& b) { b[0] = b[1] = 0; }),
       verify_outcome::unsupported_algorithm},
      {"prehashed signature relabelled legacy", kp.pub, msg,
       edit_line_bytes(good, 1, [](auto& b) { b[1] = 'd'; }), verify_outcome::bad_signature},
      {"empty", kp.pub, msg, "", verify_outcome::malformed_signature},
      {"garbage", kp.pub, msg, "hello world\n", verify_outcome::malformed_signature},
      {"binary garbage", kp.pub, msg, std::string("\x01\x02\0\n\n\n\n", 7),
       verify_outcome::malformed_signature},
      {"no untrusted comment prefix", kp.pub, msg, join_lines(no_untrusted_prefix),
       verify_outcome::malformed_signature},
      {"no trusted comment prefix", kp.pub, msg, join_lines(no_trusted_prefix),
       verify_outcome::malformed_signature},
      {"extra line", kp.pub, msg, good + "more\n", verify_outcome::malformed_signature},
      {"signature line not base64", kp.pub, msg,
       join_lines({lines[0], "!!!!" + lines[1].substr(4), lines[2], lines[3]}),
       verify_outcome::malformed_signature},
      {"signature line with a space", kp.pub, msg,
       join_lines({lines[0], " " + lines[1], lines[2], lines[3]}),
       verify_outcome::malformed_signature},
      {"global signature in non-canonical base64", kp.pub, msg, join_lines(non_canonical),
       verify_outcome::malformed_signature},
      {"signature blob one byte short", kp.pub, msg,
       edit_line_bytes(good, 1, [](auto& b) { b.pop_back(); }),
       verify_outcome::malformed_signature},
      {"signature blob one byte long", kp.pub, msg,
       edit_line_bytes(good, 1, [](auto& b) { b.push_back(0); }),
       verify_outcome::malformed_signature},
      {"global signature one byte short", kp.pub, msg,
       edit_line_bytes(good, 3, [](auto& b) { b.pop_back(); }),
       verify_outcome::malformed_signature},
      {"public key file given as signature", kp.pub, msg, format_public_key(kp.pub),
       verify_outcome::malformed_signature},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    const auto res = verify(r.key, r.message, r.signature);
    CHECK(to_string(res.outcome) == to_string(r.expected));
    CHECK(static_cast<bool>(res) == (r.expected == verify_outcome::ok));
    if (r.expected != verify_outcome::ok) CHECK(res.trusted_comment.empty());
  }
}

TEST_CASE("every truncation of a signature file is malformed") {
  const auto kp = fresh_pair();
  const std::string msg = "document";
  const auto good = signed_text(kp, msg, "tc");
  // Dropping the final newline alone is still a whole file; any shorter prefix is not.
  for (std::size_t n = 0; n + 1 < good.size(); ++n) {
    CAPTURE(n);
    CHECK(verify(kp.pub, msg, good.substr(0, n)).outcome == verify_outcome::malformed_signature);
    CHECK_FALSE(signature_key_id(good.substr(0, n)).has_value());
  }
}

TEST_CASE("legacy \"Ed\" signatures (Ed25519 over the message itself) verify") {
  const auto kp = fresh_pair();
  const std::string msg = "legacy document\n";
  const auto text = legacy_signature(kp, msg, "legacy tc");
  const auto res = verify(kp.pub, msg, text);
  CHECK(res.outcome == verify_outcome::ok);
  CHECK(res.trusted_comment == "legacy tc");
  CHECK(verify(kp.pub, "legacy document!", text).outcome == verify_outcome::bad_signature);
  auto lines = lines_of(text);
  lines[2] = "trusted comment: legacy TC";
  CHECK(verify(kp.pub, msg, join_lines(lines)).outcome == verify_outcome::bad_trusted_comment);
  // A legacy signature relabelled prehashed must not pass either.
  CHECK(verify(kp.pub, msg, edit_line_bytes(text, 1, [](auto& b) { b[1] = 'D'; })).outcome ==
        verify_outcome::bad_signature);
}

TEST_CASE("signature_key_id names the signing key") {
  const auto kp = fresh_pair();
  const auto text = signed_text(kp, "m", "t");
  CHECK(signature_key_id(text) == kp.sec.id);
  CHECK(signature_key_id(edit_line_bytes(text, 1, [](auto& b) { b[0] = 'X'; })) == kp.sec.id);
  CHECK_FALSE(signature_key_id("untrusted comment: x\nAAAA\ntrusted comment: y\nAAAA\n"));
  CHECK_FALSE(signature_key_id(""));
}

TEST_CASE("public key files round trip") {
  const auto kp = fresh_pair();
  const auto text = format_public_key(kp.pub);
  const auto lines = lines_of(text);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "untrusted comment: minisign public key " + to_hex(kp.pub.id));
  CHECK(text.back() == '\n');
  const auto blob = unb64(lines[1]);
  REQUIRE(blob.size() == 42);
  CHECK(blob[0] == 'E');
  CHECK(blob[1] == 'd');

  struct row {
    const char* what;
    std::string text;
  };
  const std::vector<row> rows{
      {"whole file", text},
      {"base64 line only", lines[1]},
      {"base64 line with newline", lines[1] + "\n"},
      {"custom comment", format_public_key(kp.pub, "ministry of\nsomething")},
      {"CRLF", lines[0] + "\r\n" + lines[1] + "\r\n"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    std::string err;
    const auto k = parse_public_key(r.text, &err);
    REQUIRE(k.has_value());
    CHECK(err.empty());
    CHECK(k->id == kp.pub.id);
    CHECK(k->key == kp.pub.key);
  }
  CHECK(lines_of(format_public_key(kp.pub, "ministry of\nsomething")).at(0) ==
        "untrusted comment: ministry of something");
}

TEST_CASE("public key parse failures say why") {
  const auto kp = fresh_pair();
  const auto line = lines_of(format_public_key(kp.pub)).at(1);
  auto blob = unb64(line);
  auto wrong_alg = blob;
  wrong_alg[1] = 'D';
  auto short_blob = blob;
  short_blob.pop_back();
  const std::string shape =
      "public key: want \"untrusted comment: ...\" and a base64 line, or the base64 line alone";
  struct row {
    const char* what;
    std::string text;
    std::string error;
  };
  const std::vector<row> rows{
      {"empty", "", shape},
      {"three lines", "untrusted comment: a\n" + line + "\nextra\n", shape},
      {"comment without prefix", "comment: a\n" + line + "\n", shape},
      {"not base64", "untrusted comment: a\n" + line.substr(1) + "!\n",
       "public key: not valid base64"},
      {"bad length base64", "untrusted comment: a\n" + line.substr(1) + "\n",
       "public key: not valid base64"},
      {"41 bytes", b64(short_blob), "public key: must decode to 42 bytes"},
      {"signature-sized", b64(std::vector<std::uint8_t>(74, 'E')),
       "public key: must decode to 42 bytes"},
      {"algorithm ED", b64(wrong_alg),
       "public key: unsupported signature algorithm (want Ed25519, \"Ed\")"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    std::string err;
    CHECK_FALSE(parse_public_key(r.text, &err).has_value());
    CHECK(err == r.error);
    CHECK_FALSE(parse_public_key(r.text).has_value());  // no error sink: still refused
  }
}

TEST_CASE("secret keys round trip through PKCS#8 PEM, with and without the key id line") {
  const auto kp = fresh_pair();
  const auto text = format_secret_key(kp.sec);
  REQUIRE_FALSE(text.empty());
  const auto lines = lines_of(text);
  REQUIRE(lines.size() > 3);
  CHECK(lines[0] == "# sluice secret key (Ed25519, PKCS#8); keep it secret");
  CHECK(lines[1] == "# sluice key id: " + to_hex(kp.sec.id));
  CHECK(lines[2] == "-----BEGIN PRIVATE KEY-----");
  CHECK(lines.back() == "-----END PRIVATE KEY-----");

  std::string err;
  const auto with_id = parse_secret_key(text, &err);
  REQUIRE(with_id.has_value());
  CHECK(err.empty());
  CHECK(with_id->id == kp.sec.id);
  CHECK(with_id->key == kp.sec.key);

  // Without the id line (e.g. a key made by `openssl genpkey -algorithm ed25519`), the id is the
  // first 8 bytes of BLAKE2b-512(public key): compute that here through OpenSSL directly.
  const auto pem_only = text.substr(text.find("-----BEGIN"));
  const auto without_id = parse_secret_key(pem_only, &err);
  REQUIRE(without_id.has_value());
  CHECK(without_id->key == kp.sec.key);
  std::array<unsigned char, 64> digest{};
  unsigned int len = 0;
  REQUIRE(EVP_Digest(kp.pub.key.data(), kp.pub.key.size(), digest.data(), &len, EVP_blake2b512(),
                     nullptr) == 1);
  key_id expected{};
  std::copy_n(digest.begin(), 8, expected.begin());
  CHECK(without_id->id == expected);

  // The parsed key signs what the public key verifies.
  const auto sig = sign(*with_id, "doc", "tc");
  REQUIRE(sig.has_value());
  CHECK(verify(kp.pub, "doc", *sig).outcome == verify_outcome::ok);

  // Custom comment, kept to one line; lower-case id accepted.
  const auto custom = format_secret_key(kp.sec, "controller\nkey");
  CHECK(lines_of(custom).at(0) == "# controller key");
  std::string lower = text;
  const auto hex = to_hex(kp.sec.id);
  std::string hex_lower = hex;
  std::transform(hex_lower.begin(), hex_lower.end(), hex_lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  lower.replace(lower.find(hex), hex.size(), hex_lower);
  const auto from_lower = parse_secret_key(lower);
  REQUIRE(from_lower.has_value());
  CHECK(from_lower->id == kp.sec.id);
}

TEST_CASE("minisign's unencrypted secret key format is read") {
  const auto kp = fresh_pair();
  const auto blob = minisign_secret_blob(kp.sec);
  REQUIRE(blob.size() == 158);
  for (const auto& text :
       {"untrusted comment: minisign encrypted secret key\n" + b64(blob) + "\n", b64(blob)}) {
    std::string err;
    const auto k = parse_secret_key(text, &err);
    REQUIRE(k.has_value());
    CHECK(err.empty());
    CHECK(k->id == kp.sec.id);
    CHECK(k->key == kp.sec.key);
  }
}

TEST_CASE("secret key parse failures say why") {
  const auto kp = fresh_pair();
  auto corrupt = kp.sec;
  corrupt.key[40] ^= 0x01;  // the stored public half no longer matches the seed
  auto short_blob = minisign_secret_blob(kp.sec);
  short_blob.pop_back();
  const auto pem = format_secret_key(kp.sec);
  auto bad_id_line = pem;
  bad_id_line.replace(bad_id_line.find(to_hex(kp.sec.id)), 16, "NOTHEXNOTHEXNOTH");

  // A PEM private key encrypted with a password, and a PEM that is not a private key.
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, kp.sec.key.data(), 32),
      EVP_PKEY_free);
  REQUIRE(pkey);
  std::string encrypted_pem;
  std::string public_pem;
  {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    char pass[] = "secret";
    REQUIRE(PEM_write_bio_PKCS8PrivateKey(bio.get(), pkey.get(), EVP_aes_256_cbc(), pass, 6,
                                          nullptr, nullptr) == 1);
    char* p = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &p);
    encrypted_pem.assign(p, static_cast<std::size_t>(n));
  }
  {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    REQUIRE(PEM_write_bio_PUBKEY(bio.get(), pkey.get()) == 1);
    char* p = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &p);
    public_pem.assign(p, static_cast<std::size_t>(n));
  }
  std::string x25519_pem;
  {
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> x(
        EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, kp.sec.key.data(), 32),
        EVP_PKEY_free);
    REQUIRE(x);
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    REQUIRE(PEM_write_bio_PrivateKey(bio.get(), x.get(), nullptr, nullptr, 0, nullptr, nullptr) ==
            1);
    char* p = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &p);
    x25519_pem.assign(p, static_cast<std::size_t>(n));
  }

  struct row {
    const char* what;
    std::string text;
    std::string error;
  };
  const std::vector<row> rows{
      {"empty", "",
       "secret key: want a PEM private key, or minisign's \"untrusted comment: ...\" and base64 "
       "lines"},
      {"encrypted minisign key (scrypt)", b64(minisign_secret_blob(kp.sec, "Sc")),
       "secret key: encrypted with a password (scrypt); make an unencrypted key with "
       "`minisign -G -W` or `sluicectl keygen`"},
      {"unknown kdf", b64(minisign_secret_blob(kp.sec, "Zz")),
       "secret key: unknown key derivation algorithm"},
      {"wrong algorithm", b64(minisign_secret_blob(kp.sec, {"\0\0", 2}, "ED")),
       "secret key: unsupported signature algorithm (want Ed25519, \"Ed\")"},
      {"wrong checksum algorithm", b64(minisign_secret_blob(kp.sec, {"\0\0", 2}, "Ed", "B3")),
       "secret key: unknown checksum algorithm (want BLAKE2b, \"B2\")"},
      {"157 bytes", b64(short_blob), "secret key: must decode to 158 bytes (minisign format)"},
      {"public key given as secret", format_public_key(kp.pub),
       "secret key: must decode to 158 bytes (minisign format)"},
      {"not base64", "untrusted comment: x\n@@@@\n", "secret key: not valid base64"},
      {"seed and public half disagree", b64(minisign_secret_blob(corrupt)),
       "secret key: corrupt (its seed does not yield its public key)"},
      {"bad key id line", bad_id_line,
       "secret key: bad \"# sluice key id:\" line (want 16 hex digits)"},
      {"encrypted PEM", encrypted_pem,
       "secret key: PEM key is encrypted; make an unencrypted key with `sluicectl keygen`"},
      {"public key PEM", public_pem, "secret key: not a readable PEM private key"},
      {"truncated PEM", pem.substr(0, pem.size() - 30),
       "secret key: not a readable PEM private key"},
      {"X25519 PEM", x25519_pem, "secret key: PEM key is not an Ed25519 key"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    std::string err;
    CHECK_FALSE(parse_secret_key(r.text, &err).has_value());
    CHECK(err == r.error);
  }
}
