#include "cached/worker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cached/client_conn.h"
#include "cached/fetch.h"
#include "cached/mc_tier.h"
#include "common/check.h"
#include "common/log.h"
#include "common/net.h"

namespace sj {

namespace {

constexpr double kTick = 0.1;  // shared-tier health poll

// Removes the entry (key, c) of a multimap of waiters, if there is one.
template <typename Map, typename Key>
void
erase_one(Map& m, const Key& key, ClientConn* c) noexcept
{
    auto [it, end] = m.equal_range(key);
    for (; it != end; ++it)
        if (it->second == c) {
            m.erase(it);
            return;
        }
}

}  // namespace

CacheWorker::CacheWorker(WorkerContext& ctx, CachedState* state)
    : loop_(ctx.loop), config_(ctx.config), cfg_(&ctx.config->cached),
      state_(state),
      counters_(&state->shared()->workers[ctx.index % kMaxWorkerSlots]),
      pid_(static_cast<int32_t>(getpid())),
      origin_(ctx.loop, ctx.config->cached.origin,
              ctx.config->cached.connect_timeout,
              ctx.config->cached.origin_idle_timeout),
      alog_(ctx.loop, ctx.config->cached.access_log),
      wake_(ctx.loop, on_wake, this), acceptor_(ctx.loop, on_accept, this)
{
    counters_->pid.store(pid_);
    watch_slot_ = watch_slot_claim(shared(), pid_);
    if (watch_slot_ < 0) {
        log_warn(
            "more than %d cached workers at once: this one's requests "
            "for fetches of other workers poll for them",
            kWatchSlots);
    } else if (!wake_.open("cached", getppid(), watch_slot_)) {
        log_warn(
            "wake-up socket: %s (requests for fetches of other "
            "workers poll for them)",
            std::strerror(errno));
        watch_slot_release(shared(), pid_);
        watch_slot_ = -1;
    }
    key_policy_.sort_query = cfg_->sort_query;
    key_policy_.drop_params = cfg_->ignore_params;
    for (const std::string& s : cfg_->purge_allow)
        purge_acl_.add(s);
    if (!cfg_->shared_tier.empty()) {
        auto it = config_->pools.find(cfg_->shared_tier);
        if (it != config_->pools.end()) {
            McTierOptions o;
            o.timeout = cfg_->tier_timeout;
            o.max_object = cfg_->tier_max_object;
            tier_ = std::make_unique<McTier>(loop_, it->second, o);
        }
    }
    acceptor_.set_limit(static_cast<size_t>(cfg_->max_connections),
                        "cached.max_connections");
    gate_ = std::make_unique<AcceptGate>(
        loop_, state->shared()->accept, kMaxWorkerSlots,
        static_cast<size_t>(ctx.index % kMaxWorkerSlots),
        cfg_->accept_policy == "pack");
    acceptor_.set_gate(gate_.get());
    for (const auto& l : ctx.listeners) {
        listener_tls_.push_back(
            state->tls_ctx(ctx.generation, listener_tls_.size()));
        acceptor_.add(l.fd);
    }
    ev_signal_init(&usr1_, on_usr1, SIGUSR1);
    usr1_.data = this;
    ev_signal_start(loop_, &usr1_);
    ev_prepare_init(&prepare_, on_prepare);
    prepare_.data = this;
    ev_prepare_start(loop_, &prepare_);
    ev_timer_init(&tick_, on_tick, kTick, kTick);
    tick_.data = this;
    if (tier_)
        ev_timer_start(loop_, &tick_);
}

CacheWorker::~CacheWorker()
{
    ev_signal_stop(loop_, &usr1_);
    ev_prepare_stop(loop_, &prepare_);
    ev_timer_stop(loop_, &tick_);
    // Fetches first: they point at clients and at the origin pool.
    hot_.clear();
    fetches_.clear();
    fetches_all_.clear();
    clients_.clear();
    wake_.stop();
    if (watch_slot_ >= 0)
        watch_slot_release(shared(), pid_);
    counters_->pid.store(0);
}

bool
CacheWorker::cookie_ok(std::string_view target) const noexcept
{
    for (const std::string& p : cfg_->cookie_paths)
        if (target.substr(0, p.size()) == p)
            return true;
    return false;
}

bool
CacheWorker::purge_allowed(const std::string& ip) const noexcept
{
    return purge_acl_.matches(ip);
}

Fetch*
CacheWorker::fetch_for(const std::string& key) noexcept
{
    auto it = fetches_.find(key);
    return it == fetches_.end() ? nullptr : it->second;
}

Fetch*
CacheWorker::start_fetch(std::unique_ptr<Fetch> f) noexcept
{
    Fetch* raw = f.get();
    fetches_all_.emplace(raw, std::move(f));
    if (raw->collapsible() && fetches_.count(raw->primary()) == 0)
        fetches_.emplace(raw->primary(), raw);
    else
        raw->set_collapsible(false);
    raw->start();
    return raw;
}

void
CacheWorker::uncollapse(Fetch* f) noexcept
{
    auto it = fetches_.find(f->primary());
    if (it != fetches_.end() && it->second == f)
        fetches_.erase(it);
}

void
CacheWorker::fetch_done(Fetch* f) noexcept
{
    uncollapse(f);
    dead_fetches_.push_back(f);
}

size_t
CacheWorker::purge_key(const std::string& primary) noexcept
{
    Store& st = store();
    size_t n = st.remove(primary) ? 1 : 0;
    std::string variants = primary;
    variants.push_back('\0');
    n += st.remove_prefix(variants);
    store_changed();
    return n;
}

namespace {

constexpr size_t kHotMax = 128;             // objects per worker
constexpr uint64_t kHotMaxBody = 1u << 20;  // larger ones stay in the store
constexpr double kHotTouch = 0.1;           // seconds between visited marks

}  // namespace

std::shared_ptr<ObjectRef>
CacheWorker::hot_get(const std::string& key) noexcept
{
    uint64_t e = shared()->store_epoch.load(std::memory_order_acquire);
    if (e != hot_epoch_) {
        hot_.clear();
        hot_epoch_ = e;
        return nullptr;
    }
    auto it = hot_.find(key);
    if (it == hot_.end())
        return nullptr;
    double now = ev_now(loop_);
    if (now - it->second.touched > kHotTouch) {
        // Hits here bypass the store, so tell its SIEVE queue now and then
        // that the object is in use (a lookup marks it visited).
        it->second.touched = now;
        store().lookup(key);
    }
    return it->second.ref;
}

void
CacheWorker::hot_put(const std::string& key) noexcept
{
    if (hot_.size() >= kHotMax || hot_.count(key) != 0)
        return;
    // Read the epoch before the lookup: a change after it empties the
    // table at the next hot_get().
    uint64_t e = shared()->store_epoch.load(std::memory_order_acquire);
    if (e != hot_epoch_) {
        hot_.clear();
        hot_epoch_ = e;
    }
    ObjectRef ref = store().lookup(key);
    if (!ref || ref.body_size() > kHotMaxBody ||
        (ref.meta().flags & kStoredVaryIndex))
        return;
    try {
        hot_.emplace(key, Hot{std::make_shared<ObjectRef>(std::move(ref)),
                              ev_now(loop_)});
    } catch (const std::bad_alloc&) {
    }
}

void
CacheWorker::store_changed() noexcept
{
    shared()->store_epoch.fetch_add(1, std::memory_order_acq_rel);
}

void
CacheWorker::wait_fill(const std::string& key, ClientConn* c)
{
    fill_waiters_.emplace(key, c);
}

void
CacheWorker::unwait_fill(const std::string& key, ClientConn* c) noexcept
{
    erase_one(fill_waiters_, key, c);
}

void
CacheWorker::fill_progress(const std::string& key) noexcept
{
    if (fill_waiters_.empty())
        return;
    auto [it, end] = fill_waiters_.equal_range(key);
    while (it != end) {
        ClientConn* c = it->second;
        it = fill_waiters_.erase(it);
        c->follow_wake();
    }
}

void
CacheWorker::fill_begun(const std::string& key)
{
    ++local_fills_[key];
}

void
CacheWorker::fill_ended(const std::string& key) noexcept
{
    auto it = local_fills_.find(key);
    if (it != local_fills_.end() && --it->second == 0)
        local_fills_.erase(it);
}

bool
CacheWorker::filling_here(const std::string& key) const noexcept
{
    return local_fills_.count(key) != 0;
}

void
CacheWorker::wait_remote(uint64_t hash, ClientConn* c)
{
    remote_waiters_.emplace(hash, c);
}

void
CacheWorker::unwait_remote(uint64_t hash, ClientConn* c) noexcept
{
    erase_one(remote_waiters_, hash, c);
}

void
CacheWorker::notify_watchers(uint64_t hash) noexcept
{
    if (uint64_t mask = pass_take_watchers(shared(), hash))
        wake_watchers(mask, hash);
}

void
CacheWorker::wake_watchers(uint64_t mask, uint64_t hash) noexcept
{
    sj::wake_watchers(shared(), wake_, mask, hash);
}

void
CacheWorker::on_wake(void* arg, const char* msg, size_t len) noexcept
{
    auto* self = static_cast<CacheWorker*>(arg);
    uint64_t hash;
    if (len != sizeof hash)
        return;
    std::memcpy(&hash, msg, sizeof hash);
    std::atomic<uint32_t>& overflow =
        self->shared()->watch_overflow[self->watch_slot_];
    bool all = overflow.load(std::memory_order_relaxed) != 0 &&
               overflow.exchange(0) != 0;
    auto [it, end] = all ? std::pair(self->remote_waiters_.begin(),
                                     self->remote_waiters_.end())
                         : self->remote_waiters_.equal_range(hash);
    while (it != end) {
        ClientConn* c = it->second;
        it = self->remote_waiters_.erase(it);
        self->counters_->woken.fetch_add(1, std::memory_order_relaxed);
        c->remote_wake();
    }
}

void
CacheWorker::close_client(ClientConn* c) noexcept
{
    c->stop_watchers();
    dead_clients_.push_back(c);
}

bool
CacheWorker::client_alive(ClientConn* c, uint64_t id) const noexcept
{
    auto it = clients_.find(c);
    return it != clients_.end() && c->id() == id &&
           std::find(dead_clients_.begin(), dead_clients_.end(), c) ==
               dead_clients_.end();
}

void
CacheWorker::on_prepare(struct ev_loop*, ev_prepare* w, int) noexcept
{
    // Connections and fetches end inside each other's callbacks; they are
    // freed here, when no callback of theirs is on the stack.
    auto* self = static_cast<CacheWorker*>(w->data);
    self->ready_.run();
    while (!self->dead_fetches_.empty() || !self->dead_clients_.empty()) {
        std::vector<Fetch*> fs;
        fs.swap(self->dead_fetches_);
        for (Fetch* f : fs)
            self->fetches_all_.erase(f);
        std::vector<ClientConn*> cs;
        cs.swap(self->dead_clients_);
        for (ClientConn* c : cs)
            self->clients_.erase(c);
    }
    self->acceptor_.update(self->clients_.size());
    self->maybe_idle();
}

void
CacheWorker::on_usr1(struct ev_loop*, ev_signal* w, int) noexcept
{
    static_cast<CacheWorker*>(w->data)->alog_.reopen();
}

void
CacheWorker::on_tick(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* self = static_cast<CacheWorker*>(w->data);
    CachedShared* s = self->shared();
    uint64_t e = s->tier_epoch.load();
    if (e == self->tier_epoch_ || !self->tier_)
        return;
    self->tier_epoch_ = e;
    auto it = self->config_->pools.find(self->cfg_->shared_tier);
    if (it == self->config_->pools.end())
        return;
    const auto& nodes = it->second.nodes;
    for (size_t i = 0; i < nodes.size() && i < kMaxTierNodes; ++i)
        self->tier_->set_health(nodes[i].name, s->tier_up[i].load() != 0);
}

size_t
CacheWorker::on_accept(void* owner, size_t index, UniqueFd fd,
                       const sockaddr_storage& ss, socklen_t len) noexcept
{
    auto* self = static_cast<CacheWorker*>(owner);
    set_nodelay(fd.get());
    char ip[INET6_ADDRSTRLEN] = "";
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr,
                  ip, sizeof ip);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6,
                  &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, ip,
                  sizeof ip);
    auto c = std::make_unique<ClientConn>(
        self, std::move(fd),
        format_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len), ip,
        self->listener_tls_[index]);
    ClientConn* raw = c.get();
    raw->set_id(self->next_id_++);
    self->clients_.emplace(raw, std::move(c));
    raw->start();
    return self->clients_.size();
}

