#include "common/control_server.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>

#include "common/check.h"
#include "common/log.h"

namespace sj {

namespace {

// A control socket serves a handful of operators and heartbeatd; more than
// this many at once is a leak or an attack, and each one costs buffers.
constexpr size_t kMaxConns = 64;
// A client that sends nothing for this long is closed (DESIGN.md, "a
// timeout on every wait").
constexpr double kIdleTimeout = 60.0;
// Stop reading a client's commands while this much of its output is still
// unwritten, so a client that pipelines commands without reading the
// replies cannot make us buffer without bound.
constexpr size_t kOutHigh = 64 * 1024;
constexpr size_t kReadChunk = 4096;
constexpr int kListenBacklog = 16;
constexpr double kAcceptRetry = 1.0;
// The longest request echoed back in a 404, so the reply stays a line.
constexpr size_t kEchoMax = 64;

std::string
join_words(const std::vector<std::string>& words, size_t n)
{
    std::string out;
    for (size_t i = 0; i < n && i < words.size(); ++i) {
        if (i)
            out += ' ';
        out += words[i];
    }
    return out;
}

bool
fill_sockaddr(const std::string& path, struct sockaddr_un* sa) noexcept
{
    std::memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof sa->sun_path)
        return false;
    std::memcpy(sa->sun_path, path.data(), path.size());
    return true;
}

}  // namespace

// A client connection. States: reading commands; then, once the peer has
// shut its side (eof) or sent an over-long line (closing), no more reading
// and the connection is freed as soon as `out` is written. Invariant: rw is
// active only while !eof && !closing && the unwritten output is below
// kOutHigh; ww is active only while output is unwritten and the socket said
// EAGAIN.
struct ControlServer::Conn {
    ControlServer* server;
    UniqueFd fd;
    ControlPeer peer;
    ev_io rw{};
    ev_io ww{};
    ev_timer idle{};
    std::string in;        // bytes read, not yet a whole line
    std::string out;       // framed replies not yet written
    size_t out_off = 0;    // how much of `out` is written
    bool eof = false;      // the peer shut its side; finish and close
    bool closing = false;  // close once `out` is written
    bool dead = false;     // dropped while its own handler was running

    Conn(ControlServer* s, int f) noexcept : server(s), fd(f) {}
    ~Conn() { stop_watchers(); }
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;

    size_t pending() const noexcept { return out.size() - out_off; }

    void stop_watchers() noexcept
    {
        ev_io_stop(server->loop_, &rw);
        ev_io_stop(server->loop_, &ww);
        ev_timer_stop(server->loop_, &idle);
    }

    void queue(ControlReply reply) noexcept;
    bool flush() noexcept;
    void serve() noexcept;
    void finish_dead(const ControlReply& reply) noexcept;

    static void on_read(struct ev_loop*, ev_io* w, int) noexcept;
    static void on_write(struct ev_loop*, ev_io* w, int) noexcept;
    static void on_idle(struct ev_loop*, ev_timer* w, int) noexcept;
};

// Frames `reply` into `out`. A reply the header cannot carry becomes a 500,
// since the alternative is a CHECK that kills the daemon over one command.
void
ControlServer::Conn::queue(ControlReply reply) noexcept
{
    if (reply.status < 100 || reply.status > 999) {
        log_error("control %s: handler returned status %d",
                  server->path_.c_str(), reply.status);
        reply = {static_cast<int>(ControlStatus::kFailed),
                 "bad status from handler"};
    } else if (reply.body.size() +
                   (reply.body.empty() || reply.body.back() == '\n' ? 0 : 1) >
               kControlMaxBody) {
        log_error("control %s: reply of %zu bytes is too large",
                  server->path_.c_str(), reply.body.size());
        reply = {static_cast<int>(ControlStatus::kFailed), "reply too large"};
    }
    try {
        if (out_off > 0 && out_off == out.size()) {
            out.clear();
            out_off = 0;
        }
        out += control_format_reply(reply);
    } catch (const std::exception&) {
        // Out of memory: give up on this client rather than on the daemon.
        closing = true;
        out.clear();
        out_off = 0;
    }
}

