// Unit tests for common/address (parsing, to_string, format_sockaddr),
// common/net (listening, non-blocking connect and accept, stale Unix
// sockets, peer credentials) and common/tls (server contexts, key checks,
// SNI selection, a handshake over a socketpair).

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/ip_acl.h"
#include "common/net.h"
#include "common/tls.h"
#include "t/unit/tap.h"

using sj::Address;

namespace {

// ---------------------------------------------------------------- address

void
accepts(const std::string& text, Address::Family fam,
        const std::string& canonical)
{
    Address a;
    std::string err;
    bool ok = sj::parse_address(text, &a, &err);
    tap::ok(ok, "accepts '" + text + "'");
    if (!ok) {
        tap::diag("error: " + err);
        return;
    }
    tap::ok(a.family == fam, "'" + text + "': family");
    tap::is(a.to_string(), canonical, "'" + text + "': to_string");
    // The canonical form parses back to the same socket address.
    Address b;
    tap::ok(sj::parse_address(a.to_string(), &b, &err) && b.len == a.len &&
                std::memcmp(&a.ss, &b.ss, a.len) == 0 && b.port == a.port &&
                b.path == a.path,
            "'" + text + "': round trip");
}

void
rejects(const std::string& text, const std::string& want)
{
    Address a;
    a.port = 4242;
    std::string err;
    bool ok = sj::parse_address(text, &a, &err);
    tap::ok(!ok, "rejects '" + text.substr(0, 40) + "'");
    tap::is(err, want, "'" + text.substr(0, 40) + "': error message");
    tap::ok(a.port == 4242, "'" + text.substr(0, 40) + "': output untouched");
}

void
test_parse()
{
    using F = Address::Family;
    accepts("127.0.0.1:80", F::kInet, "127.0.0.1:80");
    accepts("192.0.2.11:8080", F::kInet, "192.0.2.11:8080");
    accepts("localhost:3306", F::kInet, "127.0.0.1:3306");
    accepts("*:80", F::kInet, "0.0.0.0:80");
    accepts("0.0.0.0:1", F::kInet, "0.0.0.0:1");
    accepts("127.0.0.1:0080", F::kInet, "127.0.0.1:80");
    accepts("255.255.255.255:65535", F::kInet, "255.255.255.255:65535");
    accepts("[::1]:443", F::kInet6, "[::1]:443");
    accepts("[::]:80", F::kInet6, "[::]:80");
    accepts("[2001:DB8:0:0::1]:8080", F::kInet6, "[2001:db8::1]:8080");
    accepts("[::ffff:192.0.2.1]:80", F::kInet6, "[::ffff:192.0.2.1]:80");
    accepts("unix:/run/sunjammer/balancerd.sock", F::kUnix,
            "unix:/run/sunjammer/balancerd.sock");
    std::string longest = "/" + std::string(106, 'p');
    accepts("unix:" + longest, F::kUnix, "unix:" + longest);

    Address a;
    std::string err;
    sj::parse_address("192.0.2.7:8081", &a, &err);
    auto* sin = reinterpret_cast<const sockaddr_in*>(&a.ss);
    tap::ok(sin->sin_family == AF_INET && ntohs(sin->sin_port) == 8081 &&
                sin->sin_addr.s_addr == htonl(0xc0000207) &&
                a.len == sizeof(sockaddr_in) && a.port == 8081,
            "IPv4 sockaddr filled in");
    sj::parse_address("[::1]:9", &a, &err);
    auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&a.ss);
    tap::ok(sin6->sin6_family == AF_INET6 && ntohs(sin6->sin6_port) == 9 &&
                IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) &&
                a.len == sizeof(sockaddr_in6),
            "IPv6 sockaddr filled in");
    sj::parse_address("unix:/tmp/x.sock", &a, &err);
    auto* sun = reinterpret_cast<const sockaddr_un*>(&a.ss);
    tap::ok(sun->sun_family == AF_UNIX &&
                std::strcmp(sun->sun_path, "/tmp/x.sock") == 0 &&
                a.len == offsetof(sockaddr_un, sun_path) + 12 &&
                a.path == "/tmp/x.sock" && a.is_unix(),
            "Unix sockaddr filled in");

    rejects("", "empty address");
    rejects("127.0.0.1", "missing port");
    rejects("localhost", "missing port");
    rejects("127.0.0.1:", "missing port");
    rejects(":80", "missing host");
    rejects("127.0.0.1:x", "bad port 'x'");
    rejects("127.0.0.1:-1", "bad port '-1'");
    rejects("127.0.0.1:+80", "bad port '+80'");
    rejects("127.0.0.1:80 ", "bad port '80 '");
    rejects("127.0.0.1:http", "bad port 'http'");
    rejects("127.0.0.1:70000", "port 70000 out of range");
    rejects("127.0.0.1:65536", "port 65536 out of range");
    rejects("127.0.0.1:0", "port 0 out of range");
    rejects("127.0.0.1:99999999999999999999",
            "port 9999999999... out of range");
    rejects("256.1.1.1:80", "bad IPv4 address");
    rejects("1.2.3:80", "bad IPv4 address");
    rejects("01.2.3.4:80", "bad IPv4 address");
    rejects(" 127.0.0.1:80",
            "bad IPv4 address (host names are not resolved; "
            "use a numeric address)");
    rejects("example.com:80",
            "bad IPv4 address (host names are not "
            "resolved; use a numeric address)");
    rejects("::1", "IPv6 address must be in brackets");
    rejects("::1:80", "IPv6 address must be in brackets");
    rejects("2001:db8::1:80", "IPv6 address must be in brackets");
    rejects("[::1]", "missing port");
    rejects("[::1]:", "missing port");
    rejects("[::1]80", "unexpected text after IPv6 address");
    rejects("[::1:80", "missing ']' after IPv6 address");
    rejects("[]:80", "bad IPv6 address");
    rejects("[1.2.3.4]:80", "bad IPv6 address");
    rejects("[fe80::1%eth0]:80", "bad IPv6 address");
    rejects("[::1]:99999", "port 99999 out of range");
    rejects("unix:", "missing unix socket path");
    rejects("unix:run/sj.sock", "unix socket path must be absolute");
    rejects("unix:/" + std::string(107, 'p'),
            "unix socket path too long (max 107 bytes)");
    rejects(std::string("unix:/a\0b", 9),
            "unix socket path contains a NUL byte");
}

