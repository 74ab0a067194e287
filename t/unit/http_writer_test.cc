// Unit tests for common/http_writer: exact bytes, refusal of anything that
// could split a message, and a round trip through the parser.

#include "common/http_writer.h"

#include <string>

#include "common/http_parser.h"
#include "t/unit/tap.h"

using namespace std::string_literals;

namespace {

void
test_lines()
{
    std::string out;
    tap::ok(sj::http_write_request_line(&out, "GET", "/a?b=c"),
            "request line written");
    tap::is(out, std::string("GET /a?b=c HTTP/1.1\r\n"), "request line bytes");
    out.clear();
    tap::ok(sj::http_write_request_line(&out, "HEAD", "/", 1, 0),
            "request line 1.0");
    tap::is(out, std::string("HEAD / HTTP/1.0\r\n"), "request line 1.0 bytes");
    out = "keep";
    tap::ok(!sj::http_write_request_line(&out, "GET", "/a b"),
            "target with space refused");
    tap::ok(!sj::http_write_request_line(&out, "GET", "/a\r\nX: y"),
            "target with crlf refused");
    tap::ok(!sj::http_write_request_line(&out, "G T", "/"),
            "method not a token refused");
    tap::ok(!sj::http_write_request_line(&out, "GET", ""), "empty target");
    tap::is(out, std::string("keep"), "refusals leave the buffer alone");

    out.clear();
    tap::ok(sj::http_write_status_line(&out, 404), "status line");
    tap::is(out, std::string("HTTP/1.1 404 Not Found\r\n"),
            "status line uses the standard phrase");
    out.clear();
    sj::http_write_status_line(&out, 200, "Fine Thanks");
    tap::is(out, std::string("HTTP/1.1 200 Fine Thanks\r\n"), "own reason");
    tap::ok(!sj::http_write_status_line(&out, 99), "status 99 refused");
    tap::ok(!sj::http_write_status_line(&out, 600), "status 600 refused");
    tap::ok(!sj::http_write_status_line(&out, 200, "OK\r\nSet-Cookie: x"),
            "reason with crlf refused");
    tap::is(std::string(sj::http_reason_phrase(431)),
            std::string("Request Header Fields Too Large"), "phrase 431");
    tap::is(std::string(sj::http_reason_phrase(502)),
            std::string("Bad Gateway"), "phrase 502");
    tap::is(std::string(sj::http_reason_phrase(299)), std::string(""),
            "no phrase for 299");
}

void
test_headers()
{
    std::string out;
    tap::ok(sj::http_write_header(&out, "X-Mixed-Case", "a, b;q=1"),
            "header written");
    tap::is(out, std::string("X-Mixed-Case: a, b;q=1\r\n"),
            "header verbatim");
    out.clear();
    tap::ok(sj::http_write_header(&out, "Content-Length", uint64_t{1234567}),
            "number header");
    tap::is(out, std::string("Content-Length: 1234567\r\n"), "number bytes");
    out = "";
    tap::ok(!sj::http_write_header(&out, "X", "a\r\nSet-Cookie: evil"),
            "crlf in value refused");
    tap::ok(!sj::http_write_header(&out, "X", "a\rb"), "cr in value refused");
    tap::ok(!sj::http_write_header(&out, "X", "a\nb"), "lf in value refused");
    tap::ok(!sj::http_write_header(&out, "X", "a\0b"s), "nul in value refused");
    tap::ok(!sj::http_write_header(&out, "X", "a\x01"), "ctl refused");
    tap::ok(!sj::http_write_header(&out, "X: y\r\nZ", "v"),
            "name with crlf refused");
    tap::ok(!sj::http_write_header(&out, "X Y", "v"), "name with space");
    tap::ok(!sj::http_write_header(&out, "", "v"), "empty name");
    tap::ok(!sj::http_write_header(&out, "X", " padded"), "leading space");
    tap::is(out, std::string(""), "nothing written by refusals");
    tap::ok(sj::http_write_header(&out, "X", ""), "empty value allowed");
    tap::ok(sj::http_write_header(&out, "X", "caf\xc3\xa9\tok"),
            "obs-text and tab allowed");
}

void
test_chunks()
{
    std::string out;
    tap::ok(sj::http_write_chunk_header(&out, 255), "chunk header");
    tap::is(out, std::string("ff\r\n"), "chunk size in hex");
    tap::ok(!sj::http_write_chunk_header(&out, 0), "size 0 refused");
    out.clear();
    sj::http_write_chunk(&out, "hello");
    sj::http_write_chunk_header(&out, 6);
    out += " world";
    sj::http_write_chunk_end(&out);
    sj::http_write_last_chunk(&out);
    sj::http_write_header(&out, "X-Sum", "7");
    sj::http_end_head(&out);
    tap::is(out,
            std::string("5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 7\r\n\r\n"),
            "chunked body bytes");
}

void
test_round_trip()
{
    std::string out;
    sj::http_write_request_line(&out, "POST", "/submit?x=1");
    sj::http_write_header(&out, "Host", "example.com:8080");
    sj::http_write_header(&out, "X-Thing", "Some Value");
    sj::http_write_header(&out, "Transfer-Encoding", "chunked");
    sj::http_end_head(&out);
    sj::http_write_chunk(&out, "abc");
    sj::http_write_chunk(&out, std::string(300, 'z'));
    sj::http_write_last_chunk(&out);
    sj::http_write_header(&out, "Trailer-A", "t");
    sj::http_end_head(&out);

    sj::HttpParser p(sj::HttpParserType::kRequest);
    size_t n = p.feed(out.data(), out.size());
    tap::ok(p.done() && n == out.size(), "round trip request: parsed whole");
    const sj::HttpMessage& m = p.message();
    tap::is(m.method(), std::string_view("POST"), "round trip: method");
    tap::is(m.target(), std::string_view("/submit?x=1"), "round trip: target");
    tap::is(m.header_count(), size_t{3}, "round trip: 3 headers");
    tap::ok(m.header_count() == 3 && m.header_name(1) == "X-Thing" &&
                m.header_value(1) == "Some Value",
            "round trip: header name and value identical");
    std::string body;
    for (auto s : p.body())
        body.append(s);
    tap::is(body, "abc" + std::string(300, 'z'), "round trip: body");
    tap::ok(m.trailer("trailer-a") == std::string_view("t"),
            "round trip: trailer");

    std::string resp;
    sj::http_write_status_line(&resp, 201);
    sj::http_write_header(&resp, "Location", "/x/1");
    sj::http_write_header(&resp, "Content-Length", uint64_t{2});
    sj::http_end_head(&resp);
    resp += "ok";
    sj::HttpParser r(sj::HttpParserType::kResponse);
    r.set_request_method("POST");
    r.feed(resp.data(), resp.size());
    tap::ok(r.done() && r.message().status == 201 &&
                r.message().reason() == "Created" &&
                r.message().header("location") == std::string_view("/x/1"),
            "round trip response");

    std::string err = sj::http_error_response(414, "uri too long");
    tap::is(err, std::string("HTTP/1.1 414 URI Too Long\r\n"
                             "Content-Type: text/plain\r\n"
                             "Content-Length: 13\r\n"
                             "Connection: close\r\n\r\n"
                             "uri too long\n"),
            "error response bytes");
    sj::HttpParser e(sj::HttpParserType::kResponse);
    e.set_request_method("GET");
    e.feed(err.data(), err.size());
    tap::ok(e.done() && e.message().status == 414 &&
                !e.message().keep_alive && e.body_bytes() == 13,
            "error response parses back");
    std::string ka = sj::http_error_response(503, {}, false);
    tap::ok(ka.find("Connection") == std::string::npos &&
                ka.find("\r\n\r\nService Unavailable\n") != std::string::npos,
            "error response without close, default text");
    tap::ok(sj::http_error_response(42).rfind("HTTP/1.1 500 ", 0) == 0,
            "bad status becomes 500");
}

}  // namespace

int
main()
{
    test_lines();
    test_headers();
    test_chunks();
    test_round_trip();
    return tap::done_testing();
}