// Writes what it can. Returns false if the connection was freed (written
// out and closing, or a write error); the caller must not touch it then.
bool
ControlServer::Conn::flush() noexcept
{
    while (out_off < out.size()) {
        // MSG_NOSIGNAL: a client that hangs up early must cost us a closed
        // connection, not a SIGPIPE.
        ssize_t k = ::send(fd.get(), out.data() + out_off, out.size() - out_off,
                           MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                ev_io_start(server->loop_, &ww);
                return true;
            }
            log_debug("control %s: write to pid %d: %s", server->path_.c_str(),
                      static_cast<int>(peer.pid), std::strerror(errno));
            server->drop(this);
            return false;
        }
        out_off += static_cast<size_t>(k);
        ev_timer_again(server->loop_, &idle);
    }
    out.clear();
    out_off = 0;
    ev_io_stop(server->loop_, &ww);
    if (closing) {
        server->drop(this);
        return false;
    }
    return true;
}

// The handler closed the server under us: send its reply if the socket
// takes it at once, then free the connection. Frees `this`.
void
ControlServer::Conn::finish_dead(const ControlReply& reply) noexcept
{
    queue(reply);
    while (out_off < out.size()) {
        ssize_t k = ::send(fd.get(), out.data() + out_off, out.size() - out_off,
                           MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        out_off += static_cast<size_t>(k);
    }
    server->conns_.erase(this);
}

// Runs every whole line in `in` (in order, so pipelined commands are
// answered in order), then writes. May free `this`.
void
ControlServer::Conn::serve() noexcept
{
    while (!closing && pending() < kOutHigh) {
        size_t nl = in.find('\n');
        std::string line;
        if (nl == std::string::npos) {
            // +1: the line's limit does not count a trailing \r.
            if (in.size() > kControlMaxLine + 1) {
                nl = in.size();
            } else if (eof && !in.empty()) {
                // A last command without a newline ("echo -n ping | socat")
                // is still a command.
                line = std::move(in);
                in.clear();
            } else {
                break;
            }
        }
        if (nl != std::string::npos) {
            line.assign(in, 0, nl);
            in.erase(0, nl < in.size() ? nl + 1 : nl);
        }
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (line.size() > kControlMaxLine) {
            log_info("control %s: line too long from pid %d",
                     server->path_.c_str(), static_cast<int>(peer.pid));
            queue({static_cast<int>(ControlStatus::kBadRequest),
                   "line too long"});
            closing = true;
            in.clear();
            break;
        }
        if (line.find_first_not_of(" \t") == std::string::npos)
            continue;

        ControlReply reply;
        server->busy_ = this;
        // No exception may cross the event loop: dispatch() already turns a
        // handler's exception into a 500; this catches what is left
        // (bad_alloc while splitting).
        try {
            reply = server->dispatch(line, peer);
        } catch (const std::exception& e) {
            reply = {static_cast<int>(ControlStatus::kFailed), e.what()};
        }
        server->busy_ = nullptr;
        if (dead) {
            finish_dead(reply);
            return;
        }
        queue(std::move(reply));
    }
    if (eof && in.empty())
        closing = true;
    if (!flush())
        return;
    if (!eof && !closing && pending() < kOutHigh)
        ev_io_start(server->loop_, &rw);
    else
        ev_io_stop(server->loop_, &rw);
}

void
ControlServer::Conn::on_read(struct ev_loop*, ev_io* w, int) noexcept
{
    auto* c = static_cast<Conn*>(w->data);
    char buf[kReadChunk];
    ssize_t k = ::read(c->fd.get(), buf, sizeof buf);
    if (k < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        log_debug("control %s: read from pid %d: %s", c->server->path_.c_str(),
                  static_cast<int>(c->peer.pid), std::strerror(errno));
        c->server->drop(c);
        return;
    }
    if (k == 0) {
        c->eof = true;
    } else {
        ev_timer_again(c->server->loop_, &c->idle);
        try {
            c->in.append(buf, static_cast<size_t>(k));
        } catch (const std::exception&) {
            c->server->drop(c);
            return;
        }
    }
    c->serve();
}

void
ControlServer::Conn::on_write(struct ev_loop*, ev_io* w, int) noexcept
{
    auto* c = static_cast<Conn*>(w->data);
    // Draining may have lifted the back-pressure: run what is buffered.
    if (c->flush())
        c->serve();
}

void
ControlServer::Conn::on_idle(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* c = static_cast<Conn*>(w->data);
    log_debug("control %s: closing idle connection from pid %d",
              c->server->path_.c_str(), static_cast<int>(c->peer.pid));
    c->server->drop(c);
}

ControlServer::ControlServer(struct ev_loop* loop, std::string path) noexcept
    : loop_(loop), path_(std::move(path))
{
    ev_io_init(&accept_watcher_, on_accept, -1, EV_READ);
    accept_watcher_.data = this;
    ev_timer_init(&accept_retry_, on_accept_retry, kAcceptRetry, 0.);
    accept_retry_.data = this;
    // Capturing `this` is safe: the server can be neither copied nor moved.
    add("help", false,
        [this](const std::vector<std::string>&, const ControlPeer&) {
            return ControlReply{200, help()};
        });
}

ControlServer::~ControlServer()
{
    close();
}

void
ControlServer::add(const std::string& command, bool mutating, ControlHandler h)
{
    std::vector<std::string> words;
    std::string err;
    CHECK(control_split(command, &words, &err));
    CHECK(!words.empty());
    for (auto& c : commands_) {
        if (c.words == words) {
            // Re-registering replaces, so a daemon may supply its own help.
            c.mutating = mutating;
            c.handler = std::move(h);
            return;
        }
    }
    commands_.push_back({std::move(words), mutating, std::move(h)});
}

std::string
ControlServer::help() const
{
    std::string out;
    for (const auto& c : commands_) {
        out += join_words(c.words, c.words.size());
        out += '\n';
    }
    return out;
}

bool
ControlServer::open(uid_t uid, gid_t gid, long admin_gid, std::string* err)
{
    if (fd_) {
        *err = path_ + ": already open";
        return false;
    }
    struct sockaddr_un sa;
    if (!fill_sockaddr(path_, &sa)) {
        *err = path_ + ": bad socket path length";
        return false;
    }

    struct stat st;
    if (::lstat(path_.c_str(), &st) == 0) {
        // Only ever remove a socket: a typo in run_dir must not cost the
        // operator a file.
        if (!S_ISSOCK(st.st_mode)) {
            *err = path_ + ": exists and is not a socket";
            return false;
        }
        UniqueFd probe(
            ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!probe) {
            *err = "socket " + path_ + ": " + std::strerror(errno);
            return false;
        }
        // Non-blocking, so a live daemon with a full backlog (EAGAIN) is
        // recognised rather than waited for.
        int r = ::connect(probe.get(),
                          reinterpret_cast<const struct sockaddr*>(&sa),
                          sizeof sa);
        if (r == 0 || errno == EAGAIN || errno == EINPROGRESS) {
            *err = path_ + ": another process is listening";
            return false;
        }
        if (errno != ECONNREFUSED) {
            *err = "connect " + path_ + ": " + std::strerror(errno);
            return false;
        }
        // Nobody listens: the socket of a process that died.
        if (::unlink(path_.c_str()) < 0 && errno != ENOENT) {
            *err = "unlink " + path_ + ": " + std::strerror(errno);
            return false;
        }
        log_info("control %s: replaced a stale socket", path_.c_str());
    } else if (errno != ENOENT) {
        *err = "stat " + path_ + ": " + std::strerror(errno);
        return false;
    }

    UniqueFd fd(
        ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        *err = "socket " + path_ + ": " + std::strerror(errno);
        return false;
    }
    // bind() creates the file with the umask's mode; a tight umask keeps it
    // private until chmod() below, so there is no window in which others
    // may connect. The umask is per process: daemons are single-threaded.
    mode_t old_mask = ::umask(0177);
    int br = ::bind(fd.get(), reinterpret_cast<const struct sockaddr*>(&sa),
                    sizeof sa);
    int bind_errno = errno;
    ::umask(old_mask);
    if (br < 0) {
        *err = "bind " + path_ + ": " + std::strerror(bind_errno);
        return false;
    }

    auto fail = [&](const char* what) {
        *err = std::string(what) + " " + path_ + ": " + std::strerror(errno);
        ::unlink(path_.c_str());
        return false;
    };
    if (::lstat(path_.c_str(), &st) < 0)
        return fail("stat");
    if (::chmod(path_.c_str(), 0660) < 0)
        return fail("chmod");
    if ((uid != static_cast<uid_t>(-1) || gid != static_cast<gid_t>(-1)) &&
        ::lchown(path_.c_str(), uid, gid) < 0)
        return fail("chown");
    if (::listen(fd.get(), kListenBacklog) < 0)
        return fail("listen");

    sock_dev_ = st.st_dev;
    sock_ino_ = st.st_ino;
    bound_ = true;
    admin_gid_ = admin_gid;
    self_uid_ = ::geteuid();
    owner_uid_ = uid != static_cast<uid_t>(-1) ? uid : self_uid_;
    fd_ = std::move(fd);
    ev_io_set(&accept_watcher_, fd_.get(), EV_READ);
    ev_io_start(loop_, &accept_watcher_);
    return true;
}

void
ControlServer::close() noexcept
{
    ev_io_stop(loop_, &accept_watcher_);
    ev_timer_stop(loop_, &accept_retry_);
    fd_.reset();
    std::vector<Conn*> all;
    all.reserve(conns_.size());
    for (auto& [c, owner] : conns_)
        all.push_back(c);
    for (Conn* c : all)
        drop(c);
    if (bound_) {
        // Unlink only our own socket: a successor daemon may already have
        // replaced it (a stale-socket takeover), and removing its socket
        // would make it unreachable.
        struct stat st;
        if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == sock_dev_ &&
            st.st_ino == sock_ino_)
            ::unlink(path_.c_str());
        bound_ = false;
    }
}

