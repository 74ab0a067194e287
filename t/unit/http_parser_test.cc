// Unit tests for common/http_parser: framing, pipelining, every split of the
// input, the strictness rules and the limits.

#include "common/http_parser.h"

#include <string>
#include <vector>

using namespace std::string_literals;

#include "t/unit/tap.h"

using sj::BodyFraming;
using sj::HttpError;
using sj::HttpLimits;
using sj::HttpParser;
using sj::HttpParserType;

namespace {

constexpr auto kReq = HttpParserType::kRequest;
constexpr auto kResp = HttpParserType::kResponse;

// Everything observable about one parsed message, flattened to a string so
// that results of different splits compare with one tap::is.
struct Parsed {
    std::vector<std::string> messages;  // one description per message
    HttpError error = HttpError::kNone;
    size_t consumed = 0;
};

std::string
describe(const HttpParser& p, const std::string& body)
{
    const sj::HttpMessage& m = p.message();
    std::string s;
    s += std::string(m.method()) + "|" + std::string(m.target()) + "|" +
         std::to_string(m.version_major) + "." +
         std::to_string(m.version_minor) + "|" + std::to_string(m.status) +
         "|" + std::string(m.reason()) + "|";
    for (size_t i = 0; i < m.header_count(); ++i)
        s += std::string(m.header_name(i)) + "=" +
             std::string(m.header_value(i)) + ";";
    s += "|body=" + body + "|";
    for (size_t i = 0; i < m.trailer_count(); ++i)
        s += std::string(m.trailer_name(i)) + "=" +
             std::string(m.trailer_value(i)) + ";";
    s += "|ka=" + std::to_string(m.keep_alive) +
         " up=" + std::to_string(m.upgrade) +
         " fr=" + std::to_string(static_cast<int>(m.framing)) +
         " cl=" + std::to_string(m.content_length);
    return s;
}

// Feeds `in` cut at the offsets in `cuts` (ascending), resetting after each
// message like a connection handler. `eof` calls finish() at the end.
Parsed
run(HttpParserType type, const std::string& in, std::vector<size_t> cuts,
    const HttpLimits& limits = HttpLimits{}, const char* req_method = "GET",
    bool eof = false, uint64_t max_body = 0)
{
    HttpParser p(type, limits);
    p.set_max_body(max_body);
    if (type == kResp)
        p.set_request_method(req_method);
    Parsed r;
    std::string body;
    cuts.push_back(in.size());
    size_t pos = 0;
    for (size_t cut : cuts) {
        while (pos < cut) {
            size_t n = p.feed(in.data() + pos, cut - pos);
            if (n > cut - pos) {
                r.error = HttpError::kMalformed;  // broken invariant
                return r;
            }
            for (auto span : p.body())
                body.append(span);
            pos += n;
            if (p.failed()) {
                r.error = p.error();
                r.consumed = pos;
                return r;
            }
            if (p.done()) {
                r.messages.push_back(describe(p, body));
                body.clear();
                p.reset();
                p.set_max_body(max_body);
                if (type == kResp)
                    p.set_request_method(req_method);
            } else if (n == 0) {
                break;  // wants more than this piece
            }
        }
    }
    if (eof) {
        bool in_progress = p.in_progress();
        if (!p.finish()) {
            r.error = p.error();
        } else if (in_progress && p.done()) {
            r.messages.push_back(describe(p, body));
        }
    }
    r.consumed = pos;
    return r;
}

Parsed
run_once(HttpParserType type, const std::string& in,
         const HttpLimits& limits = HttpLimits{})
{
    return run(type, in, {}, limits);
}

std::string
flat(const Parsed& r)
{
    std::string s = "err=" + std::to_string(static_cast<int>(r.error)) + "\n";
    for (auto& m : r.messages)
        s += m + "\n";
    return s;
}

// One byte at a time, and in two parts at every split point: all give the
// same result as a single feed.
void
check_splits(HttpParserType type, const std::string& in, const char* name,
             const char* req_method = "GET", bool eof = false)
{
    Parsed whole = run(type, in, {}, HttpLimits{}, req_method, eof);
    std::vector<size_t> every;
    for (size_t i = 1; i < in.size(); ++i)
        every.push_back(i);
    Parsed bytes = run(type, in, every, HttpLimits{}, req_method, eof);
    tap::is(flat(bytes), flat(whole),
            std::string(name) + ": byte at a time = one feed");
    bool all = true;
    for (size_t i = 1; i < in.size(); ++i) {
        Parsed two = run(type, in, {i}, HttpLimits{}, req_method, eof);
        if (flat(two) != flat(whole)) {
            tap::diag("split at " + std::to_string(i) + ": " + flat(two));
            all = false;
        }
    }
    tap::ok(all, std::string(name) + ": every two-part split = one feed");
}

void
expect_error(HttpParserType type, const std::string& in, HttpError want,
             int status, const std::string& name,
             const HttpLimits& limits = HttpLimits{})
{
    Parsed r = run_once(type, in, limits);
    tap::is(static_cast<int>(r.error), static_cast<int>(want),
            name + ": " + sj::http_error_name(want));
    std::vector<size_t> every;
    for (size_t i = 1; i < in.size(); ++i)
        every.push_back(i);
    Parsed b = run(type, in, every, limits);
    tap::is(static_cast<int>(b.error), static_cast<int>(want),
            name + ": same error byte by byte");
    if (status != 0)
        tap::is(sj::http_error_status(want), status,
                name + ": answered " + std::to_string(status));
}

const std::string kChunkedPost =
    "POST /upload HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "5;name=value\r\nhello\r\n"
    "6;flag\r\n world\r\n"
    "0\r\n"
    "X-Checksum: abc\r\n"
    "X-Other:  two words \r\n"
    "\r\n";

void
test_simple_get()
{
    std::string in =
        "GET /index.html?q=1 HTTP/1.1\r\n"
        "Host: example.com\r\n"
        "User-Agent: t/1\r\n"
        "Accept:   */*  \r\n"
        "X-Empty:\r\n"
        "\r\n";
    HttpParser p(kReq);
    size_t n = p.feed(in.data(), in.size());
    tap::is(n, in.size(), "get: all consumed");
    tap::ok(p.done() && !p.failed(), "get: done");
    const sj::HttpMessage& m = p.message();
    tap::is(m.method(), std::string_view("GET"), "get: method");
    tap::is(m.target(), std::string_view("/index.html?q=1"), "get: target");
    tap::ok(m.version_major == 1 && m.version_minor == 1, "get: version");
    tap::is(m.header_count(), size_t{4}, "get: 4 headers");
    tap::is(m.header_name(1), std::string_view("User-Agent"),
            "get: original case kept");
    tap::is(*m.header("user-agent"), std::string_view("t/1"),
            "get: lookup is case-insensitive");
    tap::is(*m.header("ACCEPT"), std::string_view("*/*"),
            "get: value trimmed of OWS");
    tap::ok(m.header("x-empty").has_value() && m.header("x-empty")->empty(),
            "get: empty value");
    tap::ok(!m.header("missing"), "get: missing header");
    tap::ok(m.keep_alive, "get: keep-alive by default in 1.1");
    tap::ok(m.framing == BodyFraming::kNone && !m.has_body(),
            "get: no body");
    tap::ok(!m.upgrade, "get: no upgrade");
    tap::is(p.feed("GET", 3), size_t{0}, "get: nothing consumed once done");
    p.reset();
    tap::ok(!p.done() && p.message().header_count() == 0, "get: reset");
}

void
test_post_content_length()
{
    std::string in =
        "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"
        "hello world";
    HttpParser p(kReq);
    size_t n = p.feed(in.data(), in.size());
    tap::is(n, in.size(), "post: all consumed");
    tap::ok(p.done(), "post: done");
    tap::ok(p.message().framing == BodyFraming::kContentLength,
            "post: content-length framing");
    tap::is(p.message().content_length, uint64_t{11}, "post: length");
    std::string body;
    for (auto s : p.body())
        body.append(s);
    tap::is(body, std::string("hello world"), "post: body");
    tap::ok(!p.body().empty() &&
                p.body()[0].data() >= in.data() &&
                p.body()[0].data() < in.data() + in.size(),
            "post: body is a view into the input, not a copy");

    // Half the body now, half later: the body streams.
    HttpParser q(kReq);
    size_t half = in.size() - 5;
    tap::is(q.feed(in.data(), half), half, "post: first part consumed");
    tap::ok(q.headers_done() && !q.done() && q.in_progress(),
            "post: headers done, body pending");
    tap::is(q.body_bytes(), uint64_t{6}, "post: 6 body bytes so far");
    q.feed(in.data() + half, 5);
    tap::ok(q.done() && q.body_bytes() == 11, "post: completes");
}

void
test_chunked()
{
    Parsed r = run_once(kReq, kChunkedPost);
    tap::is(r.messages.size(), size_t{1}, "chunked: one message");
    tap::is(r.consumed, kChunkedPost.size(), "chunked: all consumed");
    HttpParser p(kReq);
    p.feed(kChunkedPost.data(), kChunkedPost.size());
    std::string body;
    for (auto s : p.body())
        body.append(s);
    tap::is(body, std::string("hello world"), "chunked: de-chunked body");
    const sj::HttpMessage& m = p.message();
    tap::ok(m.framing == BodyFraming::kChunked, "chunked: framing");
    tap::is(m.trailer_count(), size_t{2}, "chunked: two trailers");
    tap::is(*m.trailer("x-checksum"), std::string_view("abc"),
            "chunked: trailer value");
    tap::is(*m.trailer("X-Other"), std::string_view("two words"),
            "chunked: trailer trimmed");
    tap::ok(!m.header("X-Checksum"), "chunked: trailers not in headers");
    tap::is(m.header_count(), size_t{2}, "chunked: header count unchanged");
}

void
test_pipelined()
{
    std::string a = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    std::string b =
        "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz";
    std::string c = "GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    Parsed two = run_once(kReq, a + b);
    tap::is(two.messages.size(), size_t{2}, "pipelined: two messages");
    Parsed three = run_once(kReq, a + b + c);
    tap::is(three.messages.size(), size_t{3}, "pipelined: three messages");
    tap::ok(three.messages.size() == 3 &&
                three.messages[1].find("|/b|") != std::string::npos &&
                three.messages[1].find("body=xyz") != std::string::npos &&
                three.messages[2].find("ka=0") != std::string::npos,
            "pipelined: each message intact");

    // By hand: feed() stops at the end of the first message.
    std::string all = a + b + c;
    HttpParser p(kReq);
    size_t n = p.feed(all.data(), all.size());
    tap::is(n, a.size(), "pipelined: stops after the first message");
    tap::is(p.message().target(), std::string_view("/a"), "pipelined: /a");
    p.reset();
    size_t m = p.feed(all.data() + n, all.size() - n);
    tap::is(m, b.size(), "pipelined: then the second");
    tap::is(p.message().target(), std::string_view("/b"), "pipelined: /b");
    check_splits(kReq, a + b + c, "pipelined");
}

void
test_splits()
{
    check_splits(kReq, "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n", "get");
    check_splits(kReq,
                 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
                 "post");
    check_splits(kReq, kChunkedPost, "chunked");
    check_splits(kResp,
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n"
                 "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
                 "responses");
    check_splits(kResp, "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil close",
                 "until close", "GET", true);
}

void
test_responses()
{
    // HEAD: Content-Length describes the GET body, none follows.
    std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    std::string next = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    Parsed r = run(kResp, head + next, {}, HttpLimits{}, "HEAD");
    tap::is(r.messages.size(), size_t{2}, "head: two responses, no body read");
    tap::ok(!r.messages.empty() &&
                r.messages[0].find("body=|") != std::string::npos &&
                r.messages[0].find("fr=0 cl=1234") != std::string::npos,
            "head: framing none, content-length kept");
    // The same bytes after a GET would be a 1234-byte body.
    Parsed g = run(kResp, head + next, {}, HttpLimits{}, "GET");
    tap::is(g.messages.size(), size_t{0}, "head: after GET the body is read");

    for (int st : {204, 304}) {
        std::string in = "HTTP/1.1 " + std::to_string(st) +
                         " X\r\nContent-Length: 5\r\n\r\n" + next;
        Parsed q = run_once(kResp, in);
        tap::is(q.messages.size(), size_t{2},
                std::to_string(st) + ": no body whatever Content-Length says");
    }
    Parsed cont = run_once(kResp, "HTTP/1.1 100 Continue\r\n\r\n" + next);
    tap::is(cont.messages.size(), size_t{2}, "100 then 200");

    // Until close.
    std::string uc = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc";
    HttpParser p(kResp);
    p.set_request_method("GET");
    tap::is(p.feed(uc.data(), uc.size()), uc.size(), "until close: consumed");
    tap::ok(!p.done(), "until close: not done before eof");
    tap::ok(p.message().framing == BodyFraming::kUntilClose &&
                !p.message().keep_alive,
            "until close: framing, no keep-alive");
    tap::ok(p.finish() && p.done(), "until close: finish completes");
    tap::ok(!p.message().keep_alive, "until close: not kept alive");

    // Truncated Content-Length body.
    HttpParser t(kResp);
    std::string tr = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    t.feed(tr.data(), tr.size());
    tap::ok(!t.finish() && t.error() == HttpError::kTruncated,
            "truncated body: kTruncated");

    // Status line and reason.
    HttpParser s(kResp);
    std::string sl = "HTTP/1.1 404 Not  Found\r\nContent-Length: 0\r\n\r\n";
    s.feed(sl.data(), sl.size());
    tap::ok(s.done() && s.message().status == 404 &&
                s.message().reason() == "Not  Found",
            "response: status and reason");

    // A response transfer coding other than chunked: read until close.
    Parsed gz = run(kResp,
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", {},
                    HttpLimits{}, "GET", true);
    tap::ok(gz.error == HttpError::kNone && gz.messages.size() == 1 &&
                gz.messages[0].find("fr=3") != std::string::npos,
            "response: te gzip read until close");

    // 101 and CONNECT 2xx: the rest is another protocol.
    HttpParser u(kResp);
    std::string up = "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                     "\x81\x05";
    size_t n = u.feed(up.data(), up.size());
    tap::ok(u.done() && u.message().upgrade && n == up.size() - 2,
            "101: upgrade, stops before the new protocol");
    HttpParser c(kResp);
    c.set_request_method("CONNECT");
    std::string co = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nTUNNEL";
    n = c.feed(co.data(), co.size());
    tap::ok(c.done() && c.message().upgrade && n == co.size() - 6,
            "connect 200: tunnel, no body");
}

void
test_keep_alive()
{
    auto ka = [](const std::string& in) {
        HttpParser p(kReq);
        p.feed(in.data(), in.size());
        return p.done() && p.message().keep_alive;
    };
    tap::ok(ka("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "keep-alive: 1.1");
    tap::ok(!ka("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
            "keep-alive: 1.1 connection close");
    tap::ok(!ka("GET / HTTP/1.1\r\nHost: a\r\nConnection: te, Close\r\n\r\n"),
            "keep-alive: close among other tokens");
    tap::ok(!ka("GET / HTTP/1.0\r\n\r\n"), "keep-alive: 1.0 default close");
    tap::ok(ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            "keep-alive: 1.0 with keep-alive");
    tap::ok(!ka("GET / HTTP/1.0\r\nHost: a\r\nConnection: close\r\n\r\n"),
            "keep-alive: 1.0 close");

    HttpParser p(kReq);
    std::string ws = "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\n\r\nFRAME";
    size_t n = p.feed(ws.data(), ws.size());
    tap::ok(p.done() && p.message().upgrade && n == ws.size() - 5,
            "upgrade request: flagged, stops before the frames");
}

void
test_errors()
{
    const std::string get = "GET / HTTP/1.1\r\nHost: a\r\n";
    const std::string post = "POST / HTTP/1.1\r\nHost: a\r\n";
    const std::string te = post + "Transfer-Encoding: chunked\r\n\r\n";

    // Smuggling: CL and TE.
    expect_error(kReq, post + "Transfer-Encoding: chunked\r\n"
                              "Content-Length: 5\r\n\r\n0\r\n\r\n",
                 HttpError::kContentLengthWithTransferEncoding, 400, "te+cl");
    expect_error(kReq, post + "Content-Length: 5\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 HttpError::kContentLengthWithTransferEncoding, 400, "cl+te");
    expect_error(kReq, post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
                 HttpError::kDuplicateContentLength, 400, "cl differing");
    expect_error(kReq, post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
                 HttpError::kDuplicateContentLength, 400, "cl identical twice");
    expect_error(kReq, post + "Content-Length: 5, 5\r\n\r\nhello",
                 HttpError::kBadContentLength, 400, "cl list");
    expect_error(kReq, post + "Content-Length: +5\r\n\r\nhello",
                 HttpError::kBadContentLength, 400, "cl sign");
    expect_error(kReq, post + "Content-Length: 0x5\r\n\r\nhello",
                 HttpError::kBadContentLength, 400, "cl hex");
    expect_error(kReq, post + "Content-Length: \r\n\r\n",
                 HttpError::kBadContentLength, 400, "cl empty");
    expect_error(kReq, post + "Content-Length: 99999999999999999999999\r\n\r\n",
                 HttpError::kBadContentLength, 400, "cl overflow");

    // Transfer-Encoding: only a final, single chunked.
    expect_error(kReq, post + "Transfer-Encoding: chunked, gzip\r\n\r\n",
                 HttpError::kChunkedNotFinal, 400, "te chunked, gzip");
    expect_error(kReq, post + "Transfer-Encoding: identity\r\n\r\n",
                 HttpError::kChunkedNotFinal, 400, "te identity");
    expect_error(kReq, post + "Transfer-Encoding: chunkedx\r\n\r\n",
                 HttpError::kChunkedNotFinal, 400, "te chunkedx");
    expect_error(kReq, post + "Transfer-Encoding: chunked, identity\r\n\r\n",
                 HttpError::kChunkedNotFinal, 400, "te chunked, identity");
    expect_error(kReq, post + "Transfer-Encoding: chunked\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n",
                 HttpError::kChunkedNotFinal, 400, "te chunked twice");
    expect_error(kReq,
                 post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                 HttpError::kUnsupportedTransferEncoding, 501,
                 "te gzip, chunked");
    expect_error(kReq, post + "Transfer-Encoding: gzip\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 HttpError::kUnsupportedTransferEncoding, 501,
                 "te gzip then chunked fields");
    expect_error(kReq, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "0\r\n\r\n",
                 HttpError::kTransferEncodingHttp10, 400, "te in http/1.0");

    // Chunks.
    expect_error(kReq, te + "zz\r\nhello\r\n0\r\n\r\n",
                 HttpError::kBadChunkSize, 400, "chunk size not hex");
    expect_error(kReq, te + "\r\nhello\r\n0\r\n\r\n",
                 HttpError::kBadChunkSize, 400, "chunk size empty");
    expect_error(kReq, te + "fffffffffffffffff\r\nhello\r\n0\r\n\r\n",
                 HttpError::kBadChunkSize, 400, "chunk size overflow");
    expect_error(kReq, te + "5 \r\nhello\r\n0\r\n\r\n",
                 HttpError::kBadChunkSize, 400, "chunk size trailing space");
    expect_error(kReq, te + "5;" + std::string(300, 'x') +
                           "\r\nhello\r\n0\r\n\r\n",
                 HttpError::kChunkExtensionTooLong, 400,
                 "chunk extension too long");
    expect_error(kReq, te + "5\r\nhelloXX0\r\n\r\n",
                 HttpError::kBadChunkFraming, 400,
                 "no crlf after chunk data");
    expect_error(kReq, te + "5\rXhello\r\n0\r\n\r\n",
                 HttpError::kBadLineEnding, 400, "chunk line cr without lf");
    expect_error(kReq, te + "5\nhello\r\n0\r\n\r\n",
                 HttpError::kBadLineEnding, 400, "chunk line bare lf");
    expect_error(kReq, te + "5\r\nhello\r\n0\r\n\rX",
                 HttpError::kBadLineEnding, 400, "last chunk cr without lf");
    expect_error(kReq, te + "5\r\nhello\r\n0\r\nT: v\r\n  w\r\n\r\n",
                 HttpError::kObsFold, 400, "obs-fold in trailers");
    expect_error(kReq, te + "0\r\nContent-Length: 5\r\n\r\n",
                 HttpError::kForbiddenTrailer, 400, "content-length trailer");

    // Field syntax.
    expect_error(kReq, get + "X: a\0b\r\n\r\n"s, HttpError::kBadHeaderValue,
                 400, "nul in value");
    expect_error(kReq, get + "X: a\x01b\r\n\r\n", HttpError::kBadHeaderValue,
                 400, "control in value");
    expect_error(kReq, get + "X: a\rb\r\n\r\n", HttpError::kBadLineEnding,
                 400, "cr in value");
    expect_error(kReq, get + "X: a\nb: c\r\n\r\n", HttpError::kBadLineEnding,
                 400, "lf in value");
    expect_error(kReq, get + "X: a\r\n b\r\n\r\n", HttpError::kObsFold, 400,
                 "obs-fold");
    expect_error(kReq, "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
                 HttpError::kObsFold, 400, "space before first field");
    expect_error(kReq, get + "X : a\r\n\r\n", HttpError::kSpaceBeforeColon,
                 400, "space before colon");
    expect_error(kReq, "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
                 HttpError::kSpaceBeforeColon, 400, "host space before colon");
    expect_error(kReq, get + "X\t: a\r\n\r\n", HttpError::kBadHeaderName,
                 400, "tab before colon");
    expect_error(kReq, get + ": a\r\n\r\n", HttpError::kBadHeaderName, 400,
                 "empty field name");
    expect_error(kReq, get + "X(: a\r\n\r\n", HttpError::kBadHeaderName, 400,
                 "non-token field name");

    // Line endings and the start line.
    expect_error(kReq, "GET / HTTP/1.1\nHost: a\r\n\r\n",
                 HttpError::kBadLineEnding, 400, "bare lf after request line");
    expect_error(kReq, get + "\n", HttpError::kBadLineEnding, 400,
                 "bare lf ending head");
    expect_error(kReq, get + "\rX", HttpError::kBadLineEnding, 400,
                 "cr x ending head");
    expect_error(kReq, "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
                 HttpError::kBadStartLine, 400, "double space");
    expect_error(kReq, "GET /\t HTTP/1.1\r\nHost: a\r\n\r\n",
                 HttpError::kBadStartLine, 400, "tab in target");
    expect_error(kReq, "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
                 HttpError::kBadStartLine, 400, "trailing space");
    expect_error(kReq, "FOO / HTTP/1.1\r\nHost: a\r\n\r\n",
                 HttpError::kBadMethod, 400, "unknown method");
    expect_error(kReq, "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
                 HttpError::kBadTarget, 400, "bad target");
    expect_error(kReq, "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
                 HttpError::kBadVersion, 400, "http/1.2");
    expect_error(kReq, "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
                 HttpError::kVersionNotSupported, 505, "http/2.0");

    // Host (RFC 9112 §3.2).
    expect_error(kReq, "GET / HTTP/1.1\r\nX: y\r\n\r\n",
                 HttpError::kMissingHost, 400, "missing host");
    expect_error(kReq, get + "Host: b\r\n\r\n", HttpError::kDuplicateHost,
                 400, "duplicate host");
    expect_error(kReq, get + "HOST: a\r\n\r\n", HttpError::kDuplicateHost,
                 400, "duplicate host, other case");
    expect_error(kReq, "GET / HTTP/1.1\r\nHost: a/b@c\r\n\r\n",
                 HttpError::kBadHost, 400, "bad host");
    Parsed h10 = run_once(kReq, "GET / HTTP/1.0\r\n\r\n");
    tap::ok(h10.error == HttpError::kNone && h10.messages.size() == 1,
            "http/1.0 without host is fine");
    Parsed hp = run_once(kReq, "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    tap::ok(hp.error == HttpError::kNone, "host ip-literal with port");

    // Body size.
    Parsed big = run(kReq, post + "Content-Length: 5\r\n\r\nhello", {},
                     HttpLimits{}, "GET", false, 4);
    tap::is(static_cast<int>(big.error),
            static_cast<int>(HttpError::kBodyTooLarge), "body too large: cl");
    tap::is(sj::http_error_status(HttpError::kBodyTooLarge), 413,
            "body too large: 413");
    Parsed bigc = run(kReq, te + "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", {},
                      HttpLimits{}, "GET", false, 4);
    tap::is(static_cast<int>(bigc.error),
            static_cast<int>(HttpError::kBodyTooLarge),
            "body too large: chunked");

    // A proxy must not be smuggled by the origin either.
    expect_error(kResp, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                        "Content-Length: 3\r\n\r\n0\r\n\r\n",
                 HttpError::kContentLengthWithTransferEncoding, 0,
                 "response te+cl");
    expect_error(kResp, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                        "Content-Length: 4\r\n\r\nabcd",
                 HttpError::kDuplicateContentLength, 0, "response cl twice");
    expect_error(kResp, "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
                 HttpError::kBadContentLength, 0, "response bad cl");
    expect_error(kResp, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "3\r\nabcXX0\r\n\r\n",
                 HttpError::kBadChunkFraming, 0, "response bad chunk");
    expect_error(kResp, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked"
                        "\r\n\r\n0\r\n\r\n",
                 HttpError::kChunkedNotFinal, 0, "response chunked twice");
    expect_error(kResp, "HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n",
                 HttpError::kBadStatus, 0, "response status 099");
    expect_error(kResp, "HTTP/1.1 600 OK\r\nContent-Length: 0\r\n\r\n",
                 HttpError::kBadStatus, 0, "response status 600");
    expect_error(kResp, "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
                 HttpError::kBadStatus, 0, "response status not digits");
    expect_error(kResp, "HTTP/1.1  200 OK\r\n\r\n", HttpError::kBadStartLine,
                 0, "response double space");
    expect_error(kResp, "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
                 HttpError::kBadLineEnding, 0, "response bare lf");
    expect_error(kResp, "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "0\r\n\r\n",
                 HttpError::kTransferEncodingHttp10, 0, "response te in 1.0");

    // After an error the parser stays failed until reset().
    HttpParser p(kReq);
    std::string bad = "GET / HTTP/1.1\r\nX: y\r\n\r\n";
    p.feed(bad.data(), bad.size());
    tap::ok(p.failed() && std::string(p.error_message()) == "missing host",
            "failed: message");
    tap::is(p.feed("GET", 3), size_t{0}, "failed: consumes nothing more");
    p.reset();
    std::string good = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    tap::ok(p.feed(good.data(), good.size()) == good.size() && p.done(),
            "failed: usable again after reset");
}

void
test_status_map()
{
    struct {
        HttpError e;
        int status;
    } map[] = {
        {HttpError::kNone, 0},
        {HttpError::kStartLineTooLong, 414},
        {HttpError::kHeaderLineTooLarge, 431},
        {HttpError::kHeaderSectionTooLarge, 431},
        {HttpError::kTooManyHeaders, 431},
        {HttpError::kUnsupportedTransferEncoding, 501},
        {HttpError::kVersionNotSupported, 505},
        {HttpError::kBodyTooLarge, 413},
        {HttpError::kMalformed, 400},
    };
    for (auto& m : map)
        tap::is(sj::http_error_status(m.e), m.status,
                std::string("status of ") + sj::http_error_name(m.e));
    bool named = true;
    for (int i = 1; i <= static_cast<int>(HttpError::kMalformed); ++i)
        named = named &&
                *sj::http_error_name(static_cast<HttpError>(i)) != '\0' &&
                sj::http_error_status(static_cast<HttpError>(i)) >= 400;
    tap::ok(named, "every error has a name and a 4xx/5xx status");
}

void
test_limits()
{
    HttpLimits def;
    std::string longurl = "GET /" + std::string(def.request_line, 'a') +
                          " HTTP/1.1\r\nHost: a\r\n\r\n";
    expect_error(kReq, longurl, HttpError::kStartLineTooLong, 414,
                 "default request line limit");
    std::string ok_url = "GET /" + std::string(def.request_line - 20, 'a') +
                         " HTTP/1.1\r\nHost: a\r\n\r\n";
    tap::ok(run_once(kReq, ok_url).error == HttpError::kNone,
            "request line just under the limit");
    std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (size_t i = 0; i < def.header_count; ++i)
        many += "X-" + std::to_string(i) + ": v\r\n";
    expect_error(kReq, many + "\r\n", HttpError::kTooManyHeaders, 431,
                 "default header count");
    expect_error(kReq, "GET / HTTP/1.1\r\nHost: a\r\nX: " +
                           std::string(def.header_line, 'v') + "\r\n\r\n",
                 HttpError::kHeaderLineTooLarge, 431, "default header line");
    std::string total = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < 20; ++i)
        total += "X-" + std::to_string(i) + ": " + std::string(4000, 'v') +
                 "\r\n";
    expect_error(kReq, total + "\r\n", HttpError::kHeaderSectionTooLarge, 431,
                 "default header section");

    HttpLimits small;
    small.request_line = 32;
    small.header_line = 24;
    small.header_total = 64;
    small.header_count = 3;
    expect_error(kReq, "GET /0123456789012345678901234567 HTTP/1.1\r\n\r\n",
                 HttpError::kStartLineTooLong, 414, "small request line",
                 small);
    expect_error(kReq, "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"
                       "\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n",
                 HttpError::kStartLineTooLong, 414,
                 "empty lines count against the request line", small);
    expect_error(kReq, "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789012345678901"
                       "\r\n\r\n",
                 HttpError::kHeaderLineTooLarge, 431, "small header line",
                 small);
    expect_error(kReq, "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n"
                       "C: 3\r\n\r\n",
                 HttpError::kTooManyHeaders, 431, "small header count", small);
    expect_error(kReq, "GET / HTTP/1.1\r\nHost: a\r\nA: 0123456789abcdefg\r\n"
                       "B: 0123456789abcdefg\r\nC: 0123456789abcdefg\r\n\r\n",
                 HttpError::kHeaderSectionTooLarge, 431, "small header total",
                 small);
    expect_error(kReq, "GET / HTTP/1.1\r\nHost:" + std::string(30, ' ') +
                           "a\r\n\r\n",
                 HttpError::kHeaderLineTooLarge, 431,
                 "skipped whitespace counts too", small);
    Parsed fits = run_once(kReq, "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\n"
                                 "B: 2\r\n\r\n", small);
    tap::ok(fits.error == HttpError::kNone && fits.messages.size() == 1,
            "small limits: a message that fits");
    std::string tr = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                     "chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4"
                     "\r\n\r\n";
    HttpLimits roomy = small;
    roomy.header_line = 64;
    expect_error(kReq, tr, HttpError::kTooManyHeaders, 431,
                 "trailer count limited", roomy);
}

}  // namespace

int
main()
{
    test_simple_get();
    test_post_content_length();
    test_chunked();
    test_pipelined();
    test_splits();
    test_responses();
    test_keep_alive();
    test_errors();
    test_status_map();
    test_limits();
    return tap::done_testing();
}
