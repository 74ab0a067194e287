// libFuzzer target for common/http_parser: the input (after a first byte
// that seeds the split points) is parsed as a stream of pipelined requests
// and as a stream of responses, once in one feed and once in pseudo-random
// pieces. Invariants: feed() never consumes more than it is given, body
// bytes lie inside the input, and the split does not change which messages
// complete or what they contain (only which error is reported first may
// differ, when a stream has two faults).

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/http_parser.h"

namespace {

void
require(bool cond)
{
    if (!cond)
        __builtin_trap();
}

struct Outcome {
    std::vector<std::string> messages;
    bool failed = false;
};

std::string
describe(const sj::HttpParser& p, const std::string& body)
{
    const sj::HttpMessage& m = p.message();
    std::string s(m.method());
    s += '|';
    s += m.target();
    s += '|';
    s += m.reason();
    s += '|' + std::to_string(m.status) + '|' +
         std::to_string(m.version_major) + std::to_string(m.version_minor);
    for (size_t i = 0; i < m.header_count(); ++i) {
        s += m.header_name(i);
        s += '=';
        s += m.header_value(i);
        s += ';';
    }
    for (size_t i = 0; i < m.trailer_count(); ++i) {
        s += m.trailer_name(i);
        s += '=';
        s += m.trailer_value(i);
        s += ';';
    }
    s += "|" + body + "|" + std::to_string(m.keep_alive) +
         std::to_string(m.upgrade) +
         std::to_string(static_cast<int>(m.framing));
    return s;
}

// seed == 0: one feed; otherwise pieces of 1..16 bytes from a small LCG.
Outcome
parse(sj::HttpParserType type, const uint8_t* data, size_t size,
      uint32_t seed)
{
    sj::HttpLimits limits;
    limits.request_line = 512;  // small limits reach the limit paths too
    limits.header_line = 256;
    limits.header_total = 1024;
    limits.header_count = 16;
    sj::HttpParser p(type, limits);
    p.set_max_body(1 << 16);
    const char* in = reinterpret_cast<const char*>(data);
    Outcome out;
    std::string body;
    size_t pos = 0;
    uint32_t rng = seed;
    int method_pick = 0;
    static const char* const kMethods[] = {"GET", "HEAD", "CONNECT", "POST"};
    if (type == sj::HttpParserType::kResponse)
        p.set_request_method(kMethods[0]);
    while (pos < size) {
        size_t piece = size - pos;
        if (seed != 0) {
            rng = rng * 1103515245u + 12345u;
            size_t want = 1 + ((rng >> 16) % 16);
            if (want < piece)
                piece = want;
        }
        size_t n = p.feed(in + pos, piece);
        require(n <= piece);
        for (auto span : p.body()) {
            require(span.data() >= in + pos && span.data() + span.size() <=
                                                   in + pos + n);
            body.append(span);
        }
        pos += n;
        if (p.failed()) {
            require(p.error() != sj::HttpError::kNone);
            require(sj::http_error_status(p.error()) >= 400);
            out.failed = true;
            return out;
        }
        if (p.done()) {
            require(p.headers_done());
            out.messages.push_back(describe(p, body));
            body.clear();
            bool upgrade = p.message().upgrade;
            p.reset();
            if (upgrade)
                return out;  // the rest is not HTTP
            if (type == sj::HttpParserType::kResponse)
                p.set_request_method(kMethods[++method_pick % 4]);
        } else {
            require(n == piece);
        }
    }
    bool in_progress = p.in_progress();
    if (!p.finish())
        out.failed = true;
    else if (in_progress && p.done())
        out.messages.push_back(describe(p, body));
    return out;
}

}  // namespace

extern "C" int
LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t seed = data[0] | 1u;
    ++data;
    --size;
    for (auto type : {sj::HttpParserType::kRequest,
                      sj::HttpParserType::kResponse}) {
        Outcome whole = parse(type, data, size, 0);
        Outcome split = parse(type, data, size, seed);
        require(whole.failed == split.failed);
        require(whole.messages == split.messages);
    }
    return 0;
}