void
ControlServer::on_accept(struct ev_loop*, ev_io* w, int) noexcept
{
    static_cast<ControlServer*>(w->data)->accept_clients();
}

void
ControlServer::on_accept_retry(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* s = static_cast<ControlServer*>(w->data);
    if (s->fd_)
        ev_io_start(s->loop_, &s->accept_watcher_);
}

void
ControlServer::accept_clients() noexcept
{
    for (;;) {
        UniqueFd cfd(::accept4(fd_.get(), nullptr, nullptr,
                               SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!cfd) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN)
                return;
            log_error("control %s: accept: %s", path_.c_str(),
                      std::strerror(errno));
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                ev_io_stop(loop_, &accept_watcher_);
                ev_timer_set(&accept_retry_, kAcceptRetry, 0.);
                ev_timer_start(loop_, &accept_retry_);
            }
            return;
        }
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (::getsockopt(cfd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
            log_warn("control %s: SO_PEERCRED: %s", path_.c_str(),
                     std::strerror(errno));
            continue;
        }
        if (conns_.size() >= kMaxConns) {
            log_warn(
                "control %s: refusing uid %u pid %d: %zu connections "
                "open",
                path_.c_str(), static_cast<unsigned>(cred.uid),
                static_cast<int>(cred.pid), conns_.size());
            continue;
        }
        try {
            auto owner = std::make_unique<Conn>(this, cfd.release());
            Conn* c = owner.get();
            c->peer.pid = cred.pid;
            c->peer.uid = cred.uid;
            c->peer.gid = cred.gid;
            c->peer.admin = is_admin(cred.uid, cred.gid);
            ev_io_init(&c->rw, Conn::on_read, c->fd.get(), EV_READ);
            ev_io_init(&c->ww, Conn::on_write, c->fd.get(), EV_WRITE);
            ev_init(&c->idle, Conn::on_idle);
            c->idle.repeat = kIdleTimeout;
            c->rw.data = c->ww.data = c->idle.data = c;
            conns_.emplace(c, std::move(owner));
            ev_io_start(loop_, &c->rw);
            ev_timer_again(loop_, &c->idle);
        } catch (const std::exception& e) {
            log_error("control %s: accept: %s", path_.c_str(), e.what());
        }
    }
}

