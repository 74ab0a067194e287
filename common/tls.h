#pragma once
// TLS contexts for cached's HTTPS listeners (and TLS to an origin): owning
// pointers for OpenSSL objects, server and client contexts with modern
// defaults, and server-name (SNI) selection among several certificates.
//
// Build contexts in the parent before forking the workers, so all workers
// share the session ticket keys and a ticket issued by one is accepted by
// the others. (The session-ID cache is per process; tickets are what make
// resumption work across workers.)

#include <openssl/ssl.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sj {

struct SslCtxDeleter {
    void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};
struct SslDeleter {
    void operator()(SSL* s) const noexcept { SSL_free(s); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// Drains this thread's OpenSSL error queue into one readable line
// ("error:...:no such file; error:..."); "unknown TLS error" if empty.
std::string ssl_error_string();

// A server context for the PEM certificate chain (leaf first) and private
// key at the given paths: TLS 1.2 and 1.3 only; for 1.2 the Mozilla
// "intermediate" ciphers; for 1.3 OpenSSL's suites with the client's
// preference (all are strong, and a phone without AES hardware picks
// ChaCha20); a server session cache and session tickets for resumption; no
// renegotiation. Checks that the key matches the certificate. On failure
// returns null and sets *err to a message that starts with the file at
// fault. The context is set up for non-blocking use with a Buffer: partial
// writes are allowed and a retried SSL_write may pass a moved buffer.
SslCtxPtr make_server_ctx(const std::string& cert_chain_path,
                          const std::string& key_path, std::string* err);

// A client context (TLS 1.2 and later). With `verify`, the peer's chain is
// checked against `ca_file` (PEM), or the system's store if it is empty;
// the name must be set on each connection with ssl_set_client_host().
SslCtxPtr make_client_ctx(bool verify, const std::string& ca_file,
                          std::string* err);

// Sets the SNI name sent by a client connection and, if the context
// verifies, the host name the certificate must match. False on failure.
bool ssl_set_client_host(SSL* ssl, const std::string& host);

// The DNS names a server context's certificate is for: its subjectAltName
// DNS entries, or its subject CN if it has none (RFC 6125 §6.4.4).
// Lowercased; wildcards kept as "*.example.com".
std::vector<std::string> certificate_names(SSL_CTX* ctx);

// Picks the context whose certificate names the server name a client asked
// for: exact names first, then a wildcard "*.example.com" that matches
// exactly one label ("a.example.com", not "example.com" nor
// "a.b.example.com"). Names compare case-insensitively. A client that
// sends no name, or an unknown one, gets the default context (the first one
// added) rather than a failed handshake.
//
// Lifetime: install() stores `this` in the default context's callback, so
// the selector must outlive every SSL made from default_ctx(), e.g. keep an
// old selector alive until the connections of a reloaded configuration end.
// Not copyable or movable for the same reason.
class SniSelector {
public:
    SniSelector() = default;
    SniSelector(const SniSelector&) = delete;
    SniSelector& operator=(const SniSelector&) = delete;

    // Takes ownership of `ctx` and registers its certificate's names. False
    // with *err set if the certificate has no names, or a name is already
    // served by a context added before (two certificates for one name is a
    // configuration mistake better reported than guessed at).
    bool add(SslCtxPtr ctx, std::string* err);

    // The context for `server_name`, or the default; null if none added.
    SSL_CTX* select(std::string_view server_name) const;

    // Installs the servername callback on the default context. Call after
    // the last add() and before accepting connections.
    void install();

    // The context to create server SSL objects from; null if none added.
    SSL_CTX* default_ctx() const
    {
        return ctxs_.empty() ? nullptr : ctxs_.front().get();
    }

private:
    static int on_servername(SSL* ssl, int* alert, void* arg) noexcept;

    std::vector<SslCtxPtr> ctxs_;
    std::map<std::string, SSL_CTX*, std::less<>> exact_;
    // Keyed by the wildcard's suffix without the '*': ".example.com".
    std::map<std::string, SSL_CTX*, std::less<>> wildcard_;
};

}  // namespace sj
