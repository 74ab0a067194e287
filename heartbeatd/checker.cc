#include "heartbeatd/checker.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "heartbeatd/state.h"

namespace sj::hb {

Checker::Checker(struct ev_loop* loop, const Config& config, int fd)
    : loop_(loop), fd_(fd), rng_(static_cast<unsigned>(getpid()) ^
                                 static_cast<unsigned>(ev_time() * 1e6))
{
    bool need_tls = false;
    for (const auto& [name, pool] : config.pools) {
        if (pool.check.type.empty())
            continue;
        need_tls |= pool.check.type == "http" && pool.check.tls;
        for (const NodeConfig& nc : pool.nodes) {
            auto s = std::make_unique<Slot>();
            s->owner = this;
            s->target.pool = name;
            s->target.node = nc.name;
            s->target.address = nc.address;
            s->target.address_text = nc.address_text;
            s->target.check = pool.check;
            ev_timer_init(&s->interval, on_interval, 0., 0.);
            s->interval.data = s.get();
            ev_timer_init(&s->timeout, on_timeout, 0., 0.);
            s->timeout.data = s.get();
            slots_.push_back(std::move(s));
        }
    }
    if (need_tls) {
        std::string err;
        tls_ctx_ = make_client_ctx(false, "", &err);
        if (!tls_ctx_)
            log_error("tls client context: %s; tls checks will fail",
                      err.c_str());
    }
    ev_io_init(&parent_io_, on_parent, fd_, EV_READ);
    parent_io_.data = this;
    ev_io_start(loop_, &parent_io_);
    Message hello;
    hello.type = MsgType::kHello;
    send_message(hello);
    for (auto& s : slots_) {
        std::uniform_real_distribution<double> spread(0.0,
                                                      s->target.check.interval);
        schedule(*s, spread(rng_));
    }
    log_info("checking %zu nodes", slots_.size());
}

Checker::~Checker()
{
    ev_io_stop(loop_, &parent_io_);
    for (auto& s : slots_) {
        ev_timer_stop(loop_, &s->interval);
        ev_timer_stop(loop_, &s->timeout);
        s->probe.reset();
    }
}

void
Checker::shutdown(std::function<void()> idle) noexcept
{
    stopping_ = true;
    for (auto& s : slots_) {
        ev_timer_stop(loop_, &s->interval);
        ev_timer_stop(loop_, &s->timeout);
        s->probe.reset();
        s->running = false;
    }
    ev_io_stop(loop_, &parent_io_);
    idle();
}

double
Checker::jittered(const Slot& s) noexcept
{
    std::uniform_real_distribution<double> j(0.9, 1.1);
    return s.target.check.interval * j(rng_);
}

void
Checker::schedule(Slot& s, double after) noexcept
{
    ev_timer_stop(loop_, &s.interval);
    ev_timer_set(&s.interval, after, 0.);
    ev_timer_start(loop_, &s.interval);
}

void
Checker::start_check(Slot& s) noexcept
{
    if (stopping_ || s.paused)
        return;
    s.due = false;
    s.running = true;
    s.started = ev_time();
    schedule(s, jittered(s));
    ev_timer_set(&s.timeout, s.target.check.timeout, 0.);
    ev_timer_start(loop_, &s.timeout);
    // The previous probe finished long ago; it goes now, not in its own
    // callback.
    s.probe = make_probe(loop_, s.target, tls_ctx_.get());
    Slot* sp = &s;
    s.probe->start([this, sp](ProbeResult r) { finished(*sp, std::move(r)); });
}

void
Checker::finished(Slot& s, ProbeResult r) noexcept
{
    if (!s.running)
        return;
    s.running = false;
    ev_timer_stop(loop_, &s.timeout);
    report(s, r, ev_time() - s.started);
    // Not at once: we are inside the probe's callback, and starting a
    // check replaces (destroys) the probe.
    if (s.due)
        schedule(s, 0.);
}

void
Checker::report(const Slot& s, const ProbeResult& r, double latency) noexcept
{
    Message m;
    m.type = MsgType::kResult;
    m.outcome = r.outcome;
    m.latency_us = static_cast<uint32_t>(latency * 1e6);
    m.pool = s.target.pool;
    m.node = s.target.node;
    m.reason = r.reason;
    send_message(m);
}

void
Checker::send_message(const Message& m) noexcept
{
    std::string wire = encode(m);
    if (send(fd_, wire.data(), wire.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_warn("cannot report to the parent: %s", std::strerror(errno));
}

Checker::Slot*
Checker::find(const std::string& pool, const std::string& node) noexcept
{
    for (auto& s : slots_)
        if (s->target.pool == pool && s->target.node == node)
            return s.get();
    return nullptr;
}

void
Checker::receive() noexcept
{
    for (int i = 0; i < 256; ++i) {
        char buf[kMaxMessage + 1];
        ssize_t n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0)
            return;
        Message m;
        if (!decode(std::string_view(buf, static_cast<size_t>(n)), &m)) {
            log_error("parent sent a malformed message");
            continue;
        }
        Slot* s = find(m.pool, m.node);
        if (s == nullptr)
            continue;
        switch (m.type) {
        case MsgType::kCheckNow:
            if (s->running)
                s->due = true;
            else
                start_check(*s);
            break;
        case MsgType::kPause:
            s->paused = true;
            s->running = false;
            s->probe.reset();
            ev_timer_stop(loop_, &s->interval);
            ev_timer_stop(loop_, &s->timeout);
            break;
        case MsgType::kResume:
            if (s->paused) {
                s->paused = false;
                start_check(*s);
            }
            break;
        default: break;
        }
    }
}

void
Checker::on_interval(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* s = static_cast<Slot*>(w->data);
    if (s->running)
        s->due = true;
    else
        s->owner->start_check(*s);
}

void
Checker::on_timeout(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* s = static_cast<Slot*>(w->data);
    Checker* self = s->owner;
    if (!s->running)
        return;
    s->running = false;
    s->probe.reset();  // closes the socket, kills the script
    char why[64];
    std::snprintf(why, sizeof why, "timeout after %g s",
                  s->target.check.timeout);
    self->report(*s, ProbeResult{Outcome::kFail, why}, ev_time() - s->started);
    if (s->due)
        self->schedule(*s, 0.);
}

void
Checker::on_parent(struct ev_loop*, ev_io* w, int) noexcept
{
    static_cast<Checker*>(w->data)->receive();
}

std::unique_ptr<Worker>
make_checker(WorkerContext& ctx)
{
    auto* state = dynamic_cast<HeartbeatState*>(ctx.state);
    if (state == nullptr || state->checker_fd() < 0) {
        log_error("no socket to the parent");
        return nullptr;
    }
    return std::make_unique<Checker>(ctx.loop, *ctx.config,
                                     state->checker_fd());
}

}  // namespace sj::hb