void
test_format_sockaddr()
{
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(5);
    inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr);
    tap::is(sj::format_sockaddr(reinterpret_cast<sockaddr*>(&sin), sizeof sin),
            std::string("192.0.2.1:5"), "format v4");
    tap::is(sj::format_sockaddr(reinterpret_cast<sockaddr*>(&sin), 4),
            std::string("unknown"), "format v4 with a short length");

    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(65535);
    sin6.sin6_addr = in6addr_loopback;
    tap::is(sj::format_sockaddr(reinterpret_cast<sockaddr*>(&sin6),
                                sizeof sin6),
            std::string("[::1]:65535"), "format v6");

    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    tap::is(sj::format_sockaddr(reinterpret_cast<sockaddr*>(&sun),
                                sizeof(sa_family_t)),
            std::string("unix"), "format unnamed unix peer");
    std::strcpy(sun.sun_path, "/run/x.sock");
    tap::is(sj::format_sockaddr(reinterpret_cast<sockaddr*>(&sun),
                                offsetof(sockaddr_un, sun_path) + 12),
            std::string("unix:/run/x.sock"), "format bound unix peer");
    sun.sun_path[0] = '\0';
    std::memcpy(sun.sun_path + 1, "abs", 3);
    tap::is(sj::format_sockaddr(reinterpret_cast<sockaddr*>(&sun),
                                offsetof(sockaddr_un, sun_path) + 4),
            std::string("unix:@abs"), "format abstract unix peer");
    tap::is(sj::format_sockaddr(nullptr, 0), std::string("unknown"),
            "format null");
    sockaddr_storage ss{};
    ss.ss_family = AF_APPLETALK;
    tap::is(sj::format_sockaddr(reinterpret_cast<sockaddr*>(&ss), sizeof ss),
            std::string("unknown"), "format other family");
}

