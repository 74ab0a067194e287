#include "cached/mc_tier.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <utility>
#include <vector>

#include "cached/mc_proto.h"
#include "common/address.h"
#include "common/buffer.h"
#include "common/check.h"
#include "common/log.h"
#include "common/net.h"
#include "common/unique_fd.h"

namespace sj {

namespace {

using GetDone = std::function<void(bool found, std::string_view value)>;

// Points per server of average weight on the ring (ketama uses 160).
constexpr uint32_t kPointsPerServer = 160;
// Requests waiting for replies on one connection; beyond, a get is a miss
// and a set is dropped, rather than a queue that grows without bound.
constexpr size_t kMaxPending = 4096;
// Bytes of requests waiting to be written to one server, besides the
// largest single set.
constexpr size_t kOutSlack = 4u << 20;
// An emptied buffer bigger than this gives its memory back, so one large
// object does not pin a megabyte per server for the worker's life.
constexpr size_t kKeepCapacity = 256u << 10;

struct Pending {
    mc::Op op;
    ev_tstamp deadline;
    std::string mc_key;     // kGet: to check the reply's key
    std::string cache_key;  // kGet: to check the stored header
    GetDone done;           // kGet
};

}  // namespace

struct McTier::Impl {
    struct Server;

    struct ev_loop* loop;
    McTierOptions opts;
    McTierStats* stats;
    std::string pool_name;
    std::vector<std::unique_ptr<Server>> servers;
    // (point, index into servers), sorted by point.
    std::vector<std::pair<uint32_t, uint32_t>> ring;
    // Gets answered without a server, called from the loop, not from get().
    std::vector<GetDone> deferred;
    ev_timer defer_timer{};
    // Cleared by the destructor; a callback may destroy the tier, so code
    // that goes on after calling one checks a copy of this first.
    std::shared_ptr<bool> alive = std::make_shared<bool>(true);
    size_t max_data = 0;  // the largest item data we accept in a reply

    Impl(struct ev_loop* l, const PoolConfig& pool, const McTierOptions& o,
         McTierStats* s);
    ~Impl();

    // The clock, not the loop's cached time: a caller late in a long loop
    // iteration must still get its whole timeout.
    ev_tstamp deadline() const { return ev_time() + opts.timeout; }
    Server* pick(uint32_t point);
    bool usable(const Server* s, ev_tstamp now) const;
    bool ensure_connected(Server* s);
    void enqueue(Server* s, Pending p);
    void defer_miss(GetDone done);
    void answer(Server* s, Pending& p, bool found, std::string_view value);
    void close_conn(Server* s, std::deque<Pending>* orphans);
    void fail_server(Server* s, const char* why, bool timed_out);
    void fail_all(Server* s, std::deque<Pending>* orphans);
    void process(Server* s);

    static void on_read(struct ev_loop*, ev_io* w, int) noexcept;
    static void on_write(struct ev_loop*, ev_io* w, int) noexcept;
    static void on_timer(struct ev_loop*, ev_timer* w, int) noexcept;
    static void on_defer(struct ev_loop*, ev_timer* w, int) noexcept;
};

// One memcached server and its connection.
//
// States: idle (no fd, nothing pending), connecting (fd, `connecting`,
// requests queued in `out`), connected. Invariants: `pending` is empty
// whenever there is no fd; the timer runs while `pending` is not empty; the
// read watcher runs while there is an fd, so a close by the server is
// noticed even when idle; `skip` or `skip_trailer` are set only while the
// front pending request is the get whose oversized value is being dropped.
struct McTier::Impl::Server {
    Impl* tier = nullptr;
    std::string name;
    Address address;
    std::string address_text;
    int weight = 0;

    bool health_up = true;       // heartbeatd's word
    ev_tstamp failed_until = 0;  // skipped until then after a failure
    // Failed and not answered since: the failure was logged, retries that
    // fail again are not, so a dead node costs one warning, not one a
    // second per worker.
    bool failing = false;

    UniqueFd fd;
    bool connecting = false;
    uint64_t generation = 0;  // bumped whenever the connection is closed
    ev_io rio{}, wio{};
    ev_timer timer{};
    Buffer in, out;
    std::deque<Pending> pending;
    uint64_t skip = 0;
    bool skip_trailer = false;

    uint64_t gets = 0, hits = 0, misses = 0, sets = 0, deletes = 0, errors = 0,
             timeouts = 0;

