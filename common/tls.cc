#include "common/tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <cstring>

#include "common/log.h"

namespace sj {

namespace {

// Mozilla's "intermediate" configuration (v5.7) for TLS 1.2: forward-secret
// AEAD suites only. TLS 1.3 suites are OpenSSL's defaults.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"
    "DHE-RSA-CHACHA20-POLY1305";

// Names the server's sessions so a session from another program using the
// same OpenSSL cache is never resumed here.
constexpr unsigned char kSessionIdContext[] = "sunjammer";

// Buffers move when they compact, and a connection writes what it has.
constexpr long kModes = SSL_MODE_ENABLE_PARTIAL_WRITE |
                        SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                        SSL_MODE_RELEASE_BUFFERS;

struct EvpPkeyDeleter {
    void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct BioDeleter {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};

// A daemon has no terminal to ask for a passphrase on: an encrypted key
// fails to load instead of blocking startup on a prompt.
int
no_passphrase(char*, int, int, void*)
{
    return -1;
}

std::string
lowercase(std::string_view s)
{
    std::string out(s);
    for (char& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool
is_ip_literal(const std::string& host)
{
    unsigned char buf[sizeof(in6_addr)];
    return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
           inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

std::string
ssl_error_string()
{
    std::string out;
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty())
            out += "; ";
        out += buf;
    }
    return out.empty() ? "unknown TLS error" : out;
}

SslCtxPtr
make_server_ctx(const std::string& cert_chain_path, const std::string& key_path,
                std::string* err)
{
    ERR_clear_error();
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) {
        *err = "cannot create TLS context: " + ssl_error_string();
        return nullptr;
    }
    SSL_CTX* c = ctx.get();
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(c, kTls12Ciphers) != 1) {
        *err = "cannot set TLS protocol versions or ciphers: " +
               ssl_error_string();
        return nullptr;
    }
    // Renegotiation is a DoS lever and was never needed by HTTP/1.1 here.
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_clear_options(c,
                          SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    SSL_CTX_set_dh_auto(c, 1);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(c, kSessionIdContext,
                                   sizeof kSessionIdContext - 1);
    SSL_CTX_set_mode(c, kModes);

    if (SSL_CTX_use_certificate_chain_file(c, cert_chain_path.c_str()) != 1) {
        *err = cert_chain_path +
               ": cannot load certificate chain: " + ssl_error_string();
        return nullptr;
    }
    X509* leaf = SSL_CTX_get0_certificate(c);
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
        log_warn("%s: certificate has expired", cert_chain_path.c_str());

    // Loading the key ourselves lets a mismatch be told apart from an
    // unreadable file, and named as such.
    std::unique_ptr<BIO, BioDeleter> bio(BIO_new_file(key_path.c_str(), "r"));
    if (!bio) {
        *err = key_path + ": cannot open private key: " + ssl_error_string();
        return nullptr;
    }
    std::unique_ptr<EVP_PKEY, EvpPkeyDeleter> key(
        PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
    if (!key) {
        *err = key_path + ": cannot read private key (PEM, unencrypted): " +
               ssl_error_string();
        return nullptr;
    }
    if (X509_check_private_key(leaf, key.get()) != 1) {
        ERR_clear_error();
        *err = key_path + ": private key does not match the certificate in " +
               cert_chain_path;
        return nullptr;
    }
    if (SSL_CTX_use_PrivateKey(c, key.get()) != 1 ||
        SSL_CTX_check_private_key(c) != 1) {
        *err = key_path + ": cannot use private key: " + ssl_error_string();
        return nullptr;
    }
    return ctx;
}

SslCtxPtr
make_client_ctx(bool verify, const std::string& ca_file, std::string* err)
{
    ERR_clear_error();
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) {
        *err = "cannot create TLS context: " + ssl_error_string();
        return nullptr;
    }
    SSL_CTX* c = ctx.get();
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1) {
        *err = "cannot set TLS protocol version: " + ssl_error_string();
        return nullptr;
    }
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(c, kModes);
    if (!verify) {
        SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
        return ctx;
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
    if (ca_file.empty()) {
        if (SSL_CTX_set_default_verify_paths(c) != 1) {
            *err = "cannot load the system CA certificates: " +
                   ssl_error_string();
            return nullptr;
        }
    } else if (SSL_CTX_load_verify_locations(c, ca_file.c_str(), nullptr) !=
               1) {
        *err = ca_file + ": cannot load CA certificates: " + ssl_error_string();
        return nullptr;
    }
    return ctx;
}

bool
ssl_set_client_host(SSL* ssl, const std::string& host)
{
    // RFC 6066 §3: literal IP addresses are not permitted in SNI.
    if (!is_ip_literal(host) &&
        SSL_set_tlsext_host_name(ssl, host.c_str()) != 1)
        return false;
    if ((SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) != 0 &&
        SSL_set1_host(ssl, host.c_str()) != 1)
        return false;
    return true;
}

std::vector<std::string>
certificate_names(SSL_CTX* ctx)
{
    std::vector<std::string> names;
    X509* cert = SSL_CTX_get0_certificate(ctx);
    if (cert == nullptr)
        return names;
    auto* gens = static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    if (gens != nullptr) {
        for (int i = 0; i < sk_GENERAL_NAME_num(gens); ++i) {
            const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens, i);
            if (g->type != GEN_DNS)
                continue;
            auto* data = reinterpret_cast<const char*>(
                ASN1_STRING_get0_data(g->d.dNSName));
            int len = ASN1_STRING_length(g->d.dNSName);
            std::string_view name(data, static_cast<size_t>(len));
            // An embedded NUL is the classic name-spoofing trick.
            if (len > 0 && name.find('\0') == std::string_view::npos)
                names.push_back(lowercase(name));
        }
        GENERAL_NAMES_free(gens);
    }
    if (!names.empty())
        return names;
    X509_NAME* subj = X509_get_subject_name(cert);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx >= 0) {
        ASN1_STRING* cn = X509_NAME_ENTRY_get_data(
            X509_NAME_get_entry(subj, idx));
        unsigned char* utf8 = nullptr;
        int len = ASN1_STRING_to_UTF8(&utf8, cn);
        if (len > 0) {
            std::string_view name(reinterpret_cast<char*>(utf8),
                                  static_cast<size_t>(len));
            if (name.find('\0') == std::string_view::npos)
                names.push_back(lowercase(name));
        }
        OPENSSL_free(utf8);
    }
    return names;
}

bool
SniSelector::add(SslCtxPtr ctx, std::string* err)
{
    std::vector<std::string> names = certificate_names(ctx.get());
    if (names.empty()) {
        *err = "certificate has no DNS names (subjectAltName or CN)";
        return false;
    }
    for (const std::string& n : names) {
        bool wild = n.size() > 2 && n.compare(0, 2, "*.") == 0;
        const auto& m = wild ? wildcard_ : exact_;
        if (m.count(wild ? n.substr(1) : n) != 0) {
            *err = "name '" + n + "' is already served by another certificate";
            return false;
        }
    }
    SSL_CTX* c = ctx.get();
    ctxs_.push_back(std::move(ctx));
    for (const std::string& n : names) {
        if (n.size() > 2 && n.compare(0, 2, "*.") == 0)
            wildcard_.emplace(n.substr(1), c);
        else
            exact_.emplace(n, c);
    }
    return true;
}

SSL_CTX*
SniSelector::select(std::string_view server_name) const
{
    if (ctxs_.empty())
        return nullptr;
    std::string name = lowercase(server_name);
    if (!name.empty() && name.back() == '.')
        name.pop_back();
    if (auto it = exact_.find(name); it != exact_.end())
        return it->second;
    size_t dot = name.find('.');
    if (dot != std::string::npos && dot > 0) {
        auto it = wildcard_.find(std::string_view(name).substr(dot));
        if (it != wildcard_.end())
            return it->second;
    }
    return default_ctx();
}

int
SniSelector::on_servername(SSL* ssl, int*, void* arg) noexcept
{
    auto* self = static_cast<SniSelector*>(arg);
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == nullptr)
        return SSL_TLSEXT_ERR_NOACK;
    SSL_CTX* want = self->select(name);
    if (want == nullptr)
        return SSL_TLSEXT_ERR_NOACK;
    if (want != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, want);
    return SSL_TLSEXT_ERR_OK;
}

void
SniSelector::install()
{
    SSL_CTX* def = default_ctx();
    if (def == nullptr)
        return;
    SSL_CTX_set_tlsext_servername_callback(def, on_servername);
    SSL_CTX_set_tlsext_servername_arg(def, this);
}

}  // namespace sj
