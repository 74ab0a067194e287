#include "heartbeatd/stream_probe.h"

#include <openssl/err.h>
#include <sys/socket.h>

#include <cerrno>

#include "common/net.h"

namespace sj::hb {

StreamProbe::StreamProbe(struct ev_loop* loop, const ProbeTarget& target,
                         SSL_CTX* tls_ctx) noexcept
    : Probe(loop, target), tls_ctx_(tls_ctx)
{
    ev_io_init(&io_, on_io, -1, 0);
    io_.data = this;
}

StreamProbe::~StreamProbe()
{
    StreamProbe::release();
}

void
StreamProbe::release() noexcept
{
    ev_io_stop(loop_, &io_);
    ssl_.reset();
    fd_.reset();
    phase_ = Phase::kIdle;
}

void
StreamProbe::watch(int events) noexcept
{
    if (io_.fd == fd_.get() && (io_.events & (EV_READ | EV_WRITE)) == events &&
        ev_is_active(&io_))
        return;
    ev_io_stop(loop_, &io_);
    ev_io_set(&io_, fd_.get(), events);
    ev_io_start(loop_, &io_);
}

void
StreamProbe::begin() noexcept
{
    int err = 0;
    PendingConnect pc = connect_nonblocking(target_.address, &err);
    if (!pc.fd) {
        fail("connect: " + errno_text(err));
        return;
    }
    fd_ = std::move(pc.fd);
    phase_ = Phase::kConnecting;
    if (pc.in_progress)
        watch(EV_WRITE);
    else
        connected();
}

void
StreamProbe::connected() noexcept
{
    if (tls_ctx_ == nullptr) {
        phase_ = Phase::kOpen;
        watch(EV_READ);
        on_connected();
        return;
    }
    ssl_.reset(SSL_new(tls_ctx_));
    if (!ssl_ || SSL_set_fd(ssl_.get(), fd_.get()) != 1) {
        fail("tls: " + ssl_error_string());
        return;
    }
    // Many servers close without close_notify; that is the end of the
    // response, not an error.
    SSL_set_options(ssl_.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
    const std::string& host = target_.check.host;
    if (!host.empty())
        ssl_set_client_host(ssl_.get(), host);
    SSL_set_connect_state(ssl_.get());
    phase_ = Phase::kHandshake;
    handshake();
}

void
StreamProbe::handshake() noexcept
{
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_.get());
    if (r == 1) {
        phase_ = Phase::kOpen;
        watch(EV_READ);
        on_connected();
        return;
    }
    int e = SSL_get_error(ssl_.get(), r);
    if (e == SSL_ERROR_WANT_READ)
        watch(EV_READ);
    else if (e == SSL_ERROR_WANT_WRITE)
        watch(EV_WRITE);
    else if (e == SSL_ERROR_SYSCALL && errno != 0)
        fail("tls handshake: " + errno_text(errno));
    else
        fail("tls handshake: " + ssl_error_string());
}

void
StreamProbe::send(std::string_view data) noexcept
{
    out_.append(data);
    if (phase_ == Phase::kOpen)
        pump();
}

void
StreamProbe::pump() noexcept
{
    // Write what is queued.
    while (!out_.empty()) {
        ssize_t n;
        if (ssl_) {
            ERR_clear_error();
            int r = SSL_write(ssl_.get(), out_.data(),
                              static_cast<int>(out_.size()));
            if (r <= 0) {
                int e = SSL_get_error(ssl_.get(), r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    want_write_ = e == SSL_ERROR_WANT_WRITE;
                    break;
                }
                fail("tls write: " + ssl_error_string());
                return;
            }
            n = r;
        } else {
            n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    break;
                fail("send: " + errno_text(errno));
                return;
            }
        }
        out_.erase(0, static_cast<size_t>(n));
        want_write_ = false;
    }
    // Read what arrived.
    bool eof = false, got = false;
    for (;;) {
        char buf[16384];
        ssize_t n;
        if (ssl_) {
            ERR_clear_error();
            int r = SSL_read(ssl_.get(), buf, sizeof buf);
            if (r <= 0) {
                int e = SSL_get_error(ssl_.get(), r);
                if (e == SSL_ERROR_WANT_READ)
                    break;
                if (e == SSL_ERROR_WANT_WRITE) {
                    want_write_ = true;
                    break;
                }
                if (e == SSL_ERROR_ZERO_RETURN ||
                    (e == SSL_ERROR_SYSCALL && errno == 0)) {
                    eof = true;
                    break;
                }
                fail("tls read: " + ssl_error_string());
                return;
            }
            n = r;
        } else {
            n = ::recv(fd_.get(), buf, sizeof buf, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    break;
                fail("recv: " + errno_text(errno));
                return;
            }
            if (n == 0) {
                eof = true;
                break;
            }
        }
        if (in_.size() + static_cast<size_t>(n) > kMaxInput) {
            fail("response larger than 1 MB");
            return;
        }
        in_.append(buf, static_cast<size_t>(n));
        got = true;
    }
    if (got || eof) {
        on_input(eof);
        if (phase_ != Phase::kOpen)
            return;  // finished
        if (eof) {
            fail("connection closed");
            return;
        }
    }
    watch(EV_READ | ((!out_.empty() || want_write_) ? EV_WRITE : 0));
}

void
StreamProbe::on_io(struct ev_loop*, ev_io* w, int) noexcept
{
    auto* self = static_cast<StreamProbe*>(w->data);
    switch (self->phase_) {
    case Phase::kConnecting: {
        int err = finish_connect(self->fd_.get());
        if (err != 0) {
            self->fail("connect: " + errno_text(err));
            return;
        }
        self->connected();
        break;
    }
    case Phase::kHandshake: self->handshake(); break;
    case Phase::kOpen: self->pump(); break;
    case Phase::kIdle: ev_io_stop(self->loop_, w); break;
    }
}

}  // namespace sj::hb