    Server(size_t in_limit, size_t out_limit) : in(in_limit), out(out_limit) {}
};

McTier::Impl::Impl(struct ev_loop* l, const PoolConfig& pool,
                   const McTierOptions& o, McTierStats* s)
    : loop(l), opts(o), stats(s), pool_name(pool.name)
{
    max_data = opts.max_object + 4 + mc::kMaxCacheKey;
    size_t in_limit = max_data + mc::kMaxLine + mc::kSkipTrailer.size();
    size_t out_limit = kOutSlack + max_data + 2 * mc::kMaxLine;
    uint64_t total_weight = 0;
    for (const NodeConfig& n : pool.nodes) {
        auto srv = std::make_unique<Server>(in_limit, out_limit);
        srv->tier = this;
        srv->name = n.name;
        srv->address = n.address;
        srv->address_text = n.address_text.empty() ? n.address.to_string()
                                                   : n.address_text;
        srv->weight = std::max(n.weight, 0);
        total_weight += static_cast<uint64_t>(srv->weight);
        ev_io_init(&srv->rio, on_read, -1, EV_READ);
        ev_io_init(&srv->wio, on_write, -1, EV_WRITE);
        ev_timer_init(&srv->timer, on_timer, 0., 0.);
        srv->rio.data = srv->wio.data = srv->timer.data = srv.get();
        servers.push_back(std::move(srv));
    }
    // Weighted ketama: each server gets points in proportion to its weight,
    // kPointsPerServer for the average one. Points depend on the name, not
    // the address, so moving a node keeps its keys.
    for (uint32_t i = 0; i < servers.size(); ++i) {
        const Server& srv = *servers[i];
        if (srv.weight == 0)
            continue;
        uint64_t points = kPointsPerServer * static_cast<uint64_t>(srv.weight) *
                          servers.size() / total_weight;
        points = std::max<uint64_t>(points, 1);
        for (uint32_t p = 0; p < points; ++p)
            ring.emplace_back(mc::ring_point(srv.name, p), i);
    }
    std::sort(ring.begin(), ring.end());
    ev_timer_init(&defer_timer, on_defer, 0., 0.);
    defer_timer.data = this;
}

McTier::Impl::~Impl()
{
    *alive = false;
    ev_timer_stop(loop, &defer_timer);
    for (auto& s : servers) {
        ev_io_stop(loop, &s->rio);
        ev_io_stop(loop, &s->wio);
        ev_timer_stop(loop, &s->timer);
    }
}

bool
McTier::Impl::usable(const Server* s, ev_tstamp now) const
{
    return s->health_up && now >= s->failed_until;
}

McTier::Impl::Server*
McTier::Impl::pick(uint32_t point)
{
    if (ring.empty())
        return nullptr;
    ev_tstamp now = ev_now(loop);
    auto it = std::lower_bound(ring.begin(), ring.end(),
                               std::make_pair(point, uint32_t{0}));
    size_t start = static_cast<size_t>(it - ring.begin());
    // Walking on past the points of servers that are not up gives each of
    // their keys to the next server on the ring: only their share moves.
    for (size_t k = 0; k < ring.size(); ++k) {
        Server* s = servers[ring[(start + k) % ring.size()].second].get();
        if (!usable(s, now))
            continue;
        if (ensure_connected(s))
            return s;
    }
    return nullptr;
}

bool
McTier::Impl::ensure_connected(Server* s)
{
    if (s->fd)
        return true;
    int err = 0;
    PendingConnect pc = connect_nonblocking(s->address, &err);
    if (!pc.fd) {
        // Failing here calls no callback: nothing is pending on an idle
        // server.
        fail_server(s, strerror(err), false);
        return false;
    }
    s->fd = std::move(pc.fd);
    s->connecting = pc.in_progress;
    ev_io_set(&s->rio, s->fd.get(), EV_READ);
    ev_io_set(&s->wio, s->fd.get(), EV_WRITE);
    ev_io_start(loop, &s->rio);
    if (s->connecting)
        ev_io_start(loop, &s->wio);
    return true;
}

void
McTier::Impl::enqueue(Server* s, Pending p)
{
    // A timer still running from an earlier request fires no later than
    // this one's deadline and then re-arms itself for the oldest request.
    if (!ev_is_active(&s->timer)) {
        ev_timer_set(&s->timer, std::max(p.deadline - ev_now(loop), 0.), 0.);
        ev_timer_start(loop, &s->timer);
    }
    s->pending.push_back(std::move(p));
    // Written from the loop, never from here: an error writing would fail
    // the server's pending gets, calling back into a caller that is still
    // inside get() or set().
    if (!s->out.empty())
        ev_io_start(loop, &s->wio);
}

void
McTier::Impl::defer_miss(GetDone done)
{
    deferred.push_back(std::move(done));
    if (!ev_is_active(&defer_timer)) {
        ev_timer_set(&defer_timer, 0., 0.);
        ev_timer_start(loop, &defer_timer);
    }
}

void
McTier::Impl::answer(Server* s, Pending& p, bool found, std::string_view value)
{
    if (p.op != mc::Op::kGet)
        return;
    ++(found ? stats->hits : stats->misses);
    if (s)
        ++(found ? s->hits : s->misses);
    GetDone done = std::move(p.done);
    if (done)
        done(found, value);
}

void
McTier::Impl::close_conn(Server* s, std::deque<Pending>* orphans)
{
    ev_io_stop(loop, &s->rio);
    ev_io_stop(loop, &s->wio);
    ev_timer_stop(loop, &s->timer);
    s->fd.reset();
    s->connecting = false;
    ++s->generation;
    s->in.clear();
    s->out.clear();
    s->in.release_memory();
    s->out.release_memory();
    s->skip = 0;
    s->skip_trailer = false;
    for (Pending& p : s->pending)
        orphans->push_back(std::move(p));
    s->pending.clear();
}

void
McTier::Impl::fail_all(Server* s, std::deque<Pending>* orphans)
{
    // The state is consistent before the first callback runs: a callback
    // that asks for another key sees this server failed and skips it.
    auto token = alive;
    while (!orphans->empty()) {
        Pending p = std::move(orphans->front());
        orphans->pop_front();
        answer(s, p, false, {});
        if (!*token)
            return;  // the tier was destroyed; drop the rest silently
    }
}

void
McTier::Impl::fail_server(Server* s, const char* why, bool timed_out)
{
    ev_tstamp now = ev_now(loop);
    log_msg(s->failing ? LogLevel::kDebug : LogLevel::kWarn,
            "%s/%s: %s (%s), skipped for %.1fs", pool_name.c_str(),
            s->name.c_str(), timed_out ? "timed out" : "failed", why,
            opts.retry_after);
    s->failing = true;
    s->failed_until = now + opts.retry_after;
    ++(timed_out ? stats->timeouts : stats->errors);
    ++(timed_out ? s->timeouts : s->errors);
    std::deque<Pending> orphans;
    close_conn(s, &orphans);
    fail_all(s, &orphans);
}

void
McTier::Impl::process(Server* s)
{
    auto token = alive;
    uint64_t gen = s->generation;
    for (;;) {
        if (s->skip > 0) {
            size_t n = static_cast<size_t>(
                std::min<uint64_t>(s->skip, s->in.size()));
            s->in.consume(n);
            s->skip -= n;
            if (s->skip > 0)
                return;
            s->skip_trailer = true;
        }
        if (s->skip_trailer) {
            if (s->in.size() < mc::kSkipTrailer.size())
                return;
            if (s->in.view().substr(0, mc::kSkipTrailer.size()) !=
                mc::kSkipTrailer) {
                fail_server(s, "malformed reply", false);
                return;
            }
            s->in.consume(mc::kSkipTrailer.size());
            s->skip_trailer = false;
            Pending p = std::move(s->pending.front());
            s->pending.pop_front();
            answer(s, p, false, {});
            if (!*token || s->generation != gen)
                return;
            continue;
        }
        if (s->in.empty())
            break;
        if (s->pending.empty()) {
            fail_server(s, "unexpected data", false);
            return;
        }
        Pending& front = s->pending.front();
        mc::Reply r;
        mc::ReplyStatus st =
            mc::parse_reply(s->in.view(), front.op, front.mc_key, max_data, &r);
        switch (st) {
        case mc::ReplyStatus::kNeedMore: return;
        case mc::ReplyStatus::kBad:
            fail_server(s, "malformed reply", false);
            return;
        case mc::ReplyStatus::kSkip:
            s->in.consume(r.consumed);
            s->skip = r.skip;
            continue;
        case mc::ReplyStatus::kServerError:
            log_info("%s/%s: SERVER_ERROR %.*s", pool_name.c_str(),
                     s->name.c_str(), static_cast<int>(r.error.size()),
                     r.error.data());
            ++stats->errors;
            ++s->errors;
            break;
        case mc::ReplyStatus::kMiss:
        case mc::ReplyStatus::kHit:
        case mc::ReplyStatus::kOk: break;
        }
        if (s->failing) {
            log_notice("%s/%s: answering again", pool_name.c_str(),
                       s->name.c_str());
            s->failing = false;
        }
        Pending p = std::move(front);
        s->pending.pop_front();
        std::string_view value;
        bool found = st == mc::ReplyStatus::kHit &&
                     mc::decode_value(r.flags, r.data, p.cache_key, &value);
        // The value is a view into `in`, so the bytes are consumed only
        // after the callback; a callback cannot read from this connection.
        answer(s, p, found, value);
        if (!*token || s->generation != gen)
            return;
        s->in.consume(r.consumed);
    }
    if (s->pending.empty())
        ev_timer_stop(loop, &s->timer);
    if (s->in.capacity() > kKeepCapacity)
        s->in.release_memory();
}

void
McTier::Impl::on_read(struct ev_loop*, ev_io* w, int) noexcept
{
    auto* s = static_cast<Server*>(w->data);
    Impl* t = s->tier;
    ssize_t n = s->in.read_from(s->fd.get());
    if (n == -EAGAIN)
        return;
    if (n == 0 && s->pending.empty() && !s->connecting && s->in.empty()) {
        // An idle connection the server closed (a restart, an idle
        // timeout): not a failure; the next request reconnects.
        std::deque<Pending> none;
        t->close_conn(s, &none);
        return;
    }
    if (n <= 0) {
        t->fail_server(s, n == 0 ? "connection closed" : strerror(int(-n)),
                       false);
        return;
    }
    t->process(s);
}

void
McTier::Impl::on_write(struct ev_loop*, ev_io* w, int) noexcept
{
    auto* s = static_cast<Server*>(w->data);
    Impl* t = s->tier;
    if (s->connecting) {
        int err = finish_connect(s->fd.get());
        if (err != 0) {
            t->fail_server(s, strerror(err), false);
            return;
        }
        s->connecting = false;
    }
    while (!s->out.empty()) {
        ssize_t n = s->out.write_to(s->fd.get());
        if (n == -EAGAIN)
            return;
        if (n < 0) {
            t->fail_server(s, strerror(int(-n)), false);
            return;
        }
    }
    ev_io_stop(t->loop, &s->wio);
    if (s->out.capacity() > kKeepCapacity)
        s->out.release_memory();
}

void
McTier::Impl::on_timer(struct ev_loop* loop, ev_timer* w, int) noexcept
{
    auto* s = static_cast<Server*>(w->data);
    if (s->pending.empty())
        return;
    // One timer per connection, set for the oldest request: replies come in
    // order, so no later request can be answered before it.
    ev_tstamp left = s->pending.front().deadline - ev_now(loop);
    if (left > 1e-4) {
        ev_timer_set(w, left, 0.);
        ev_timer_start(loop, w);
        return;
    }
    s->tier->fail_server(s, s->connecting ? "connect" : "no reply", true);
}

void
McTier::Impl::on_defer(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* t = static_cast<Impl*>(w->data);
    auto token = t->alive;
    std::vector<GetDone> batch;
    batch.swap(t->deferred);
    for (size_t i = 0; i < batch.size(); ++i) {
        ++t->stats->misses;
        batch[i](false, {});
        if (!*token)
            return;
    }
}

// ---------------------------------------------------------------- McTier

McTier::McTier(struct ev_loop* loop, const PoolConfig& pool,
               const McTierOptions& opts)
    : impl_(std::make_unique<Impl>(loop, pool, opts, &stats_))
{}

McTier::~McTier() = default;

void
McTier::get(std::string_view key, GetDone done)
{
    Impl* t = impl_.get();
    ++stats_.gets;
    if (key.size() > mc::kMaxCacheKey) {
        t->defer_miss(std::move(done));
        return;
    }
    mc::HashedKey h = mc::hash_key(key);
    Impl::Server* s = t->pick(h.point);
    if (!s) {
        ++stats_.skipped;
        t->defer_miss(std::move(done));
        return;
    }
    ++s->gets;
    if (s->pending.size() >= kMaxPending ||
        s->out.room() < 6 + h.mc_key.size()) {
        ++stats_.dropped;
        ++s->misses;
        t->defer_miss(std::move(done));
        return;
    }
    s->out.append("get ");
    s->out.append(h.mc_key);
    s->out.append("\r\n");
    t->enqueue(s, Pending{mc::Op::kGet, t->deadline(), std::move(h.mc_key),
                          std::string(key), std::move(done)});
}

void
McTier::set(std::string_view key, std::string_view value, uint32_t ttl)
{
    Impl* t = impl_.get();
    if (key.size() > mc::kMaxCacheKey || value.size() > t->opts.max_object) {
        ++stats_.dropped;
        return;
    }
    mc::HashedKey h = mc::hash_key(key);
    Impl::Server* s = t->pick(h.point);
    if (!s) {
        ++stats_.skipped;
        return;
    }
    std::string header = mc::value_header(key);
    char line[mc::kMaxLine];
    int n = std::snprintf(line, sizeof line, "set %s %u %u %zu\r\n",
                          h.mc_key.c_str(), unsigned{mc::kFlags},
                          unsigned{mc::exptime(ttl, ::time(nullptr))},
                          header.size() + value.size());
    CHECK(n > 0 && static_cast<size_t>(n) < sizeof line);
    size_t need = static_cast<size_t>(n) + header.size() + value.size() + 2;
    if (s->pending.size() >= kMaxPending || s->out.room() < need) {
        ++stats_.dropped;
        return;
    }
    s->out.append(line, static_cast<size_t>(n));
    s->out.append(header);
    s->out.append(value);
    s->out.append("\r\n");
    ++stats_.sets;
    ++s->sets;
    t->enqueue(s, Pending{mc::Op::kSet, t->deadline(), {}, {}, {}});
}

void
McTier::remove(std::string_view key)
{
    Impl* t = impl_.get();
    if (key.size() > mc::kMaxCacheKey)
        return;
    mc::HashedKey h = mc::hash_key(key);
    ev_tstamp now = ev_now(t->loop);
    bool sent = false;
    for (auto& up : t->servers) {
        Impl::Server* s = up.get();
        if (s->weight == 0 || !t->usable(s, now) || !t->ensure_connected(s))
            continue;
        size_t need = 9 + h.mc_key.size();
        if (s->pending.size() >= kMaxPending || s->out.room() < need) {
            ++stats_.dropped;
            continue;
        }
        s->out.append("delete ");
        s->out.append(h.mc_key);
        s->out.append("\r\n");
        ++s->deletes;
        sent = true;
        t->enqueue(s, Pending{mc::Op::kDelete, t->deadline(), {}, {}, {}});
    }
    if (!sent)
        ++stats_.skipped;
}

bool
McTier::set_health(const std::string& node, bool up)
{
    std::string_view name = node;
    size_t slash = name.find('/');
    if (slash != std::string_view::npos) {
        if (name.substr(0, slash) != impl_->pool_name)
            return false;
        name = name.substr(slash + 1);
    }
    for (auto& s : impl_->servers) {
        if (s->name != name)
            continue;
        if (s->health_up != up)
            log_notice("%s/%s: reported %s by heartbeatd",
                       impl_->pool_name.c_str(), s->name.c_str(),
                       up ? "up" : "down");
        s->health_up = up;
        // Up means answering now: forget a local failure, so the server
        // does not wait out retry_after once heartbeatd has seen it back.
        if (up)
            s->failed_until = 0;
        return true;
    }
    return false;
}

void
McTier::fail_pending()
{
    Impl* t = impl_.get();
    auto token = t->alive;
    for (auto& s : t->servers) {
        std::deque<Pending> orphans;
        t->close_conn(s.get(), &orphans);
        t->fail_all(s.get(), &orphans);
        if (!*token)
            return;
    }
    std::deque<Pending> orphans;
    for (GetDone& d : t->deferred)
        orphans.push_back(Pending{mc::Op::kGet, 0., {}, {}, std::move(d)});
    t->deferred.clear();
    t->fail_all(nullptr, &orphans);
}

std::string
McTier::describe() const
{
    const Impl* t = impl_.get();
    ev_tstamp now = ev_now(t->loop);
    std::string out;
    for (const auto& s : t->servers) {
        char state[64];
        if (!s->health_up)
            std::snprintf(state, sizeof state, "down (heartbeatd)");
        else if (now < s->failed_until)
            std::snprintf(state, sizeof state, "failed, retry in %.2fs",
                          s->failed_until - now);
        else
            std::snprintf(state, sizeof state, "up");
        const char* conn = !s->fd          ? "idle"
                           : s->connecting ? "connecting"
                                           : "connected";
        char line[512];
        std::snprintf(
            line, sizeof line,
            "%s %s weight %d %s %s pending %zu gets %llu hits %llu "
            "misses %llu sets %llu deletes %llu errors %llu "
            "timeouts %llu\n",
            s->name.c_str(), s->address_text.c_str(), s->weight, state, conn,
            s->pending.size(), static_cast<unsigned long long>(s->gets),
            static_cast<unsigned long long>(s->hits),
            static_cast<unsigned long long>(s->misses),
            static_cast<unsigned long long>(s->sets),
            static_cast<unsigned long long>(s->deletes),
            static_cast<unsigned long long>(s->errors),
            static_cast<unsigned long long>(s->timeouts));
        out += line;
    }
    return out;
}

}  // namespace sj
