#include "heartbeatd/control_link.h"

#include <sys/socket.h>

#include <cerrno>

#include "common/address.h"
#include "common/control.h"
#include "common/log.h"
#include "common/net.h"
#include "heartbeatd/probe.h"

namespace sj::hb {

ControlLink::ControlLink(struct ev_loop* loop, std::string daemon,
                         std::string path, Snapshot snapshot) noexcept
    : loop_(loop), daemon_(std::move(daemon)), path_(std::move(path)),
      snapshot_(std::move(snapshot))
{
    ev_io_init(&io_, on_io, -1, 0);
    io_.data = this;
    ev_timer_init(&timer_, on_timer, 0., 0.);
    timer_.data = this;
}

ControlLink::~ControlLink()
{
    ev_io_stop(loop_, &io_);
    ev_timer_stop(loop_, &timer_);
}

void
ControlLink::abandon() noexcept
{
    ev_io_stop(loop_, &io_);
    ev_timer_stop(loop_, &timer_);
    fd_.reset();
}

void
ControlLink::start() noexcept
{
    connect();
}

void
ControlLink::arm(double after) noexcept
{
    ev_timer_stop(loop_, &timer_);
    ev_timer_set(&timer_, after, 0.);
    ev_timer_start(loop_, &timer_);
}

void
ControlLink::connect() noexcept
{
    Address addr;
    std::string err;
    int e = 0;
    PendingConnect pc;
    if (parse_address("unix:" + path_, &addr, &err))
        pc = connect_nonblocking(addr, &e);
    else
        e = ENAMETOOLONG;
    // A Unix connect completes at once or fails; EAGAIN (a full backlog)
    // is a failure to retry like any other.
    if (!pc.fd || pc.in_progress) {
        if (pc.in_progress)
            e = EAGAIN;
        if (!warned_)
            log_warn("%s: cannot connect to %s: %s; retrying", daemon_.c_str(),
                     path_.c_str(), errno_text(e).c_str());
        warned_ = true;
        arm(backoff_);
        backoff_ = std::min(backoff_ * 2, kMaxBackoff);
        return;
    }
    fd_ = std::move(pc.fd);
    connected_ = true;
    warned_ = false;
    backoff_ = kMinBackoff;
    in_flight_ = false;
    in_.clear();
    out_.clear();
    std::vector<std::string> snap = snapshot_();
    queue_.assign(snap.begin(), snap.end());
    log_info("%s: connected to %s; sending a snapshot of %zu lines",
             daemon_.c_str(), path_.c_str(), queue_.size());
    ev_io_set(&io_, fd_.get(), EV_READ);
    ev_io_start(loop_, &io_);
    arm(kPingInterval);
    pump();
}

void
ControlLink::drop(const std::string& why) noexcept
{
    log_warn("%s: control connection lost (%s); reconnecting", daemon_.c_str(),
             why.c_str());
    ev_io_stop(loop_, &io_);
    fd_.reset();
    connected_ = false;
    in_flight_ = false;
    queue_.clear();
    warned_ = false;
    arm(backoff_);
    backoff_ = std::min(backoff_ * 2, kMaxBackoff);
}

void
ControlLink::send(const std::string& line) noexcept
{
    if (!connected_)
        return;
    queue_.push_back(line);
    pump();
}

void
ControlLink::pump() noexcept
{
    if (!connected_)
        return;
    if (!in_flight_ && !queue_.empty()) {
        current_ = std::move(queue_.front());
        queue_.pop_front();
        out_ += current_ + "\n";
        in_flight_ = true;
        arm(kReplyTimeout);
    }
    while (!out_.empty()) {
        ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            drop(errno_text(errno));
            return;
        }
        out_.erase(0, static_cast<size_t>(n));
    }
    ev_io_stop(loop_, &io_);
    ev_io_set(&io_, fd_.get(), EV_READ | (out_.empty() ? 0 : EV_WRITE));
    ev_io_start(loop_, &io_);
}

void
ControlLink::read_replies() noexcept
{
    for (;;) {
        char buf[4096];
        ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            drop(errno_text(errno));
            return;
        }
        if (n == 0) {
            drop("closed by " + daemon_);
            return;
        }
        in_.append(buf, static_cast<size_t>(n));
        if (in_.size() > kControlHeaderLen + 65536) {
            drop("reply too large");
            return;
        }
    }
    while (in_.size() >= kControlHeaderLen) {
        int status = 0;
        size_t len = 0;
        if (!control_parse_header(
                std::string_view(in_).substr(0, kControlHeaderLen), &status,
                &len)) {
            drop("bad reply header");
            return;
        }
        if (in_.size() < kControlHeaderLen + len)
            break;
        std::string body = in_.substr(kControlHeaderLen, len);
        in_.erase(0, kControlHeaderLen + len);
        if (!in_flight_) {
            drop("reply to nothing");
            return;
        }
        in_flight_ = false;
        ++answered_;
        while (!body.empty() && body.back() == '\n')
            body.pop_back();
        if (status == 200) {
            log_debug("%s: %s: ok", daemon_.c_str(), current_.c_str());
        } else {
            // "node health php/php1 up" -> "node health"
            std::vector<std::string> words;
            std::string err;
            control_split(current_, &words, &err);
            std::string cmd = words.size() >= 2 ? words[0] + " " + words[1]
                                                : current_;
            if (status != 404 || unknown_.insert(cmd).second)
                log_warn("%s: '%s' answered %d: %s; going on", daemon_.c_str(),
                         current_.c_str(), status, body.c_str());
        }
        arm(kPingInterval);
    }
    pump();
}

void
ControlLink::on_io(struct ev_loop*, ev_io* w, int revents) noexcept
{
    auto* self = static_cast<ControlLink*>(w->data);
    if (revents & EV_READ) {
        self->read_replies();
        if (!self->connected_)
            return;
    }
    if (revents & EV_WRITE)
        self->pump();
}

void
ControlLink::on_timer(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* self = static_cast<ControlLink*>(w->data);
    if (!self->connected_)
        self->connect();
    else if (self->in_flight_)
        self->drop("no reply within " +
                   std::to_string(static_cast<int>(kReplyTimeout)) + " s");
    else
        self->send("ping");
}

}  // namespace sj::hb