// ---------------------------------------------------------------- net

bool
wait_writable(int fd)
{
    pollfd p = {fd, POLLOUT, 0};
    return poll(&p, 1, 5000) == 1;
}

bool
wait_readable(int fd)
{
    pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 5000) == 1;
}

bool
is_nonblocking_cloexec(int fd)
{
    return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0 &&
           (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
}

int
int_option(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    getsockopt(fd, level, name, &v, &len);
    return v;
}

Address
loopback_any_port()
{
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    Address a;
    sj::sockaddr_to_address(reinterpret_cast<sockaddr*>(&sin), sizeof sin, &a);
    return a;
}

void
test_tcp()
{
    std::string err;
    sj::UniqueFd l = sj::listen_socket(loopback_any_port(), 16, &err);
    tap::ok(bool(l), "listen on 127.0.0.1:0");
    if (!l) {
        tap::diag(err);
        return;
    }
    tap::ok(is_nonblocking_cloexec(l.get()), "listener non-blocking, cloexec");
    tap::is(int_option(l.get(), SOL_SOCKET, SO_REUSEADDR), 1, "SO_REUSEADDR");
    Address bound;
    tap::ok(sj::local_address(l.get(), &bound) && bound.port != 0,
            "local_address gives the picked port");
    tap::is(bound.to_string().substr(0, 10), std::string("127.0.0.1:"),
            "bound address text");

    int e = -1;
    sj::UniqueFd none = sj::accept_nonblocking(l.get(), nullptr, nullptr, &e);
    tap::ok(!none && e == EAGAIN, "accept with nobody waiting: EAGAIN");

    sj::PendingConnect pc = sj::connect_nonblocking(bound, &e);
    tap::ok(bool(pc.fd) && e == 0, "connect_nonblocking");
    tap::ok(is_nonblocking_cloexec(pc.fd.get()),
            "client non-blocking, cloexec");
    tap::is(int_option(pc.fd.get(), IPPROTO_TCP, TCP_NODELAY), 1,
            "client has TCP_NODELAY");
    if (pc.in_progress)
        wait_writable(pc.fd.get());
    tap::is(sj::finish_connect(pc.fd.get()), 0, "finish_connect: success");

    wait_readable(l.get());
    sockaddr_storage peer{};
    socklen_t plen = 0;
    sj::UniqueFd s = sj::accept_nonblocking(l.get(), &peer, &plen, &e);
    tap::ok(bool(s) && e == 0, "accept_nonblocking");
    tap::ok(is_nonblocking_cloexec(s.get()), "accepted non-blocking, cloexec");
    Address client;
    sj::local_address(pc.fd.get(), &client);
    tap::is(sj::format_sockaddr(reinterpret_cast<sockaddr*>(&peer), plen),
            client.to_string(), "accepted peer address is the client's");
    tap::ok(sj::set_nodelay(s.get()) &&
                int_option(s.get(), IPPROTO_TCP, TCP_NODELAY) == 1,
            "set_nodelay");

    // A second listener on the same port fails with a message naming it.
    sj::UniqueFd l2 = sj::listen_socket(bound, 16, &err);
    tap::ok(!l2, "second bind to a used port fails");
    tap::ok(err.find(bound.to_string() + ": bind: ") == 0,
            "error names the address: " + err);

    // A refused connection shows up now or from finish_connect.
    l.reset();
    pc = sj::connect_nonblocking(bound, &e);
    if (pc.fd && pc.in_progress) {
        wait_writable(pc.fd.get());
        e = sj::finish_connect(pc.fd.get());
    }
    tap::is(e, ECONNREFUSED, "connect to a closed port: ECONNREFUSED");

    // IPv6, where the host has it.
    Address v6;
    sj::parse_address("[::1]:1", &v6, &err);
    reinterpret_cast<sockaddr_in6*>(&v6.ss)->sin6_port = 0;
    sj::UniqueFd l6 = sj::listen_socket(v6, 16, &err);
    if (!l6) {
        tap::diag("no IPv6 loopback, skipping: " + err);
        return;
    }
    tap::is(int_option(l6.get(), IPPROTO_IPV6, IPV6_V6ONLY), 1,
            "IPV6_V6ONLY on a v6 listener");
    Address b6;
    sj::local_address(l6.get(), &b6);
    sj::PendingConnect c6 = sj::connect_nonblocking(b6, &e);
    if (c6.in_progress)
        wait_writable(c6.fd.get());
    tap::ok(c6.fd && sj::finish_connect(c6.fd.get()) == 0, "connect over v6");
}

void
test_unix(const std::string& dir)
{
    std::string err;
    Address a;
    tap::ok(sj::parse_address("unix:" + dir + "/s.sock", &a, &err),
            "unix address in temp dir");
    sj::UniqueFd l = sj::listen_socket(a, 16, &err);
    tap::ok(bool(l), "listen on a unix path");
    if (!l) {
        tap::diag(err);
        return;
    }
    Address bound;
    tap::ok(sj::local_address(l.get(), &bound) && bound.path == a.path,
            "local_address of a unix listener");

    int e = -1;
    sj::PendingConnect pc = sj::connect_nonblocking(a, &e);
    tap::ok(bool(pc.fd) && e == 0, "unix connect_nonblocking");
    tap::is(sj::finish_connect(pc.fd.get()), 0, "unix finish_connect");
    wait_readable(l.get());
    sockaddr_storage peer{};
    socklen_t plen = 0;
    sj::UniqueFd s = sj::accept_nonblocking(l.get(), &peer, &plen, &e);
    tap::ok(bool(s), "unix accept");
    tap::is(sj::format_sockaddr(reinterpret_cast<sockaddr*>(&peer), plen),
            std::string("unix"), "unnamed unix peer");

    sj::PeerCred pcred;
    tap::ok(sj::peer_credentials(s.get(), &pcred), "peer_credentials");
    tap::ok(pcred.uid == getuid() && pcred.gid == getgid() &&
                pcred.pid == getpid(),
            "peer credentials are ours");
    sj::PeerCred none;
    tap::ok(!sj::peer_credentials(-1, &none), "peer_credentials of a bad fd");

    // Live: refused, and the running listener keeps its socket.
    sj::UniqueFd l2 = sj::listen_socket(a, 16, &err);
    tap::ok(!l2, "a live unix socket is not replaced");
    tap::is(err,
            a.to_string() + ": a running process is listening on this socket",
            "live socket error");
    sj::PendingConnect again = sj::connect_nonblocking(a, &e);
    tap::ok(bool(again.fd), "original listener still reachable");

    // Stale: the listener is gone, the file is left behind.
    s.reset();
    again.fd.reset();
    pc.fd.reset();
    l.reset();
    struct stat st;
    tap::ok(stat(a.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode),
            "closing leaves a stale socket file");
    sj::UniqueFd l3 = sj::listen_socket(a, 16, &err);
    tap::ok(bool(l3), "a stale unix socket is replaced");
    sj::PendingConnect c3 = sj::connect_nonblocking(a, &e);
    tap::ok(bool(c3.fd) && e == 0, "the new listener is reachable");

    // Not a socket: left alone.
    std::string file = dir + "/plain";
    std::ofstream(file) << "keep me";
    Address fa;
    sj::parse_address("unix:" + file, &fa, &err);
    sj::UniqueFd l4 = sj::listen_socket(fa, 16, &err);
    tap::ok(!l4, "a regular file is not replaced");
    tap::is(err, fa.to_string() + ": path exists and is not a socket",
            "not-a-socket error");
    tap::ok(stat(file.c_str(), &st) == 0 && S_ISREG(st.st_mode),
            "the file is still there");

    Address missing;
    sj::parse_address("unix:" + dir + "/no/such/dir.sock", &missing, &err);
    sj::UniqueFd l5 = sj::listen_socket(missing, 16, &err);
    tap::ok(!l5 && err.find("bind: No such file or directory") !=
                       std::string::npos,
            "bind error in a missing directory: " + err);

    sj::PendingConnect c5 = sj::connect_nonblocking(missing, &e);
    tap::ok(!c5.fd && e == ENOENT, "connect to a missing path: ENOENT");

    int pf[2];
    pipe(pf);
    tap::ok(sj::set_nonblocking(pf[0]) && sj::set_cloexec(pf[0]) &&
                is_nonblocking_cloexec(pf[0]),
            "set_nonblocking and set_cloexec");
    tap::ok(!sj::set_nodelay(pf[0]), "set_nodelay on a pipe fails");
    close(pf[0]);
    close(pf[1]);
    unlink(file.c_str());
    unlink(a.path.c_str());
}

// ---------------------------------------------------------------- tls

bool
make_cert(const std::string& dir, const std::string& name,
          const std::string& subj, const std::string& san)
{
    std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt "
        "ec_paramgen_curve:P-256 -nodes -days 2 -subj '" +
        subj + "'";
    if (!san.empty())
        cmd += " -addext 'subjectAltName=" + san + "'";
    cmd += " -keyout " + dir + "/" + name + ".key -out " + dir + "/" + name +
           ".crt 2>/dev/null";
    return std::system(cmd.c_str()) == 0;
}

// Drives both ends of a handshake over a non-blocking socketpair.
bool
handshake(SSL* client, SSL* server)
{
    bool cdone = false, sdone = false;
    for (int i = 0; i < 1000 && !(cdone && sdone); ++i) {
        if (!cdone) {
            int r = SSL_do_handshake(client);
            if (r == 1)
                cdone = true;
            else if (SSL_get_error(client, r) != SSL_ERROR_WANT_READ)
                return false;
        }
        if (!sdone) {
            int r = SSL_do_handshake(server);
            if (r == 1)
                sdone = true;
            else if (SSL_get_error(server, r) != SSL_ERROR_WANT_READ)
                return false;
        }
    }
    return cdone && sdone;
}

std::string
peer_cn(SSL* ssl)
{
    X509* cert = SSL_get0_peer_certificate(ssl);
    if (cert == nullptr)
        return "";
    char buf[256] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf,
                              sizeof buf);
    return buf;
}

