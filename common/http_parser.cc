#include "common/http_parser.h"

#include <cstring>

#include "common/check.h"

namespace sj {

namespace {

struct ErrorInfo {
    int status;
    const char* name;
};

// Indexed by HttpError; keep in the enum's order.
constexpr ErrorInfo kErrors[] = {
    {0, ""},
    {400, "bad method"},
    {400, "bad request-target"},
    {400, "bad http version"},
    // RFC 9110 §15.6.6: 505 for a major version the server does not support.
    {505, "http version not supported"},
    {400, "bad start line"},
    // RFC 9112 §3: 414 for a request-target longer than the server wishes to
    // parse; the method and version are short, so a long request line is a
    // long target.
    {414, "start line too long"},
    {400, "bad status code"},
    // RFC 9112 §2.2 lets a recipient accept a bare LF; a proxy must not,
    // because the next hop might not, and the two would split differently.
    {400, "bad line ending"},
    // RFC 9112 §5.2: a server must reject obs-fold (or replace it, which a
    // proxy forwarding bytes cannot do consistently).
    {400, "obsolete line folding"},
    // RFC 9112 §5.1: whitespace between field name and colon must be
    // rejected with 400 (it has been used to smuggle Transfer-Encoding past
    // parsers that strip it).
    {400, "whitespace before colon"},
    {400, "bad field name"},
    // RFC 9110 §5.5: CR, LF and NUL in a field value must be rejected.
    {400, "bad field value"},
    // RFC 6585 §5: 431 Request Header Fields Too Large.
    {431, "field line too large"},
    {431, "header section too large"},
    {431, "too many header fields"},
    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, with more
    // than one Host, or with an invalid Host value.
    {400, "missing host"},
    {400, "duplicate host"},
    {400, "bad host"},
    {400, "bad content-length"},
    // RFC 9112 §6.3 (5) lets a recipient accept "5, 5" or two identical
    // fields as one length. We refuse: no correct sender emits duplicates,
    // and a hop that keeps the first while another keeps the last is how
    // Content-Length smuggling works.
    {400, "duplicate content-length"},
    // RFC 9112 §6.1: a server may reject a request with both fields, and
    // must close after it; §6.3 (3): "ought to be handled as an error".
    {400, "content-length with transfer-encoding"},
    // RFC 9112 §6.3 (4): a request whose final coding is not chunked must
    // be answered 400 and the connection closed.
    {400, "chunked is not the final transfer coding"},
    // RFC 9112 §6.1: a server receiving a transfer coding it does not
    // understand should answer 501. "gzip, chunked" is well framed, but we
    // would have to decode gzip to forward a coherent message.
    {501, "unsupported transfer coding"},
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means the
    // framing is faulty, even with a Content-Length.
    {400, "transfer-encoding in http/1.0"},
    {400, "bad chunk size"},
    {400, "chunk extension too long"},
    {400, "bad chunk framing"},
    // RFC 9110 §6.5.1: framing fields cannot be sent in a trailer section.
    {400, "framing field in trailers"},
    {413, "body too large"},
    {400, "truncated message"},
    {400, "malformed message"},
};

static_assert(sizeof(kErrors) / sizeof(kErrors[0]) ==
              static_cast<size_t>(HttpError::kMalformed) + 1);

inline char
lower(char c) noexcept
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

inline bool
is_ows(char c) noexcept
{
    return c == ' ' || c == '\t';
}

// The start-line bytes the head scanner looks at one by one: CR, LF, HTAB,
// and in a request-line SP (the spacing rules).
inline bool
is_start_special(char c, bool request) noexcept
{
    return c == '\r' || c == '\n' || c == '\t' || (request && c == ' ');
}

inline int
hex_value(char c) noexcept
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

std::string_view
trim_ows(std::string_view s) noexcept
{
    while (!s.empty() && is_ows(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_ows(s.back()))
        s.remove_suffix(1);
    return s;
}

// uri-host [ ":" port ] from RFC 3986: reg-name, IPv4 or IP-literal
// characters. Refuses what could change the meaning of the authority for a
// hop that builds a URL from it ("/", "@", "?", "#", whitespace).
bool
valid_host(std::string_view s) noexcept
{
    for (char c : s) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9'))
            continue;
        if (std::strchr("-._~%!$&'()*+,;=:[]", c) == nullptr || c == '\0')
            return false;
    }
    return true;
}

}  // namespace

int
http_error_status(HttpError error) noexcept
{
    return kErrors[static_cast<size_t>(error)].status;
}

const char*
http_error_name(HttpError error) noexcept
{
    return kErrors[static_cast<size_t>(error)].name;
}

bool
http_iequals(std::string_view a, std::string_view b) noexcept
{
    if (a.size() != b.size())
        return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

// --- HttpMessage -----------------------------------------------------------

std::string_view
HttpMessage::header_name(size_t i) const noexcept
{
    const HttpFieldRef& f = headers_[i];
    return std::string_view(head_).substr(f.name_off, f.name_len);
}

std::string_view
HttpMessage::header_value(size_t i) const noexcept
{
    const HttpFieldRef& f = headers_[i];
    return std::string_view(head_).substr(f.value_off, f.value_len);
}

std::optional<std::string_view>
HttpMessage::header(std::string_view name) const noexcept
{
    for (size_t i = 0; i < headers_.size(); ++i)
        if (http_iequals(header_name(i), name))
            return header_value(i);
    return std::nullopt;
}

size_t
HttpMessage::header_occurrences(std::string_view name) const noexcept
{
    size_t n = 0;
    for (size_t i = 0; i < headers_.size(); ++i)
        if (http_iequals(header_name(i), name))
            ++n;
    return n;
}

std::string_view
HttpMessage::trailer_name(size_t i) const noexcept
{
    const HttpFieldRef& f = trailers_[i];
    return std::string_view(head_).substr(f.name_off, f.name_len);
}

std::string_view
HttpMessage::trailer_value(size_t i) const noexcept
{
    const HttpFieldRef& f = trailers_[i];
    return std::string_view(head_).substr(f.value_off, f.value_len);
}

std::optional<std::string_view>
HttpMessage::trailer(std::string_view name) const noexcept
{
    for (size_t i = 0; i < trailers_.size(); ++i)
        if (http_iequals(trailer_name(i), name))
            return trailer_value(i);
    return std::nullopt;
}

bool
HttpMessage::has_body() const noexcept
{
    switch (framing) {
    case BodyFraming::kNone: return false;
    case BodyFraming::kContentLength: return content_length > 0;
    default: return true;
    }
}

void
HttpMessage::clear() noexcept
{
    version_major = version_minor = 0;
    status = 0;
    keep_alive = upgrade = has_content_length = false;
    framing = BodyFraming::kNone;
    content_length = 0;
    head_.clear();  // keeps the capacity: no allocation on the next message
    method_ = target_ = reason_ = Span{};
    headers_.clear();
    trailers_.clear();
}

// --- llhttp callbacks ------------------------------------------------------

struct HttpParserCallbacks {
    static HttpParser* self(llhttp_t* p) noexcept
    {
        return static_cast<HttpParser*>(p->data);
    }

    static int on_message_begin(llhttp_t* p) noexcept
    {
        self(p)->started_ = true;
        return HPE_OK;
    }

    static int on_method(llhttp_t* p, const char* at, size_t len) noexcept
    {
        HttpParser* s = self(p);
        return s->append(&s->msg_.method_, at, len);
    }

    static int on_url(llhttp_t* p, const char* at, size_t len) noexcept
    {
        HttpParser* s = self(p);
        return s->append(&s->msg_.target_, at, len);
    }

    static int on_status(llhttp_t* p, const char* at, size_t len) noexcept
    {
        HttpParser* s = self(p);
        return s->append(&s->msg_.reason_, at, len);
    }

    static int on_header_field(llhttp_t* p, const char* at, size_t len) noexcept
    {
        HttpParser* s = self(p);
        if (s->last_ != HttpParser::Last::kField) {
            s->cur_ = HttpFieldRef{};
            s->cur_.name_off = static_cast<uint32_t>(s->msg_.head_.size());
            s->last_ = HttpParser::Last::kField;
        }
        s->msg_.head_.append(at, len);
        s->cur_.name_len += static_cast<uint32_t>(len);
        return HPE_OK;
    }

    static int on_header_field_complete(llhttp_t* p) noexcept
    {
        return self(p)->field_done();
    }

    static int on_header_value(llhttp_t* p, const char* at, size_t len) noexcept
    {
        HttpParser* s = self(p);
        switch (s->last_) {
        case HttpParser::Last::kFieldDone:
            s->cur_.value_off = static_cast<uint32_t>(s->msg_.head_.size());
            s->last_ = HttpParser::Last::kValue;
            break;
        case HttpParser::Last::kValue: break;
        default:
            // A value after a complete value is llhttp reporting obs-fold
            // (the head scanner refuses it earlier; this catches trailers).
            s->fail(HttpError::kObsFold);
            return HPE_USER;
        }
        s->msg_.head_.append(at, len);
        s->cur_.value_len += static_cast<uint32_t>(len);
        return HPE_OK;
    }

    static int on_header_value_complete(llhttp_t* p) noexcept
    {
        return self(p)->value_done();
    }

    static int on_headers_complete(llhttp_t* p) noexcept
    {
        return self(p)->headers_complete();
    }

    static int on_body(llhttp_t* p, const char* at, size_t len) noexcept
    {
        HttpParser* s = self(p);
        s->body_bytes_ += len;
        if (s->max_body_ != 0 && s->body_bytes_ > s->max_body_) {
            s->fail(HttpError::kBodyTooLarge);
            return HPE_USER;
        }
        s->body_.emplace_back(at, len);
        return HPE_OK;
    }

    static int on_message_complete(llhttp_t* p) noexcept
    {
        HttpParser* s = self(p);
        // F_SKIPBODY is set by now, so llhttp's answer is right for HEAD
        // and 204/304 responses too.
        s->msg_.keep_alive = s->msg_.keep_alive &&
                             llhttp_should_keep_alive(p) != 0;
        s->state_ = HttpParser::State::kComplete;
        // Stop here so that pipelined messages are handed out one at a time.
        return HPE_PAUSED;
    }

    static const llhttp_settings_t* settings() noexcept
    {
        static const llhttp_settings_t s = [] {
            llhttp_settings_t t;
            llhttp_settings_init(&t);
            t.on_message_begin = on_message_begin;
            t.on_method = on_method;
            t.on_url = on_url;
            t.on_status = on_status;
            t.on_header_field = on_header_field;
            t.on_header_field_complete = on_header_field_complete;
            t.on_header_value = on_header_value;
            t.on_header_value_complete = on_header_value_complete;
            t.on_headers_complete = on_headers_complete;
            t.on_body = on_body;
            t.on_message_complete = on_message_complete;
            return t;
        }();
        return &s;
    }
};

// --- HttpParser ------------------------------------------------------------

HttpParser::HttpParser(HttpParserType type, const HttpLimits& limits) noexcept
    : type_(type), limits_(limits)
{
    llhttp_init(&llhttp_,
                type == HttpParserType::kRequest ? HTTP_REQUEST : HTTP_RESPONSE,
                HttpParserCallbacks::settings());
    llhttp_.data = this;
    msg_.head_.reserve(2048);
    msg_.headers_.reserve(32);
    body_.reserve(16);
}

void
HttpParser::reset() noexcept
{
    llhttp_reset(&llhttp_);  // also clears the pause left by the last message
    state_ = State::kHead;
    error_ = HttpError::kNone;
    why_ = "";
    headers_done_ = started_ = false;
    head_request_ = connect_request_ = false;
    body_bytes_ = 0;
    scan_cr_ = false;
    scan_in_start_ = true;
    scan_head_end_ = scan_prev_sp_ = false;
    scan_sp_count_ = 0;
    scan_line_len_ = scan_start_bytes_ = scan_section_bytes_ = 0;
    scan_lines_ = 0;
    chunk_ = Chunk::kSizeStart;
    chunk_left_ = 0;
    chunk_digits_ = 0;
    chunk_ext_ = 0;
    last_ = Last::kNone;
    field_ = Field::kOther;
    in_trailers_ = seen_cl_ = seen_te_ = seen_host_ = false;
    te_chunked_final_ = te_other_ = false;
    te_chunked_ = 0;
    cur_ = HttpFieldRef{};
    msg_.clear();
    body_.clear();
}

void
HttpParser::set_request_method(std::string_view method) noexcept
{
    head_request_ = method == "HEAD";
    connect_request_ = method == "CONNECT";
}

bool
HttpParser::in_progress() const noexcept
{
    return state_ == State::kBody || (state_ == State::kHead && started_);
}

const char*
HttpParser::error_message() const noexcept
{
    if (state_ != State::kFailed)
        return "";
    return why_ != nullptr && *why_ != '\0' ? why_ : http_error_name(error_);
}

void
HttpParser::fail(HttpError error, const char* why) noexcept
{
    if (state_ == State::kFailed)
        return;  // keep the first, most specific error
    state_ = State::kFailed;
    error_ = error;
    why_ = why != nullptr ? why : http_error_name(error);
}

int
HttpParser::append(HttpMessage::Span* span, const char* at, size_t len) noexcept
{
    if (span->len == 0)
        span->off = static_cast<uint32_t>(msg_.head_.size());
    // Pieces of one item arrive back to back, nothing else is appended in
    // between, so the item stays contiguous in head_.
    CHECK(span->off + span->len == msg_.head_.size());
    msg_.head_.append(at, len);
    span->len += static_cast<uint32_t>(len);
    return HPE_OK;
}

int
HttpParser::field_done() noexcept
{
    std::string_view name = msg_.view({cur_.name_off, cur_.name_len});
    last_ = Last::kFieldDone;
    if (name.empty()) {
        fail(HttpError::kBadHeaderName, "empty field name");
        return HPE_USER;
    }
    // llhttp keeps "Host " (space before the colon) as the field name.
    if (std::memchr(name.data(), ' ', name.size()) != nullptr ||
        std::memchr(name.data(), '\t', name.size()) != nullptr) {
        fail(HttpError::kSpaceBeforeColon);
        return HPE_USER;
    }
    field_ = Field::kOther;
    // Runs once per field line: the length picks the one name to compare.
    bool cl = false, te = false, host = false;
    switch (name.size()) {
    case 4: host = http_iequals(name, "host"); break;
    case 14: cl = http_iequals(name, "content-length"); break;
    case 17: te = http_iequals(name, "transfer-encoding"); break;
    default: break;
    }
    if (in_trailers_) {
        if (cl || te) {
            fail(HttpError::kForbiddenTrailer);
            return HPE_USER;
        }
        return HPE_OK;
    }
    // These run before llhttp's own checks of the same fields, which fire
    // on the value, so each case gets its own error.
    if (cl) {
        if (seen_cl_) {
            fail(HttpError::kDuplicateContentLength);
            return HPE_USER;
        }
        if (seen_te_) {
            fail(HttpError::kContentLengthWithTransferEncoding);
            return HPE_USER;
        }
        seen_cl_ = true;
        field_ = Field::kContentLength;
    } else if (te) {
        if (seen_cl_) {
            fail(HttpError::kContentLengthWithTransferEncoding);
            return HPE_USER;
        }
        seen_te_ = true;
        field_ = Field::kTransferEncoding;
    } else if (host) {
        if (seen_host_) {
            fail(HttpError::kDuplicateHost);
            return HPE_USER;
        }
        seen_host_ = true;
        field_ = Field::kHost;
    }
    return HPE_OK;
}

int
HttpParser::check_transfer_encoding(std::string_view value) noexcept
{
    // A list, possibly over several field lines (RFC 9110 §5.3); empty
    // elements are allowed by the list syntax and ignored.
    while (!value.empty()) {
        size_t comma = value.find(',');
        std::string_view item = trim_ows(value.substr(0, comma));
        value = comma == std::string_view::npos ? std::string_view()
                                                : value.substr(comma + 1);
        if (item.empty())
            continue;
        if (http_iequals(item, "chunked")) {
            ++te_chunked_;
            te_chunked_final_ = true;
        } else {
            te_other_ = true;
            te_chunked_final_ = false;
        }
    }
    return HPE_OK;
}

int
HttpParser::value_done() noexcept
{
    if (last_ == Last::kFieldDone) {
        cur_.value_off = static_cast<uint32_t>(msg_.head_.size());
        cur_.value_len = 0;
    }
    last_ = Last::kValueDone;
    // llhttp drops leading OWS but keeps trailing OWS (RFC 9112 §5: not part
    // of the value).
    while (cur_.value_len > 0 &&
           is_ows(msg_.head_[cur_.value_off + cur_.value_len - 1]))
        --cur_.value_len;
    std::string_view value = msg_.view({cur_.value_off, cur_.value_len});

    switch (field_) {
    case Field::kContentLength: {
        // RFC 9110 §8.6: 1*DIGIT. llhttp has refused lists and signs by now;
        // checked again here so that the rule does not hang on it.
        uint64_t n = 0;
        if (value.empty()) {
            fail(HttpError::kBadContentLength);
            return HPE_USER;
        }
        for (char c : value) {
            if (c < '0' || c > '9' || n > (UINT64_MAX - 9) / 10) {
                fail(HttpError::kBadContentLength);
                return HPE_USER;
            }
            n = n * 10 + static_cast<uint64_t>(c - '0');
        }
        if (max_body_ != 0 && n > max_body_) {
            fail(HttpError::kBodyTooLarge);
            return HPE_USER;
        }
        msg_.has_content_length = true;
        msg_.content_length = n;
        break;
    }
    case Field::kTransferEncoding: check_transfer_encoding(value); break;
    case Field::kHost:
        if (!valid_host(value)) {
            fail(HttpError::kBadHost);
            return HPE_USER;
        }
        break;
    case Field::kOther: break;
    }
    field_ = Field::kOther;
    if (in_trailers_)
        msg_.trailers_.push_back(cur_);
    else
        msg_.headers_.push_back(cur_);
    return HPE_OK;
}

int
HttpParser::headers_complete() noexcept
{
    headers_done_ = true;
    in_trailers_ = true;
    last_ = Last::kNone;
    if (!scan_head_end_) {
        // llhttp found the end of the head where the scanner did not: they
        // disagree on framing, which is exactly what must never pass.
        fail(HttpError::kMalformed, "head end mismatch");
        return HPE_USER;
    }
    msg_.version_major = llhttp_.http_major;
    msg_.version_minor = llhttp_.http_minor;
    msg_.upgrade = llhttp_.upgrade != 0;
    bool http10 = msg_.version_major == 1 && msg_.version_minor == 0;
    bool request = type_ == HttpParserType::kRequest;

    if (msg_.version_major != 1) {
        fail(HttpError::kVersionNotSupported);
        return HPE_USER;
    }
    if (request) {
        if (!http10 && !seen_host_) {
            fail(HttpError::kMissingHost);
            return HPE_USER;
        }
    } else {
        msg_.status = llhttp_.status_code;
        // RFC 9110 §15: status codes are 100..599.
        if (msg_.status < 100 || msg_.status > 599) {
            fail(HttpError::kBadStatus);
            return HPE_USER;
        }
    }

    if (seen_te_) {
        if (http10) {
            fail(HttpError::kTransferEncodingHttp10);
            return HPE_USER;
        }
        // RFC 9112 §7: chunked must not be applied twice.
        if (te_chunked_ > 1) {
            fail(HttpError::kChunkedNotFinal, "chunked applied twice");
            return HPE_USER;
        }
        if (request && !te_chunked_final_) {
            fail(HttpError::kChunkedNotFinal);
            return HPE_USER;
        }
        // For a response, a final coding other than chunked is legal and
        // means "read until close" (RFC 9112 §6.3 (4)); codings before a
        // final chunked we cannot decode, in either direction.
        if (te_chunked_final_ && te_other_) {
            fail(HttpError::kUnsupportedTransferEncoding);
            return HPE_USER;
        }
    }

    bool skip = false;
    if (!request) {
        int st = msg_.status;
        // RFC 9110 §6.4.1, RFC 9112 §6.3 (1)-(2): these never have a body,
        // whatever Content-Length says. llhttp would read one after a 204
        // or 304 with Content-Length.
        if (head_request_ || st / 100 == 1 || st == 204 || st == 304) {
            skip = true;
        } else if (connect_request_ && st / 100 == 2) {
            skip = true;
            msg_.upgrade = true;  // the connection is now a tunnel
        }
    }

    if (skip)
        msg_.framing = BodyFraming::kNone;
    else if (llhttp_.flags & F_CHUNKED)
        msg_.framing = BodyFraming::kChunked;
    else if (seen_te_)
        msg_.framing = BodyFraming::kUntilClose;
    else if (seen_cl_)
        msg_.framing = BodyFraming::kContentLength;
    else
        msg_.framing = request ? BodyFraming::kNone : BodyFraming::kUntilClose;

    // Provisional (refined when the message completes): what a streaming
    // caller may rely on while the body is still arriving.
    bool ka = http10 ? (llhttp_.flags & F_CONNECTION_KEEP_ALIVE) != 0
                     : (llhttp_.flags & F_CONNECTION_CLOSE) == 0;
    msg_.keep_alive = ka && msg_.framing != BodyFraming::kUntilClose;

    state_ = State::kBody;
    scan_line_len_ = scan_section_bytes_ = scan_lines_ = 0;  // trailers
    return skip ? 1 : HPE_OK;
}

HttpError
HttpParser::map_llhttp_error(llhttp_errno_t err) const noexcept
{
    switch (err) {
    case HPE_INVALID_METHOD:
        // RFC 9110 §9.1 suggests 501 for an unknown method, but llhttp
        // cannot tell an unknown token from garbage (TLS on port 80), and
        // 400 is the honest answer to the latter.
        return HttpError::kBadMethod;
    case HPE_INVALID_URL: return HttpError::kBadTarget;
    case HPE_INVALID_CONSTANT:
    case HPE_INVALID_VERSION: return HttpError::kBadVersion;
    case HPE_INVALID_STATUS: return HttpError::kBadStatus;
    case HPE_INVALID_HEADER_TOKEN:
        return last_ == Last::kFieldDone || last_ == Last::kValue
                   ? HttpError::kBadHeaderValue
                   : HttpError::kBadHeaderName;
    case HPE_INVALID_CONTENT_LENGTH: return HttpError::kBadContentLength;
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        return HttpError::kContentLengthWithTransferEncoding;
    case HPE_INVALID_TRANSFER_ENCODING: return HttpError::kChunkedNotFinal;
    case HPE_INVALID_CHUNK_SIZE:
    case HPE_STRICT:
        return headers_done_ ? HttpError::kBadChunkSize : HttpError::kMalformed;
    case HPE_LF_EXPECTED:
    case HPE_CR_EXPECTED: return HttpError::kBadLineEnding;
    case HPE_UNEXPECTED_SPACE: return HttpError::kObsFold;
    case HPE_INVALID_EOF_STATE: return HttpError::kTruncated;
    default: return HttpError::kMalformed;
    }
}

size_t
HttpParser::execute(const char* data, size_t len) noexcept
{
    if (len == 0)
        return 0;
    llhttp_errno_t err = llhttp_execute(&llhttp_, data, len);
    if (err == HPE_OK)
        return len;
    const char* pos = llhttp_get_error_pos(&llhttp_);
    size_t used = pos != nullptr && pos >= data && pos <= data + len
                      ? static_cast<size_t>(pos - data)
                      : 0;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        if (state_ != State::kComplete)
            fail(HttpError::kMalformed, "unexpected pause");
        return used;
    }
    // HPE_USER: a callback has already called fail() with the real reason.
    fail(map_llhttp_error(err), llhttp_get_error_reason(&llhttp_));
    return used;
}

// The head scanner: checks the raw bytes of the start line and header
// section for what llhttp tolerates (line endings, folding, spacing) and
// enforces HttpLimits, counting every byte, whitespace that llhttp skips
// included. Stops after the empty line that ends the head.
size_t
HttpParser::scan_head(const char* data, size_t len) noexcept
{
    const bool request = type_ == HttpParserType::kRequest;
    for (size_t i = 0; i < len; ++i) {
        if (!scan_cr_ && !scan_in_start_ && scan_line_len_ > 0) {
            // Inside a field line only CR and LF matter: skip to the next
            // one with memchr instead of looking at every byte, since this
            // scan runs on every request and response head.
            const char* p = data + i;
            size_t left = len - i;
            const void* cr = std::memchr(p, '\r', left);
            size_t n =
                cr ? static_cast<size_t>(static_cast<const char*>(cr) - p)
                   : left;
            if (n > 0) {
                if (std::memchr(p, '\n', n) != nullptr) {
                    fail(HttpError::kBadLineEnding, "bare lf");
                    return i;
                }
                scan_line_len_ += n;
                scan_section_bytes_ += n;
                if (scan_line_len_ > limits_.header_line) {
                    fail(HttpError::kHeaderLineTooLarge);
                    return i;
                }
                if (scan_section_bytes_ > limits_.header_total) {
                    fail(HttpError::kHeaderSectionTooLarge);
                    return i;
                }
                i += n;
                if (i == len)
                    return len;
            }
        }
        if (!scan_cr_ && scan_in_start_ && (request || scan_line_len_ > 12)) {
            // Inside the start line, past the status code of a response,
            // only a few bytes need the checks below: skip the others in a
            // tight loop. The run stops at the request-line limit so that
            // the byte over it still fails below.
            size_t left = len - i;
            size_t room = limits_.request_line > scan_start_bytes_
                              ? limits_.request_line - scan_start_bytes_
                              : 0;
            size_t stop = left < room ? left : room;
            size_t n = 0;
            if (request) {
                while (n < stop && !is_start_special(data[i + n], true))
                    ++n;
            } else {
                while (n < stop && !is_start_special(data[i + n], false))
                    ++n;
            }
            if (n > 0) {
                scan_line_len_ += n;
                scan_start_bytes_ += n;
                if (request)
                    scan_prev_sp_ = false;
                i += n;
                if (i == len)
                    return len;
            }
        }
        char c = data[i];
        if (scan_cr_) {
            scan_cr_ = false;
            if (c != '\n') {
                fail(HttpError::kBadLineEnding, "cr without lf");
                return i;
            }
            if (scan_in_start_) {
                if (scan_line_len_ == 0) {
                    // RFC 9112 §2.2: empty lines before the request-line
                    // are ignored; they count against the limit.
                    scan_start_bytes_ += 2;
                    if (scan_start_bytes_ > limits_.request_line) {
                        fail(HttpError::kStartLineTooLong);
                        return i;
                    }
                    continue;
                }
                if (scan_prev_sp_) {
                    fail(HttpError::kBadStartLine, "trailing space");
                    return i;
                }
                scan_in_start_ = false;
                scan_line_len_ = 0;
                continue;
            }
            if (scan_line_len_ == 0) {
                scan_head_end_ = true;
                return i + 1;
            }
            scan_section_bytes_ += 2;
            if (++scan_lines_ > limits_.header_count) {
                fail(HttpError::kTooManyHeaders);
                return i;
            }
            if (scan_section_bytes_ > limits_.header_total) {
                fail(HttpError::kHeaderSectionTooLarge);
                return i;
            }
            scan_line_len_ = 0;
            continue;
        }
        if (c == '\r') {
            scan_cr_ = true;
            continue;
        }
        if (c == '\n') {
            fail(HttpError::kBadLineEnding, "bare lf");
            return i;
        }
        if (scan_in_start_) {
            size_t at = scan_line_len_++;
            if (++scan_start_bytes_ > limits_.request_line) {
                fail(HttpError::kStartLineTooLong);
                return i;
            }
            if (c == '\t') {
                fail(HttpError::kBadStartLine, "tab in start line");
                return i;
            }
            if (request) {
                // RFC 9112 §3: method SP request-target SP HTTP-version,
                // single spaces; llhttp skips extra ones.
                if (c == ' ') {
                    if (scan_prev_sp_ || at == 0 || ++scan_sp_count_ > 2) {
                        fail(HttpError::kBadStartLine, "bad spacing");
                        return i;
                    }
                }
                scan_prev_sp_ = c == ' ';
            } else {
                // RFC 9112 §4: HTTP-version SP 3DIGIT SP reason.
                bool sp_here = at == 8 || at == 12;
                if ((c == ' ') != sp_here && at <= 12) {
                    fail(HttpError::kBadStartLine, "bad status line");
                    return i;
                }
                if (at >= 9 && at <= 11 && (c < '0' || c > '9')) {
                    fail(HttpError::kBadStatus);
                    return i;
                }
            }
            continue;
        }
        if (scan_line_len_ == 0 && is_ows(c)) {
            fail(HttpError::kObsFold);
            return i;
        }
        if (++scan_line_len_ > limits_.header_line) {
            fail(HttpError::kHeaderLineTooLarge);
            return i;
        }
        if (++scan_section_bytes_ > limits_.header_total) {
            fail(HttpError::kHeaderSectionTooLarge);
            return i;
        }
    }
    return len;
}

// The chunked shadow parser: walks the framing of a chunked body (RFC 9112
// §7.1) ahead of llhttp, because llhttp 8.1 takes any two bytes after chunk
// data as the CRLF, and "\rX" as the end of a chunk-size line or trailer
// section. Returns the bytes up to the end of the message, or len.
size_t
HttpParser::scan_chunked(const char* data, size_t len) noexcept
{
    size_t i = 0;
    while (i < len) {
        char c = data[i];
        switch (chunk_) {
        case Chunk::kSizeStart:
        case Chunk::kSize: {
            int v = hex_value(c);
            if (v >= 0) {
                // 16 hex digits fill a uint64_t; llhttp would catch the
                // overflow too, but an endless run of zeros it would not.
                if (++chunk_digits_ > 16) {
                    fail(HttpError::kBadChunkSize, "chunk size overflow");
                    return i;
                }
                chunk_left_ = chunk_left_ * 16 + static_cast<uint64_t>(v);
                chunk_ = Chunk::kSize;
            } else if (chunk_ == Chunk::kSize && c == ';') {
                chunk_ = Chunk::kExt;
                chunk_ext_ = 0;
            } else if (chunk_ == Chunk::kSize && c == '\r') {
                chunk_ = Chunk::kSizeLf;
            } else if (c == '\n') {
                fail(HttpError::kBadLineEnding, "bare lf in chunk line");
                return i;
            } else {
                fail(HttpError::kBadChunkSize);
                return i;
            }
            ++i;
            break;
        }
        case Chunk::kExt:
            if (c == '\r') {
                chunk_ = Chunk::kSizeLf;
            } else if (c == '\n') {
                fail(HttpError::kBadLineEnding, "bare lf in chunk line");
                return i;
            } else if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') ||
                       c == 0x7f) {
                fail(HttpError::kBadChunkSize, "control in chunk extension");
                return i;
            } else if (++chunk_ext_ > kMaxChunkExtension) {
                fail(HttpError::kChunkExtensionTooLong);
                return i;
            }
            ++i;
            break;
        case Chunk::kSizeLf:
            if (c != '\n') {
                fail(HttpError::kBadLineEnding, "cr without lf in chunk line");
                return i;
            }
            chunk_ = chunk_left_ == 0 ? Chunk::kTrailerStart : Chunk::kData;
            chunk_digits_ = 0;
            ++i;
            break;
        case Chunk::kData: {
            uint64_t n = len - i;
            if (n > chunk_left_)
                n = chunk_left_;
            i += n;
            chunk_left_ -= n;
            if (chunk_left_ == 0)
                chunk_ = Chunk::kDataCr;
            break;
        }
        case Chunk::kDataCr:
        case Chunk::kDataLf:
            if (c != (chunk_ == Chunk::kDataCr ? '\r' : '\n')) {
                fail(HttpError::kBadChunkFraming, "no crlf after chunk data");
                return i;
            }
            chunk_ = chunk_ == Chunk::kDataCr ? Chunk::kDataLf
                                              : Chunk::kSizeStart;
            ++i;
            break;
        case Chunk::kTrailerStart:
            if (c == '\r') {
                chunk_ = Chunk::kFinalLf;
                ++i;
                break;
            }
            if (is_ows(c)) {
                fail(HttpError::kObsFold);
                return i;
            }
            chunk_ = Chunk::kTrailer;
            scan_line_len_ = 0;
            [[fallthrough]];
        case Chunk::kTrailer:
            if (c == '\r') {
                chunk_ = Chunk::kTrailerLf;
            } else if (c == '\n') {
                fail(HttpError::kBadLineEnding, "bare lf in trailer");
                return i;
            } else if (++scan_line_len_ > limits_.header_line) {
                fail(HttpError::kHeaderLineTooLarge);
                return i;
            } else if (++scan_section_bytes_ > limits_.header_total) {
                fail(HttpError::kHeaderSectionTooLarge);
                return i;
            }
            ++i;
            break;
        case Chunk::kTrailerLf:
            if (c != '\n') {
                fail(HttpError::kBadLineEnding, "cr without lf in trailer");
                return i;
            }
            scan_section_bytes_ += 2;
            if (++scan_lines_ > limits_.header_count) {
                fail(HttpError::kTooManyHeaders);
                return i;
            }
            chunk_ = Chunk::kTrailerStart;
            ++i;
            break;
        case Chunk::kFinalLf:
            if (c != '\n') {
                fail(HttpError::kBadLineEnding, "cr without lf at body end");
                return i;
            }
            chunk_ = Chunk::kDone;
            return i + 1;
        case Chunk::kDone: return i;
        }
    }
    return len;
}

