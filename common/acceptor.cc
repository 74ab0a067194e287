#include "common/acceptor.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/net.h"

namespace sj {

Acceptor::Acceptor(struct ev_loop* loop, Handler handler, void* owner) noexcept
    : loop_(loop), handler_(handler), owner_(owner)
{
    ev_timer_init(&retry_, on_retry, kRetry, 0.);
    retry_.data = this;
}

Acceptor::~Acceptor()
{
    watch(false);
    ev_timer_stop(loop_, &retry_);
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
    if (!paused_ && !starved_ && !closed_)
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
        if (!ev_is_active(&retry_))  // else on_retry() watches again
            watch(true);
    }
}

void
Acceptor::stop() noexcept
{
    watch(false);
    ev_timer_stop(loop_, &retry_);
    closed_ = true;
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
    l->acceptor->accept_from(l);
}

void
Acceptor::on_retry(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* self = static_cast<Acceptor*>(w->data);
    // Watch again; the next failed accept() stops it for another spell.
    if (!self->paused_ && !self->closed_)
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
                watch(false);
                ev_timer_start(loop_, &retry_);
            } else if (err != EAGAIN && err != ECONNABORTED) {
                log_warn("%s: accept: %s", who().c_str(), std::strerror(err));
            }
            return;
        }
        if (starved_) {
            log_info("%s: accept: descriptors available again", who().c_str());
            starved_ = false;
        }
        size_t n = handler_(owner_, l->index, std::move(fd), ss, len);
        if (n >= limit_ && !closed_) {
            // Like nginx's worker_connections: the clients wait in the
            // backlog (or go to another worker) until one here closes.
            paused_ = true;
            log_warn(
                "%s: %zu connections (%s): not accepting until one "
                "closes",
                who().c_str(), n, limit_name_.c_str());
            watch(false);
            return;
        }
    }
}

}  // namespace sj