// Root, the daemon's own uid, the socket's owner and members of the admin group
// may change things. The group check uses the peer's account (getgrouplist)
// plus the primary gid SO_PEERCRED reports; it runs once per connection and may
// consult NSS, which is acceptable for an operator's socket.
bool
ControlServer::is_admin(uid_t uid, gid_t gid) const noexcept
{
    if (uid == 0 || uid == self_uid_ || uid == owner_uid_)
        return true;
    if (admin_gid_ < 0)
        return false;
    auto admin = static_cast<gid_t>(admin_gid_);
    if (gid == admin)
        return true;
    try {
        long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
        std::vector<char> buf(size > 0 ? static_cast<size_t>(size) : 16384);
        struct passwd pw;
        struct passwd* found = nullptr;
        int r;
        while ((r = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found)) ==
                   ERANGE &&
               buf.size() < (1u << 20))
            buf.resize(buf.size() * 2);
        if (r != 0 || found == nullptr)
            return false;
        std::vector<gid_t> groups(64);
        for (;;) {
            int n = static_cast<int>(groups.size());
            if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) >= 0) {
                groups.resize(static_cast<size_t>(n));
                break;
            }
            if (n <= static_cast<int>(groups.size()) || n > 65536)
                return false;
            groups.resize(static_cast<size_t>(n));
        }
        return std::find(groups.begin(), groups.end(), admin) != groups.end();
    } catch (const std::exception&) {
        return false;
    }
}