size_t
HttpParser::feed(const char* data, size_t len) noexcept
{
    if (state_ == State::kComplete || state_ == State::kFailed)
        return 0;
    body_.clear();
    size_t off = 0;
    if (state_ == State::kHead) {
        size_t n = scan_head(data, len);
        if (failed())
            return n;
        size_t used = execute(data, n);
        if (failed())
            return used;
        if (used != n) {
            fail(HttpError::kMalformed, "head end mismatch");
            return used;
        }
        if (!scan_head_end_)
            return n;
        if (!headers_done_) {
            fail(HttpError::kMalformed, "head end mismatch");
            return n;
        }
        if (state_ == State::kComplete)
            return n;
        off = n;
    }
    CHECK(state_ == State::kBody);
    size_t lim = len - off;
    bool chunked = msg_.framing == BodyFraming::kChunked;
    if (chunked) {
        lim = scan_chunked(data + off, lim);
        if (failed())
            return off + lim;
    }
    size_t used = execute(data + off, lim);
    if (failed())
        return off + used;
    // The shadow parser and llhttp must agree on where the message ends.
    if (chunked && ((chunk_ == Chunk::kDone) != done() || used != lim)) {
        fail(HttpError::kMalformed, "chunked framing mismatch");
        return off + used;
    }
    CHECK(off + used <= len);
    return off + used;
}

bool
HttpParser::finish() noexcept
{
    if (state_ == State::kFailed)
        return false;
    if (state_ == State::kComplete || !in_progress())
        return true;
    llhttp_errno_t err = llhttp_finish(&llhttp_);
    if (err == HPE_PAUSED && state_ == State::kComplete)
        return true;
    if (err == HPE_OK && state_ == State::kComplete)
        return true;
    fail(HttpError::kTruncated);
    return false;
}

}  // namespace sj
