#include "common/acceptor.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/accept_gate.h"
#include "common/log.h"
#include "common/net.h"

namespace sj {

Acceptor::Acceptor(struct ev_loop* loop, Handler handler, void* owner) noexcept
    : loop_(loop), handler_(handler), owner_(owner)
{
    ev_timer_init(&retry_, on_retry, kRetry, 0.);
    retry_.data = this;
    ev_timer_init(&defer_, on_deferred, AcceptGate::kDefer, 0.);
    defer_.data = this;
}

Acceptor::~Acceptor()
{
    watch(false);
    ev_timer_stop(loop_, &retry_);
    ev_timer_stop(loop_, &defer_);
}

void
Acceptor::set_gate(AcceptGate* gate) noexcept
{
    gate_ = gate;
    publish();
}

void
Acceptor::publish() noexcept
{
    // Out of descriptors or at the limit, a worker takes no connection:
    // others must not leave theirs to it.
    if (gate_ != nullptr)
        gate_->set_open(!paused_ && !starved_ && !closed_);
}

bool
Acceptor::may_watch() const noexcept
{
    // Out of descriptors, retry_ runs and watches again when it fires.
    return !paused_ && !closed_ && !deferring_ && !ev_is_active(&retry_);
}

void
Acceptor::add(int fd)
{
    auto l = std::make_unique<Listener>();
    l->acceptor = this;
    l->fd = fd;
    l->index = listeners_.size();
    ev_io_init(&l->io, on_readable, fd, EV_READ);
    l->io.data = l.get();
    if (may_watch())
        ev_io_start(loop_, &l->io);
    listeners_.push_back(std::move(l));
}

void
Acceptor::set_limit(size_t limit, std::string name, std::string who)
{
    limit_ = limit;
    limit_name_ = std::move(name);
    who_ = std::move(who);
}

const std::string&
Acceptor::who() noexcept
{
    if (who_.empty())
        who_ = "worker " + std::to_string(getpid());
    return who_;
}

void
Acceptor::update(size_t n) noexcept
{
    if (paused_ && n < limit_ && !closed_) {
        paused_ = false;
        log_info("%s: accepting again", who().c_str());
        publish();
        if (may_watch())  // else on_retry() or on_deferred() watches again
            watch(true);
    }
}

void
Acceptor::stop() noexcept
{
    watch(false);
    ev_timer_stop(loop_, &retry_);
    ev_timer_stop(loop_, &defer_);
    deferring_ = false;
    closed_ = true;
    publish();
}

void
Acceptor::close_all() noexcept
{
    stop();
    for (auto& l : listeners_)
        if (l->fd >= 0) {
            ::close(l->fd);
            l->fd = -1;
        }
}

void
Acceptor::watch(bool on) noexcept
{
    for (auto& l : listeners_) {
        if (on && l->fd >= 0)
            ev_io_start(loop_, &l->io);
        else
            ev_io_stop(loop_, &l->io);
    }
}

void
Acceptor::on_readable(struct ev_loop*, ev_io* w, int) noexcept
{
    auto* l = static_cast<Listener*>(w->data);
    Acceptor* self = l->acceptor;
    if (self->gate_ != nullptr && self->gate_->defer()) {
        self->deferring_ = true;
        self->watch(false);
        // (A one-shot libev timer keeps only what was left of it when it
        // stopped: set it again before every start.)
        ev_timer_set(&self->defer_, AcceptGate::kDefer, 0.);
        ev_timer_start(self->loop_, &self->defer_);
        return;
    }
    self->accept_from(l);
}

void
Acceptor::on_deferred(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* self = static_cast<Acceptor*>(w->data);
    self->deferring_ = false;
    if (self->closed_)
        return;
    // The worker the connection was left to took nothing meanwhile: take
    // whatever waits (nothing, if another worker did).
    if (self->gate_->stalled() && !self->paused_ &&
        !ev_is_active(&self->retry_))
        for (auto& l : self->listeners_) {
            if (l->fd >= 0)
                self->accept_from(l.get());
            if (self->paused_ || ev_is_active(&self->retry_))
                break;
        }
    if (self->may_watch())
        self->watch(true);
}

void
Acceptor::on_retry(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* self = static_cast<Acceptor*>(w->data);
    // Watch again; the next failed accept() stops it for another spell.
    if (self->may_watch())
        self->watch(true);
}

void
Acceptor::accept_from(Listener* l) noexcept
{
    for (int i = 0; i < kBatch; ++i) {
        sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int err = 0;
        UniqueFd fd = accept_nonblocking(l->fd, &ss, &len, &err);
        if (!fd) {
            if (err == EMFILE || err == ENFILE || err == ENOBUFS ||
                err == ENOMEM) {
                if (!starved_)
                    log_warn(
                        "%s: accept: %s (not accepting for %g s at a "
                        "time until it passes)",
                        who().c_str(), std::strerror(err), kRetry);
                starved_ = true;
                publish();
                watch(false);
                ev_timer_set(&retry_, kRetry, 0.);
                ev_timer_start(loop_, &retry_);
            } else if (err != EAGAIN && err != ECONNABORTED) {
                log_warn("%s: accept: %s", who().c_str(), std::strerror(err));
            }
            return;
        }
        if (starved_) {
            log_info("%s: accept: descriptors available again", who().c_str());
            starved_ = false;
            publish();
        }
        size_t n = handler_(owner_, l->index, std::move(fd), ss, len);
        if (gate_ != nullptr)
            gate_->accepted(1);
        if (n >= limit_ && !closed_) {
            // Like nginx's worker_connections: the clients wait in the
            // backlog (or go to another worker) until one here closes.
            paused_ = true;
            log_warn(
                "%s: %zu connections (%s): not accepting until one "
                "closes",
                who().c_str(), n, limit_name_.c_str());
            publish();
            watch(false);
            return;
        }
    }
}

}  // namespace sj