// Connects a client (with SNI `name`) to a server made from `sctx`.
// Returns the CN the client saw, or "" if the handshake failed.
std::string
connect_tls(SSL_CTX* cctx, SSL_CTX* sctx, const std::string& name,
            SSL_CTX** chosen = nullptr)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    sj::SslPtr c(SSL_new(cctx)), s(SSL_new(sctx));
    SSL_set_fd(c.get(), sv[0]);
    SSL_set_fd(s.get(), sv[1]);
    SSL_set_connect_state(c.get());
    SSL_set_accept_state(s.get());
    if (!name.empty())
        sj::ssl_set_client_host(c.get(), name);
    std::string cn;
    if (handshake(c.get(), s.get()))
        cn = peer_cn(c.get());
    if (chosen != nullptr)
        *chosen = SSL_get_SSL_CTX(s.get());
    close(sv[0]);
    close(sv[1]);
    return cn;
}

void
test_tls(const std::string& dir)
{
    if (std::system("openssl version >/dev/null 2>&1") != 0) {
        tap::diag("no openssl command, skipping TLS tests");
        return;
    }
    bool made =
        make_cert(dir, "a", "/CN=a.example", "DNS:a.example,DNS:*.b.example") &&
        make_cert(dir, "c", "/CN=C.Example", "") &&
        make_cert(dir, "d", "/CN=default", "DNS:default.example") &&
        make_cert(dir, "dup", "/CN=dup", "DNS:A.example");
    tap::ok(made, "test certificates generated");
    if (!made)
        return;
    auto crt = [&](const char* n) { return dir + "/" + n + ".crt"; };
    auto key = [&](const char* n) { return dir + "/" + n + ".key"; };

    std::string err;
    sj::SslCtxPtr a = sj::make_server_ctx(crt("a"), key("a"), &err);
    tap::ok(a != nullptr, "make_server_ctx");
    if (!a) {
        tap::diag(err);
        return;
    }
    tap::is(SSL_CTX_get_min_proto_version(a.get()), TLS1_2_VERSION,
            "minimum TLS 1.2");
    tap::ok((SSL_CTX_get_options(a.get()) & SSL_OP_NO_RENEGOTIATION) != 0,
            "renegotiation off");
    tap::ok((SSL_CTX_get_options(a.get()) & SSL_OP_NO_TICKET) == 0,
            "session tickets on");
    tap::is(SSL_CTX_get_session_cache_mode(a.get()),
            long(SSL_SESS_CACHE_SERVER), "server session cache");
    tap::ok((SSL_CTX_get_mode(a.get()) & SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER) !=
                0,
            "moving write buffer allowed");

    err.clear();
    sj::SslCtxPtr bad = sj::make_server_ctx(crt("a"), key("c"), &err);
    tap::ok(bad == nullptr, "mismatched key refused");
    tap::is(err,
            key("c") + ": private key does not match the certificate in " +
                crt("a"),
            "mismatch error names the key file");
    tap::ok(ERR_peek_error() == 0, "error queue left clean");

    bad = sj::make_server_ctx(dir + "/none.crt", key("a"), &err);
    tap::ok(bad == nullptr && err.find(dir + "/none.crt: ") == 0,
            "missing certificate names the file: " + err);
    bad = sj::make_server_ctx(crt("a"), dir + "/none.key", &err);
    tap::ok(bad == nullptr && err.find(dir + "/none.key: ") == 0,
            "missing key names the file: " + err);
    bad = sj::make_server_ctx(key("a"), key("a"), &err);
    tap::ok(bad == nullptr && err.find(key("a") + ": cannot load") == 0,
            "a key given as certificate names the file: " + err);

    std::vector<std::string> names = sj::certificate_names(a.get());
    tap::ok(names == std::vector<std::string>{"a.example", "*.b.example"},
            "names from subjectAltName");
    sj::SslCtxPtr c = sj::make_server_ctx(crt("c"), key("c"), &err);
    tap::ok(sj::certificate_names(c.get()) ==
                std::vector<std::string>{"c.example"},
            "CN fallback, lowercased");

    sj::SniSelector sel;
    tap::ok(sel.select("a.example") == nullptr, "empty selector selects none");
    sj::SslCtxPtr d = sj::make_server_ctx(crt("d"), key("d"), &err);
    SSL_CTX* pa = a.get();
    SSL_CTX* pc = c.get();
    SSL_CTX* pd = d.get();
    tap::ok(sel.add(std::move(d), &err) && sel.add(std::move(a), &err) &&
                sel.add(std::move(c), &err),
            "selector add");
    sj::SslCtxPtr dup = sj::make_server_ctx(crt("dup"), key("dup"), &err);
    tap::ok(!sel.add(std::move(dup), &err), "a name served twice is refused");
    tap::is(err,
            std::string("name 'a.example' is already served by another "
                        "certificate"),
            "duplicate name error");
    tap::ok(sel.default_ctx() == pd, "first added is the default");
    tap::ok(sel.select("a.example") == pa, "exact match");
    tap::ok(sel.select("A.Example.") == pa, "case and trailing dot ignored");
    tap::ok(sel.select("x.b.example") == pa, "wildcard match");
    tap::ok(sel.select("y.x.b.example") == pd, "wildcard covers one label");
    tap::ok(sel.select("b.example") == pd, "wildcard needs a label");
    tap::ok(sel.select(".b.example") == pd, "empty label is not matched");
    tap::ok(sel.select("c.example") == pc, "CN name matched");
    tap::ok(sel.select("other.example") == pd, "unknown name: default");
    tap::ok(sel.select("") == pd, "empty name: default");

    // Real handshakes: the callback switches contexts.
    sel.install();
    sj::SslCtxPtr cl = sj::make_client_ctx(false, "", &err);
    tap::ok(cl != nullptr, "make_client_ctx");
    SSL_CTX* chosen = nullptr;
    tap::is(connect_tls(cl.get(), sel.default_ctx(), "x.b.example", &chosen),
            std::string("a.example"), "SNI x.b.example gets certificate a");
    tap::ok(chosen == pa, "server switched to context a");
    tap::is(connect_tls(cl.get(), sel.default_ctx(), "c.example"),
            std::string("C.Example"), "SNI c.example gets certificate c");
    tap::is(connect_tls(cl.get(), sel.default_ctx(), "nobody.example"),
            std::string("default"), "unknown SNI gets the default");
    tap::is(connect_tls(cl.get(), sel.default_ctx(), ""),
            std::string("default"), "no SNI gets the default");

    // A verifying client: trusts a's certificate, checks the name.
    sj::SslCtxPtr vcl = sj::make_client_ctx(true, crt("a"), &err);
    tap::ok(vcl != nullptr, "verifying make_client_ctx");
    tap::is(connect_tls(vcl.get(), sel.default_ctx(), "a.example"),
            std::string("a.example"), "verified handshake");
    tap::is(connect_tls(vcl.get(), sel.default_ctx(), "nobody.example"),
            std::string(""), "untrusted certificate fails verification");
    ERR_clear_error();
    sj::SslCtxPtr nocl = sj::make_client_ctx(true, dir + "/none.pem", &err);
    tap::ok(nocl == nullptr && err.find(dir + "/none.pem: ") == 0,
            "missing CA file names the file");
}

}  // namespace

