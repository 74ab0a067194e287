// The http check: one request on a fresh connection (Connection: close),
// the response parsed by the suite's strict parser; the node passes when the
// status is one of expect_status and, if expect_body is set, the body
// contains it.

#include <algorithm>

#include "common/http_parser.h"
#include "heartbeatd/stream_probe.h"

namespace sj::hb {

namespace {

// Most body bytes kept to look for expect_body.
constexpr size_t kMaxBody = 256u << 10;

class HttpProbe : public StreamProbe {
public:
    HttpProbe(struct ev_loop* loop, const ProbeTarget& target,
              SSL_CTX* tls_ctx) noexcept
        : StreamProbe(loop, target, tls_ctx), parser_(HttpParserType::kResponse)
    {
        parser_.set_request_method(target.check.method);
    }

private:
    void on_connected() noexcept override
    {
        const CheckConfig& c = target_.check;
        std::string host = c.host.empty() ? target_.address_text : c.host;
        std::string req = c.method + " " + c.path +
                          " HTTP/1.1\r\nHost: " + host +
                          "\r\nUser-Agent: sunjammer-heartbeatd\r\n"
                          "Connection: close\r\n\r\n";
        send(req);
    }

    void on_input(bool eof) noexcept override
    {
        while (!in_.empty() && !parser_.done() && !parser_.failed()) {
            size_t n = parser_.feed(in_.data(), in_.size());
            for (std::string_view b : parser_.body()) {
                size_t room = kMaxBody - std::min(kMaxBody, body_.size());
                body_.append(b.substr(0, room));
            }
            in_.erase(0, n);
            if (n == 0)
                break;
        }
        if (eof && !parser_.done() && !parser_.failed())
            parser_.finish();
        if (parser_.failed()) {
            fail(std::string("bad response: ") + parser_.error_message());
            return;
        }
        if (!parser_.headers_done()) {
            if (eof)
                fail("connection closed before the response");
            return;
        }
        const CheckConfig& c = target_.check;
        int status = parser_.message().status;
        if (std::find(c.expect_status.begin(), c.expect_status.end(), status) ==
            c.expect_status.end()) {
            fail("status " + std::to_string(status));
            return;
        }
        std::string ok = "status " + std::to_string(status);
        if (c.expect_body.empty()) {
            pass(ok);
            return;
        }
        if (body_.find(c.expect_body) != std::string::npos) {
            pass(ok);
            return;
        }
        if (parser_.done() || eof || body_.size() >= kMaxBody)
            fail("body lacks \"" + c.expect_body + "\"");
    }

    HttpParser parser_;
    std::string body_;
};

}  // namespace

std::unique_ptr<Probe>
make_http_probe(struct ev_loop* loop, const ProbeTarget& target,
                SSL_CTX* tls_ctx)
{
    return std::make_unique<HttpProbe>(loop, target,
                                       target.check.tls ? tls_ctx : nullptr);
}

}  // namespace sj::hb
