#include "tests/transports/tls_certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <stdexcept>

namespace ferry::transport::testing {

struct TestPki::State {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  long serial = 1;
};

namespace {

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test PKI: ") + what + " failed");
}

EVP_PKEY* new_key() {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  check(k != nullptr, "EVP_PKEY_Q_keygen");
  return k;
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr && X509_add_ext(cert, ext, -1) == 1, "X509_add_ext");
  X509_EXTENSION_free(ext);
}

// A certificate for `cn` with `key`, signed by issuer_key (issuer == nullptr: self-signed).
X509* make_cert(const std::string& cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key,
                long serial) {
  X509* c = X509_new();
  check(c != nullptr, "X509_new");
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
  X509_gmtime_adj(X509_getm_notBefore(c), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c), 24 * 3600);
  X509_set_pubkey(c, key);
  X509_NAME* name = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
  X509* signer = issuer ? issuer : c;
  if (issuer) {
    add_ext(c, signer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(c, signer, NID_key_usage, "critical,digitalSignature");
  } else {
    add_ext(c, signer, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(c, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  }
  check(X509_sign(c, issuer_key, EVP_sha256()) > 0, "X509_sign");
  return c;
}

template <typename Write>
void write_pem(const std::string& path, Write write) {
  FILE* f = std::fopen(path.c_str(), "w");
  check(f != nullptr, ("open " + path).c_str());
  const bool ok = write(f) == 1;
  std::fclose(f);
  check(ok, ("PEM write " + path).c_str());
}

}  // namespace

TestPki::TestPki(std::string dir, const std::string& ca_name)
    : dir_(std::move(dir)), ca_file_(dir_ + "/" + ca_name + ".ca.pem"), state_(new State) {
  state_->key = new_key();
  state_->cert = make_cert(ca_name, state_->key, nullptr, state_->key, state_->serial++);
  write_pem(ca_file_, [&](FILE* f) { return PEM_write_X509(f, state_->cert); });
}

TestPki::~TestPki() {
  X509_free(state_->cert);
  EVP_PKEY_free(state_->key);
  delete state_;
}

Options::Tls TestPki::issue(const std::string& cn) {
  EVP_PKEY* key = new_key();
  X509* cert = make_cert(cn, key, state_->cert, state_->key, state_->serial++);
  Options::Tls t;
  t.cert_file = dir_ + "/" + cn + ".crt.pem";
  t.key_file = dir_ + "/" + cn + ".key.pem";
  t.ca_file = ca_file_;
  write_pem(t.cert_file, [&](FILE* f) { return PEM_write_X509(f, cert); });
  write_pem(t.key_file, [&](FILE* f) {
    return PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
  X509_free(cert);
  EVP_PKEY_free(key);
  return t;
}

}  // namespace ferry::transport::testing
