#include "balancerd/proxy.h"

#include <arpa/inet.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "balancerd/client_conn.h"
#include "common/check.h"
#include "common/log.h"
#include "common/net.h"

namespace sj {

void
ServerConn::stop_watchers(struct ev_loop* loop) noexcept
{
    ev_io_stop(loop, &rio);
    ev_io_stop(loop, &wio);
    ev_timer_stop(loop, &timer);
}

Proxy::Proxy(WorkerContext& ctx, BalancerState* state)
    : loop_(ctx.loop), config_(ctx.config), cfg_(&ctx.config->balancerd),
      table_(state->table()), alog_(ctx.loop, ctx.config->balancerd.access_log),
      wake_(ctx.loop, on_wake, this), acceptor_(ctx.loop, on_accept, this)
{
    layout_ = state->layout(ctx.generation);
    CHECK(layout_ != nullptr);
    if (!table_.join(static_cast<int32_t>(getpid())))
        log_warn(
            "more than %d balancerd workers at once: this one's "
            "in-flight requests are not given back if it dies, and "
            "its queue is not ordered with the others'",
            kMaxWorkerSlots);
    else if (!wake_.open("balancerd", getppid(), table_.worker_index()))
        log_warn(
            "queue wake-up socket: %s (queued requests of other "
            "workers are seen on the queue tick only)",
            std::strerror(errno));
    node_config_.assign(kMaxNodes, nullptr);
    idle_.resize(kMaxNodes);
    for (const auto& [name, pl] : layout_->pools) {
        auto rt = std::make_unique<PoolRuntime>();
        rt->layout = &pl;
        rt->config = pl.config;
        rt->kind = balance_kind(pl.config->balance);
        for (size_t i = 0; i < pl.nodes.size(); ++i) {
            rt->names.push_back(pl.config->nodes[i].name);
            node_config_[static_cast<size_t>(pl.nodes[i])] =
                &pl.config->nodes[i];
        }
        rt->scratch.resize(pl.nodes.size());
        pools_.emplace(name, std::move(rt));
    }
    http_pool_ = pools_.at(cfg_->pool).get();
    for (const std::string& t : cfg_->trusted)
        trusted_.add(t);
    rng_ ^= static_cast<uint64_t>(getpid()) * 0x2545f4914f6cdd1dull;
    if (cfg_->send_batching) {
        std::string err;
        if (!batch_.open(&err))
            log_warn("send batching off: %s (writing with send())",
                     err.c_str());
    }
    acceptor_.set_limit(static_cast<size_t>(cfg_->max_connections),
                        "balancerd.max_connections");
    for (const auto& l : ctx.listeners) {
        const TcpListenConfig* tcp = nullptr;
        for (const TcpListenConfig& t : cfg_->tcp)
            if (t.listen.to_string() == l.config.address.to_string())
                tcp = &t;
        if (tcp != nullptr) {
            TcpProxyOptions o;
            o.connect_timeout = tcp->connect_timeout > 0
                                    ? tcp->connect_timeout
                                    : cfg_->connect_timeout;
            o.idle_timeout = tcp->idle_timeout;
            o.retries = config_->pools.at(tcp->pool).retries;
            o.max_connections = static_cast<size_t>(cfg_->max_connections);
            o.limit_name = "balancerd.max_connections";
            tcp_.push_back(
                std::make_unique<TcpProxy>(loop_, l.fd, *tcp, *this, o));
            continue;
        }
        listener_unix_.push_back(l.config.address.is_unix());
        acceptor_.add(l.fd);
    }
    ev_timer_init(&queue_tick_, on_queue_tick, 0.01, 0.01);
    queue_tick_.data = this;
    ev_init(&order_timer_, on_order_timer);
    order_timer_.data = this;
    ev_signal_init(&usr1_, on_usr1, SIGUSR1);
    usr1_.data = this;
    ev_signal_start(loop_, &usr1_);
    ev_prepare_init(&prepare_, on_prepare);
    prepare_.data = this;
    ev_prepare_start(loop_, &prepare_);
}

Proxy::~Proxy()
{
    for (auto& [p, c] : clients_)
        c->stop_watchers();
    for (auto& [p, s] : servers_)
        s->stop_watchers(loop_);
    // In-flight slots this worker still holds go back to the table.
    for (auto& [p, c] : clients_)
        if (c->node >= 0)
            table_.release(c->node);
    for (auto& [name, rt] : pools_)
        for (ClientConn* c : rt->queue) {
            (void)c;
            table_.queue_add(rt->layout->slot, -1);
        }
    tcp_.clear();
    ev_timer_stop(loop_, &queue_tick_);
    ev_timer_stop(loop_, &order_timer_);
    wake_.stop();
    if (http_pool_ != nullptr)
        table_.publish_oldest(http_pool_->layout->slot, 0);
    ev_signal_stop(loop_, &usr1_);
    ev_prepare_stop(loop_, &prepare_);
    deferred_.clear();
    alog_.flush();
}

bool
Proxy::trusted(const std::string& ip, bool unix_peer) const noexcept
{
    return unix_peer ? trusted_.allows_unix() : trusted_.matches(ip);
}

size_t
Proxy::on_accept(void* owner, size_t index, UniqueFd fd,
                 const sockaddr_storage& ss, socklen_t len) noexcept
{
    auto* self = static_cast<Proxy*>(owner);
    bool unix_socket = self->listener_unix_[index];
    std::string peer =
        unix_socket
            ? std::string("unix")
            : format_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
    if (!unix_socket)
        set_nodelay(fd.get());
    auto c = std::make_unique<ClientConn>(self, std::move(fd), std::move(peer),
                                          unix_socket);
    ClientConn* raw = c.get();
    self->clients_.emplace(raw, std::move(c));
    raw->start();
    return self->clients_.size();
}

void
Proxy::close_client(ClientConn* c) noexcept
{
    if (c->state == ClientConn::State::kClosing && !c->fd)
        return;
    c->stop_watchers();
    if (c->in_queue)
        dequeue(c);
    if (c->srv != nullptr) {
        c->srv->client = nullptr;
        close_server(c->srv);
        c->srv = nullptr;
    }
    if (c->node >= 0) {
        table_.release(c->node);
        c->node = -1;
        queue_dirty_ = true;
    }
    c->state = ClientConn::State::kClosing;
    c->fd.reset();
    // Freed before the loop next blocks: a callback deeper in the stack
    // may still hold the pointer.
    dead_clients_.push_back(c);
}

void
Proxy::server_read(ServerConn* sc) noexcept
{
    if (sc->client != nullptr)
        sc->client->server_readable();
    else
        // An idle connection that becomes readable was closed by
        // the node (or sent bytes nobody asked for).
        sc->proxy->close_server(sc);
}

void
Proxy::on_prepare(struct ev_loop*, ev_prepare* w, int) noexcept
{
    auto* self = static_cast<Proxy*>(w->data);
    self->ready_.run();
    if (self->queue_dirty_) {
        self->queue_dirty_ = false;
        self->serve_queue();
    }
    // Before the dead are freed: a deferred send may name one.
    self->send_batch();
    for (ServerConn* s : self->dead_servers_)
        self->servers_.erase(s);
    self->dead_servers_.clear();
    for (ClientConn* c : self->dead_clients_)
        self->clients_.erase(c);
    self->dead_clients_.clear();
    self->acceptor_.update(self->clients_.size());
    self->maybe_idle();
}

bool
Proxy::defer_send(ClientConn* c, bool to_node) noexcept
{
    if (!batch_.is_open())
        return false;
    bool& queued = to_node ? c->node_send_deferred : c->send_deferred;
    if (!queued) {
        queued = true;
        deferred_.push_back({c, to_node});
    }
    return true;
}

void
Proxy::send_batch() noexcept
{
    // Members, not locals: their memory serves every loop turn.
    std::vector<Deferred>& now = batch_now_;
    std::vector<Sent>& sent = batch_sent_;
    std::vector<ssize_t>& results = batch_results_;
    // What the results set off (a request body's next piece, a queued
    // request given a node) is deferred in turn and sent in the next round.
    while (!deferred_.empty()) {
        now.swap(deferred_);
        sent.clear();
        for (const Deferred& d : now) {
            ClientConn* c = d.c;
            (d.to_node ? c->node_send_deferred : c->send_deferred) = false;
            // Closed, or its node connection gone or not up yet, since.
            if (!c->fd)
                continue;
            if (d.to_node) {
                if (c->srv == nullptr || c->srv->connecting || !c->srv->fd ||
                    c->req_out.empty())
                    continue;
                sent.push_back(
                    {c, true,
                     static_cast<ssize_t>(
                         batch_.add(c->srv->fd.get(), c->req_out.data(),
                                    c->req_out.size())),
                     c->srv});
            } else if (c->out.empty()) {
                // Nothing to write, but what follows a flush still applies
                // (closing after an answer, idle buffers).
                sent.push_back({c, false, -1, nullptr});
            } else {
                sent.push_back(
                    {c, false,
                     static_cast<ssize_t>(
                         batch_.add(c->fd.get(), c->out.data(), c->out.size())),
                     nullptr});
            }
        }
        now.clear();
        batch_.submit(&results);
        for (const Sent& x : sent) {
            ClientConn* c = x.c;
            // An earlier result may have closed c (its node failed, or the
            // client's answer was its last).
            if (!c->fd || (x.to_node && c->srv != x.srv))
                continue;
            if (x.index < 0)
                c->client_flushed();
            else
                c->batch_sent(x.to_node, results[static_cast<size_t>(x.index)]);
        }
    }
}

// ---------------------------------------------------------------- nodes

int
Proxy::pick_in(PoolRuntime& p, std::string_view key, const int* exclude,
               size_t nexclude, int sticky, bool* saturated, bool acquire,
               bool* sticky_wait) noexcept
{
    int64_t now = mono_ms();
    const std::vector<int>& slots = p.layout->nodes;
    for (size_t i = 0; i < slots.size(); ++i) {
        ShmNode& n = table_.node(slots[i]);
        bool ok = NodeTable::usable(n, now);
        for (size_t k = 0; k < nexclude && ok; ++k)
            if (exclude[k] == slots[i])
                ok = false;
        int w = n.weight.load(std::memory_order_relaxed);
        if (p.kind != BalanceKind::kHash && p.config->slowstart > 0) {
            int64_t since = n.up_since.load(std::memory_order_relaxed);
            if (since > 0)
                w = slowstart_weight(w,
                                     static_cast<double>(now - since) / 1000.0,
                                     p.config->slowstart);
        }
        uint32_t active = n.active.load(std::memory_order_relaxed);
        int32_t max = n.maxconn.load(std::memory_order_relaxed);
        bool full = max > 0 && active >= static_cast<uint32_t>(max);
        if (ok && w > 0 && full)
            *saturated = true;
        p.scratch[i] = {w, active, ok && !full};
    }
    if (sticky >= 0) {
        BalanceNode& s = p.scratch[static_cast<size_t>(sticky)];
        if (s.usable && s.weight > 0) {
            if (!acquire || table_.acquire(slots[sticky]))
                return slots[static_cast<size_t>(sticky)];
            *saturated = true;
            *sticky_wait = true;
            return -1;  // its node is busy: wait for it in the queue
        }
        if (*saturated && s.weight > 0) {
            ShmNode& n = table_.node(slots[static_cast<size_t>(sticky)]);
            if (NodeTable::usable(n, now)) {
                *sticky_wait = true;
                return -1;
            }
        }
    }
    if (p.kind == BalanceKind::kHash) {
        std::vector<int> weights(slots.size());
        for (size_t i = 0; i < slots.size(); ++i)
            weights[i] = table_.node(slots[i]).weight.load();
        if (!p.ring.matches(weights))
            p.ring.build(p.names, weights);
    }
    for (size_t tries = 0; tries < slots.size(); ++tries) {
        int idx;
        switch (p.kind) {
        case BalanceKind::kLeastConn:
            idx = pick_least_conn(p.scratch, &p.rotor);
            break;
        case BalanceKind::kRandom:
            idx = pick_two_choices(p.scratch, &rng_);
            break;
        case BalanceKind::kHash:
            idx = key.empty() ? p.rr.pick(p.scratch)
                              : p.ring.pick(key, p.scratch);
            break;
        default: idx = p.rr.pick(p.scratch); break;
        }
        if (idx < 0)
            return -1;
        int slot = slots[static_cast<size_t>(idx)];
        if (!acquire || table_.acquire(slot))
            return slot;
        // Another worker took the last slot first.
        p.scratch[static_cast<size_t>(idx)].usable = false;
        *saturated = true;
    }
    return -1;
}

int
Proxy::pick_http(ClientConn& c, bool* saturated) noexcept
{
    PoolRuntime& p = *http_pool_;
    std::string key;
    if (p.kind == BalanceKind::kHash)
        key = c.hash_key();
    int sticky = -1;
    if (!c.sticky_node.empty())
        for (size_t i = 0; i < p.names.size(); ++i)
            if (p.names[i] == c.sticky_node)
                sticky = static_cast<int>(i);
    for (size_t k = 0; k < c.nexcluded && sticky >= 0; ++k)
        if (c.excluded[k] == p.layout->nodes[static_cast<size_t>(sticky)])
            sticky = -1;
    c.sticky_wait = false;
    int slot = pick_in(p, key, c.excluded, c.nexcluded, sticky, saturated, true,
                       &c.sticky_wait);
    if (slot >= 0 && !p.config->sticky_cookie.empty())
        c.insert_cookie = c.sticky_node != table_.node(slot).name;
    return slot;
}

ServerConn*
Proxy::server_for(int node, int* err) noexcept
{
    auto& idle = idle_[static_cast<size_t>(node)];
    while (!idle.empty()) {
        ServerConn* s = idle.back();
        idle.pop_back();
        // Its read watcher and idle timer go on: ClientConn::attempt()
        // attaches the client and server_connected() turns the timer into
        // the response timeout before the loop runs again.
        s->reused = true;
        return s;
    }
    const NodeConfig* nc = node_config_[static_cast<size_t>(node)];
    CHECK(nc != nullptr);
    PendingConnect pc = connect_nonblocking(nc->address, err);
    if (!pc.fd)
        return nullptr;
    auto s = std::make_unique<ServerConn>();
    ServerConn* raw = s.get();
    raw->proxy = this;
    raw->node = node;
    raw->fd = std::move(pc.fd);
    raw->connecting = pc.in_progress;
    ev_io_init(
        &raw->rio,
        [](struct ev_loop*, ev_io* w, int) noexcept {
            static_cast<ServerConn*>(w->data)->proxy->ready_.push(
                w, [](ev_io* r) noexcept {
                    server_read(static_cast<ServerConn*>(r->data));
                });
        },
        raw->fd.get(), EV_READ);
    ev_io_init(
        &raw->wio,
        [](struct ev_loop*, ev_io* w, int) noexcept {
            auto* sc = static_cast<ServerConn*>(w->data);
            if (sc->client != nullptr)
                sc->client->server_writable();
            else
                ev_io_stop(sc->proxy->loop_, w);
        },
        raw->fd.get(), EV_WRITE);
    ev_init(&raw->timer, [](struct ev_loop*, ev_timer* w, int) noexcept {
        auto* sc = static_cast<ServerConn*>(w->data);
        if (sc->client != nullptr)
            sc->client->server_failed(ETIMEDOUT, true);
        else
            sc->proxy->close_server(sc);
    });
    raw->rio.data = raw->wio.data = raw->timer.data = raw;
    if (raw->connecting) {
        ev_io_start(loop_, &raw->wio);
        raw->timer.repeat = cfg_->connect_timeout;
        ev_timer_again(loop_, &raw->timer);
    }
    servers_.emplace(raw, std::move(s));
    return raw;
}

void
Proxy::park(ServerConn* s) noexcept
{
    ShmNode& n = table_.node(s->node);
    if (shutting_down_ || cfg_->server_idle_timeout <= 0 ||
        n.admin.load() != static_cast<uint32_t>(AdminState::kEnabled) ||
        !s->in.empty()) {
        close_server(s);
        return;
    }
    s->client = nullptr;
    ev_io_stop(loop_, &s->wio);
    ev_io_start(loop_, &s->rio);
    s->timer.repeat = cfg_->server_idle_timeout;
    ev_timer_again(loop_, &s->timer);
    // A node connection is reused at once under load: keep a buffer of
    // the usual size.
    if (s->in.capacity() > 32 * 1024)
        s->in.release_memory();
    idle_[static_cast<size_t>(s->node)].push_back(s);
}

void
Proxy::close_server(ServerConn* s) noexcept
{
    if (!s->fd)
        return;
    s->stop_watchers(loop_);
    auto& idle = idle_[static_cast<size_t>(s->node)];
    idle.erase(std::remove(idle.begin(), idle.end(), s), idle.end());
    s->client = nullptr;
    s->fd.reset();
    dead_servers_.push_back(s);
}

// ---------------------------------------------------------------- queue

void
Proxy::enqueue(ClientConn* c) noexcept
{
    PoolRuntime& p = *http_pool_;
    c->ticket = table_.take_ticket(p.layout->slot);
    c->qpos = p.queue.insert(p.queue.end(), c);
    c->in_queue = true;
    table_.queue_add(p.layout->slot, 1);
    ++queued_;
    if (!ev_is_active(&queue_tick_))
        ev_timer_again(loop_, &queue_tick_);
    publish_oldest();
}

void
Proxy::dequeue(ClientConn* c) noexcept
{
    if (!c->in_queue)
        return;
    PoolRuntime& p = *http_pool_;
    p.queue.erase(c->qpos);
    c->in_queue = false;
    table_.queue_add(p.layout->slot, -1);
    --queued_;
    if (queued_ == 0)
        ev_timer_stop(loop_, &queue_tick_);
    publish_oldest();
}

void
Proxy::publish_oldest() noexcept
{
    PoolRuntime& p = *http_pool_;
    uint64_t t = 0;
    for (ClientConn* c : p.queue)
        if (!c->sticky_wait) {
            t = c->ticket;
            break;
        }
    if (t != published_) {
        published_ = t;
        table_.publish_oldest(p.layout->slot, t);
    }
}

void
Proxy::on_wake(void* arg, const char*, size_t) noexcept
{
    // Once per loop iteration however many wake-ups came (on_prepare).
    static_cast<Proxy*>(arg)->queue_dirty_ = true;
}

void
Proxy::on_order_timer(struct ev_loop*, ev_timer* w, int) noexcept
{
    // The worker with an older request was woken. If that request still
    // waits, the worker has not taken the free slot: it may be busy or
    // stuck, so go ahead rather than leave the node idle. If it went, the
    // order holds as usual.
    auto* self = static_cast<Proxy*>(w->data);
    int elsewhere = -1;
    uint64_t older = self->table_.oldest_elsewhere(
        self->http_pool_->layout->slot, &elsewhere);
    self->serve_queue(older == 0 || older != self->deferred_to_);
}

void
Proxy::serve_queue(bool in_order) noexcept
{
    if (serving_queue_) {
        // Called back from a dispatch below (a connect that failed at
        // once released its slot): the loop below or the next prepare
        // watcher looks again.
        queue_dirty_ = true;
        return;
    }
    serving_queue_ = true;
    PoolRuntime& p = *http_pool_;
    // Oldest first. A request waiting for its sticky node, which is at its
    // maxconn, does not hold up those behind it that another node can take;
    // once a request any node could take finds none, the rest wait too.
    // Across workers: a request any node may take goes only when no other
    // worker has an older one; that worker is woken instead.
    int elsewhere = -1;
    uint64_t older = 0;
    if (table_.pool(p.layout->slot).queued.load() > p.queue.size())
        older = table_.oldest_elsewhere(p.layout->slot, &elsewhere);
    bool deferred = false;
    for (auto it = p.queue.begin(); it != p.queue.end();) {
        ClientConn* c = *it++;  // dispatch() takes c out of the queue
        if (in_order && older != 0 && !c->sticky_wait && c->ticket > older) {
            deferred = true;
            break;
        }
        bool saturated = false;
        int n = pick_http(*c, &saturated);
        if (n >= 0) {
            c->dispatch(n);
            continue;
        }
        if (!saturated) {
            // Every node went away while it waited.
            table_.pool(p.layout->slot).no_node.fetch_add(1);
            c->error_response(503, "no node available", "no-node", true);
            continue;
        }
        if (!c->sticky_wait)
            break;
    }
    publish_oldest();
    serving_queue_ = false;
    if (older != 0 && (deferred || p.queue.empty())) {
        // An older request waits in another worker, and a slot may be
        // free (this worker just released one, or could serve its own).
        wake(elsewhere);
        if (deferred && !ev_is_active(&order_timer_)) {
            deferred_to_ = older;
            ev_timer_set(&order_timer_, kOrderGrace, 0.);
            ev_timer_start(loop_, &order_timer_);
        }
    }
}

void
Proxy::on_queue_tick(struct ev_loop*, ev_timer* w, int) noexcept
{
    // Slots freed by other workers, and passive holds that ended, wake
    // nobody here; look again every tick while requests wait.
    static_cast<Proxy*>(w->data)->serve_queue();
}

void
Proxy::on_usr1(struct ev_loop*, ev_signal* w, int) noexcept
{
    static_cast<Proxy*>(w->data)->alog_.reopen();
}

// ---------------------------------------------------------------- shutdown

void
Proxy::shutdown(std::function<void()> idle) noexcept
{
    shutting_down_ = true;
    on_idle_ = std::move(idle);
    acceptor_.close_all();
    // Idle keep-alive connections close now, but a connection accepted
    // and not yet read from carries a request its client already sent:
    // read it first, so a reload never drops one.
    std::vector<ClientConn*> waiting;
    for (auto& [p, c] : clients_)
        if (c->state == ClientConn::State::kIdle && c->out.empty())
            waiting.push_back(p);
    for (ClientConn* c : waiting) {
        if (c->served == 0) {
            c->on_read();
            if (c->state == ClientConn::State::kIdle && c->fd)
                c->arm_timer(cfg_->header_timeout);
            continue;
        }
        if (c->in.empty())
            close_client(c);
    }
    for (auto& idle_list : idle_) {
        std::vector<ServerConn*> v = idle_list;
        for (ServerConn* s : v)
            close_server(s);
    }
    for (auto& t : tcp_) {
        ++tcp_busy_;
        t->shutdown([this] {
            --tcp_busy_;
            maybe_idle();
        });
    }
    maybe_idle();
}

void
Proxy::maybe_idle() noexcept
{
    if (!shutting_down_ || !on_idle_ || tcp_busy_ > 0)
        return;
    if (clients_.size() != dead_clients_.size())
        return;
    auto done = std::move(on_idle_);
    on_idle_ = nullptr;
    alog_.flush();
    done();
}

// ---------------------------------------------------------------- TCP

PoolRuntime*
Proxy::pool_named(const std::string& name) noexcept
{
    auto it = pools_.find(name);
    return it == pools_.end() ? nullptr : it->second.get();
}

TcpRoute
Proxy::pick(const std::string& pool, const std::string& route,
            const std::string& client, int exclude)
{
    TcpRoute r;
    PoolRuntime* p = pool_named(pool);
    if (p == nullptr)
        return r;
    int slot = -1;
    if (route == "writer") {
        int64_t now = mono_ms();
        for (int s : p->layout->nodes) {
            ShmNode& n = table_.node(s);
            if (n.writer && s != exclude && NodeTable::usable(n, now))
                slot = s;
        }
    } else {
        bool saturated = false;
        std::string key = client;
        size_t colon = key.rfind(':');
        if (colon != std::string::npos)
            key.resize(colon);
        bool unused = false;
        slot = pick_in(*p, key, &exclude, exclude >= 0 ? 1 : 0, -1, &saturated,
                       false, &unused);
    }
    if (slot < 0)
        return r;
    const NodeConfig* nc = node_config_[static_cast<size_t>(slot)];
    r.node = slot;
    r.address = nc->address;
    r.name = pool + "/" + nc->name;
    return r;
}

void
Proxy::connect_result(int node, bool ok)
{
    if (node < 0 || node >= kMaxNodes)
        return;
    if (ok) {
        table_.passive_success(node);
        return;
    }
    table_.node(node).connect_fails.fetch_add(1);
    table_.passive_failure(node, cfg_->passive_fall, cfg_->passive_hold,
                           "connect failed");
}

void
Proxy::opened(int node)
{
    if (node < 0 || node >= kMaxNodes)
        return;
    table_.hold(node);
    table_.node(node).tcp_conns.fetch_add(1);
}

void
Proxy::closed(int node, uint64_t bytes_in, uint64_t bytes_out)
{
    if (node < 0 || node >= kMaxNodes)
        return;
    table_.release(node);
    ShmNode& n = table_.node(node);
    n.bytes_in.fetch_add(bytes_in);
    n.bytes_out.fetch_add(bytes_out);
}

uint64_t
Proxy::writer_epoch(const std::string& pool)
{
    PoolRuntime* p = pool_named(pool);
    return p == nullptr ? 0 : table_.pool(p->layout->slot).writer_epoch.load();
}

std::unique_ptr<Worker>
make_proxy(WorkerContext& ctx)
{
    auto* state = dynamic_cast<BalancerState*>(ctx.state);
    if (state == nullptr || !state->layout(ctx.generation)) {
        log_error("no node table for generation %u", ctx.generation);
        return nullptr;
    }
    return std::make_unique<Proxy>(ctx, state);
}

}  // namespace sj