void
ControlServer::drop(Conn* c) noexcept
{
    c->stop_watchers();
    if (c == busy_) {
        c->dead = true;
        return;
    }
    conns_.erase(c);
}

ControlReply
ControlServer::dispatch(const std::string& line, const ControlPeer& peer)
{
    std::vector<std::string> words;
    std::string err;
    if (!control_split(line, &words, &err))
        return {static_cast<int>(ControlStatus::kBadRequest), err};

    const Command* best = nullptr;
    for (const auto& c : commands_) {
        if (c.words.size() > words.size())
            continue;
        if (best && best->words.size() >= c.words.size())
            continue;
        if (std::equal(c.words.begin(), c.words.end(), words.begin()))
            best = &c;
    }
    if (!best) {
        std::string what = join_words(words, words.size());
        if (what.size() > kEchoMax)
            what = what.substr(0, kEchoMax) + "...";
        return {static_cast<int>(ControlStatus::kUnknown),
                "unknown command '" + what + "'; try help"};
    }
    std::string name = join_words(best->words, best->words.size());
    if (best->mutating && !peer.admin) {
        log_warn(
            "control %s: refused '%s' from uid %u pid %d: needs root or "
            "the admin group",
            path_.c_str(), name.c_str(), static_cast<unsigned>(peer.uid),
            static_cast<int>(peer.pid));
        return {static_cast<int>(ControlStatus::kForbidden),
                "permission denied: '" + name +
                    "' needs root or the admin group"};
    }
    std::vector<std::string> args(
        words.begin() + static_cast<std::ptrdiff_t>(best->words.size()),
        words.end());
    // A handler runs inside a libev callback: its exception must stop here
    // and become a 500, never unwind through the loop.
    try {
        return best->handler(args, peer);
    } catch (const std::exception& e) {
        log_error("control %s: '%s' failed: %s", path_.c_str(), name.c_str(),
                  e.what());
        return {static_cast<int>(ControlStatus::kFailed), e.what()};
    } catch (...) {
        log_error("control %s: '%s' failed", path_.c_str(), name.c_str());
        return {static_cast<int>(ControlStatus::kFailed), "internal error"};
    }
}

void
ControlServer::abandon() noexcept
{
    bound_ = false;
    close();
}

}  // namespace sj
