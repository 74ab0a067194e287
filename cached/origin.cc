#include "cached/origin.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/check.h"
#include "common/log.h"
#include "common/net.h"

namespace sj {

OriginConn::OriginConn(OriginPool* pool, UniqueFd fd, bool connecting)
    : pool_(pool), fd_(std::move(fd)), in_(Buffer::kDefaultLimit),
      connecting_(connecting)
{
    ev_io_init(&rio_, on_io, fd_.get(), EV_READ);
    ev_io_init(&wio_, on_io, fd_.get(), EV_WRITE);
    ev_init(&timer_, on_timer);
    rio_.data = wio_.data = timer_.data = this;
}

OriginConn::~OriginConn()
{
    stop();
}

void
OriginConn::stop() noexcept
{
    ev_io_stop(pool_->loop_, &rio_);
    ev_io_stop(pool_->loop_, &wio_);
    ev_timer_stop(pool_->loop_, &timer_);
}

void
OriginConn::want_write(bool on) noexcept
{
    if (on)
        ev_io_start(pool_->loop_, &wio_);
    else
        ev_io_stop(pool_->loop_, &wio_);
}

void
OriginConn::want_read(bool on) noexcept
{
    if (on)
        ev_io_start(pool_->loop_, &rio_);
    else
        ev_io_stop(pool_->loop_, &rio_);
}

void
OriginConn::arm(double secs) noexcept
{
    timer_.repeat = secs;
    ev_timer_again(pool_->loop_, &timer_);
}

void
OriginConn::disarm() noexcept
{
    ev_timer_stop(pool_->loop_, &timer_);
}

void
OriginConn::on_io(struct ev_loop*, ev_io* w, int revents) noexcept
{
    auto* c = static_cast<OriginConn*>(w->data);
    if (c->user_ == nullptr) {
        // Idle: the origin closed it (or sent bytes nobody asked for).
        c->pool_->close(c);
        return;
    }
    if (c->connecting_) {
        int err = finish_connect(c->fd_.get());
        if (err != 0) {
            c->user_->origin_failed(err, false);
            return;
        }
        c->connecting_ = false;
        ev_io_stop(c->pool_->loop_, &c->wio_);
        c->user_->origin_connected();
        return;
    }
    if (revents & EV_READ)
        c->user_->origin_readable();
    else
        c->user_->origin_writable();
}

void
OriginConn::on_timer(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* c = static_cast<OriginConn*>(w->data);
    if (c->user_ == nullptr) {
        c->pool_->close(c);
        return;
    }
    c->user_->origin_failed(ETIMEDOUT, true);
}

OriginPool::OriginPool(struct ev_loop* loop, const Address& origin,
                       double connect_timeout, double idle_timeout)
    : loop_(loop), origin_(origin), connect_timeout_(connect_timeout),
      idle_timeout_(idle_timeout)
{}

OriginPool::~OriginPool()
{
    for (OriginConn* c : all_)
        delete c;
}

OriginConn*
OriginPool::acquire(OriginUser* user, int* err) noexcept
{
    while (!idle_.empty()) {
        OriginConn* c = idle_.back();
        idle_.pop_back();
        c->stop();
        c->user_ = user;
        c->reused_ = true;
        c->in_.clear();
        return c;
    }
    PendingConnect pc = connect_nonblocking(origin_, err);
    if (!pc.fd)
        return nullptr;
    auto* c = new OriginConn(this, std::move(pc.fd), pc.in_progress);
    all_.insert(c);
    c->user_ = user;
    if (pc.in_progress) {
        c->want_write(true);
        c->arm(connect_timeout_);
    }
    return c;
}

void
OriginPool::release(OriginConn* c) noexcept
{
    c->stop();
    c->user_ = nullptr;
    if (idle_timeout_ <= 0 || !c->in_.empty()) {
        close(c);
        return;
    }
    c->in_.release_memory();
    ev_io_start(loop_, &c->rio_);
    c->timer_.repeat = idle_timeout_;
    ev_timer_again(loop_, &c->timer_);
    idle_.push_back(c);
}

void
OriginPool::close(OriginConn* c) noexcept
{
    c->stop();
    auto it = std::find(idle_.begin(), idle_.end(), c);
    if (it != idle_.end())
        idle_.erase(it);
    all_.erase(c);
    delete c;
}

}  // namespace sj