// IpAcl: the networks balancerd trusts and cached lets PURGE.
void
test_ip_acl()
{
    sj::IpAcl acl;
    tap::ok(acl.add("127.0.0.1") && acl.add("10.0.0.0/8") &&
                acl.add("192.0.2.128/25") && acl.add("2001:db8::/32"),
            "acl: addresses and networks accepted");
    tap::ok(!acl.add("10.0.0.0/33") && !acl.add("::/129") &&
                !acl.add("10.0.0.0/") && !acl.add("10.0.0.0/x") &&
                !acl.add("example.com") && !acl.add(""),
            "acl: malformed entries refused");
    tap::ok(acl.matches("127.0.0.1") && !acl.matches("127.0.0.2"),
            "acl: a single address is a /32");
    tap::ok(acl.matches("10.255.1.2") && !acl.matches("11.0.0.1"), "acl: /8");
    tap::ok(acl.matches("192.0.2.200") && !acl.matches("192.0.2.127"),
            "acl: /25 splits inside a byte");
    tap::ok(acl.matches("2001:db8:1::5") && !acl.matches("2001:db9::1"),
            "acl: IPv6 /32");
    tap::ok(!acl.matches("::ffff:127.0.0.1") && !acl.matches("unix") &&
                !acl.matches(""),
            "acl: other families and non-addresses match nothing");
    tap::ok(!acl.allows_unix(), "acl: unix not allowed unless listed");
    acl.add("unix");
    tap::ok(acl.allows_unix(), "acl: unix allowed once listed");
    sj::IpAcl all;
    all.add("0.0.0.0/0");
    tap::ok(all.matches("203.0.113.9") && !all.matches("::1"),
            "acl: /0 matches every address of its family");
}

int
main()
{
    test_parse();
    test_format_sockaddr();
    test_ip_acl();

    char tmpl[] = "/tmp/sj-address-test.XXXXXX";
    const char* dir = mkdtemp(tmpl);
    if (dir == nullptr) {
        tap::ok(false, "mkdtemp");
        return tap::done_testing();
    }
    test_tcp();
    test_unix(dir);
    test_tls(dir);
    std::system(("rm -rf '" + std::string(dir) + "'").c_str());
    return tap::done_testing();
}