void
CacheWorker::shutdown(std::function<void()> idle) noexcept
{
    shutting_down_ = true;
    on_idle_ = std::move(idle);
    acceptor_.close_all();
    std::vector<ClientConn*> waiting;
    for (auto& [p, c] : clients_)
        if (c->idle())
            waiting.push_back(p);
    // A request already sent on a connection just accepted is answered
    // (then the connection closes), not dropped unread.
    for (ClientConn* c : waiting)
        c->read_pending();
    for (ClientConn* c : waiting)
        if (c->idle())
            c->close_idle();
    maybe_idle();
}

void
CacheWorker::maybe_idle() noexcept
{
    if (!shutting_down_ || !on_idle_)
        return;
    if (clients_.size() > dead_clients_.size())
        return;
    // Background fetches filling the store may finish; they are bounded by
    // the origin timeout, and the parent's grace bounds us.
    for (auto& [f, p] : fetches_all_)
        if (std::find(dead_fetches_.begin(), dead_fetches_.end(), f) ==
            dead_fetches_.end())
            return;
    auto done = std::move(on_idle_);
    on_idle_ = nullptr;
    done();
}

std::unique_ptr<Worker>
make_cache_worker(WorkerContext& ctx)
{
    auto* state = dynamic_cast<CachedState*>(ctx.state);
    if (state == nullptr || !state->store().join()) {
        log_error("store: cannot join the shared store");
        return nullptr;
    }
    return std::make_unique<CacheWorker>(ctx, state);
}

}  // namespace sj
