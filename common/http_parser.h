#pragma once
// The HTTP/1.1 message parser shared by cached and balancerd: llhttp does the
// tokenising, this wrapper adds the checks a proxy needs so that it can never
// be made to see a different message boundary than the hop before or after
// it (request smuggling, response splitting), and collects the result in an
// HttpMessage without a heap allocation per header.
//
// What llhttp 8.1 accepts in its default ("strict") mode and this wrapper
// rejects on its own, found by probing the library:
//   - a bare LF (or a CR followed by anything but LF) ending the start line
//     or the header section ("\r\n\rX" ends llhttp's head);
//   - any two bytes after chunk data instead of CRLF ("5\r\nhelloXX0..."),
//     and "5\rX" ending a chunk-size line;
//   - obs-fold, whitespace between a field name and the colon, an empty field
//     name, a tab in the request-target, two spaces in the request line;
//   - HTTP/2.0 and HTTP/0.9 in a request line, status codes outside 100..599;
//   - a body on 204/304 responses that carry Content-Length;
//   - Transfer-Encoding in an HTTP/1.0 message;
//   - Transfer-Encoding codings other than a single final "chunked" (llhttp
//     takes "gzip, chunked" as chunked).
// llhttp's own checks (CL with TE, duplicate CL, CL syntax and overflow, chunk
// size syntax and overflow, CTLs in field values) stay in place, but the CL/TE
// and duplicate-CL cases are caught first by this wrapper so that each has a
// distinct HttpError.
//
// Usage on a connection, one parser per direction, reused across messages:
//
//   size_t n = parser.feed(buf, len);      // may stop before len
//   for (auto span : parser.body()) ...    // body bytes from this feed()
//   if (parser.failed()) -> answer http_error_status(parser.error()), close
//   if (parser.done())   -> handle parser.message(); parser.reset();
//                           feed the unconsumed bytes buf + n again
//
// Limitation: obs-text in field values (bytes 0x80-0xff) is accepted, as
// RFC 9110 §5.5 allows; chunk extensions are checked for length only, and
// llhttp 8.1 refuses a second extension that follows a valued one
// ("5;a=b;c=d"), which no known client sends.

#include <llhttp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"

namespace sj {

// Every reason a message is refused. Each maps to the status a server should
// answer a request with (http_error_status); a proxy reading a response from
// an origin answers 502 whatever the code.
enum class HttpError : uint8_t {
    kNone = 0,
    kBadMethod,               // 400: not a method llhttp knows
    kBadTarget,               // 400: bad character in the request-target
    kBadVersion,              // 400: not "HTTP/d.d"
    kVersionNotSupported,     // 505: a major version other than 1
    kBadStartLine,            // 400: tab, double space, leading space
    kStartLineTooLong,        // 414: request line over HttpLimits::request_line
    kBadStatus,               // 400: status code not 100..599
    kBadLineEnding,           // 400: bare LF, or CR not followed by LF
    kObsFold,                 // 400: a field line starting with SP or HTAB
    kSpaceBeforeColon,        // 400: whitespace between field name and colon
    kBadHeaderName,           // 400: empty or non-token field name
    kBadHeaderValue,          // 400: NUL, CR, LF or another CTL in a value
    kHeaderLineTooLarge,      // 431: a field line over HttpLimits::header_line
    kHeaderSectionTooLarge,   // 431: section over HttpLimits::header_total
    kTooManyHeaders,          // 431: more than HttpLimits::header_count fields
    kMissingHost,             // 400: HTTP/1.1 request without Host
    kDuplicateHost,           // 400: more than one Host
    kBadHost,                 // 400: Host value not a uri-host[:port]
    kBadContentLength,        // 400: not 1*DIGIT, a list, or overflow
    kDuplicateContentLength,  // 400: two Content-Length fields
    kContentLengthWithTransferEncoding,  // 400: both framing fields
    kChunkedNotFinal,  // 400: Transfer-Encoding not ending in chunked
    kUnsupportedTransferEncoding,  // 501: e.g. "gzip, chunked"
    kTransferEncodingHttp10,       // 400: Transfer-Encoding in HTTP/1.0
    kBadChunkSize,           // 400: non-hex, empty, overflow, bad extension
    kChunkExtensionTooLong,  // 400: more than kMaxChunkExtension bytes
    kBadChunkFraming,        // 400: missing CRLF after chunk data
    kForbiddenTrailer,       // 400: framing field in the trailer section
    kBodyTooLarge,           // 413: over set_max_body()
    kTruncated,              // 400: connection closed inside a message
    kMalformed,              // 400: anything else llhttp refuses
};

// The status a server answers a request refused with `error` (400, 413, 414,
// 431, 501, 505); 0 for kNone.
int http_error_status(HttpError error) noexcept;

// A short lowercase description of `error`, e.g. "duplicate host"; static
// storage.
const char* http_error_name(HttpError error) noexcept;

// How the length of the body is determined (RFC 9112 §6.3).
enum class BodyFraming : uint8_t {
    kNone,           // no body: 1xx/204/304, response to HEAD, request
                     // without Content-Length or Transfer-Encoding
    kContentLength,  // exactly content_length bytes (may be 0)
    kChunked,        // chunked coding; body() yields the de-chunked data
    kUntilClose,     // response read until the origin closes; finish()
};

// One field line: offsets into HttpMessage's head storage, so a message with
// fifty headers costs no allocation once the parser has warmed up.
struct HttpFieldRef {
    uint32_t name_off = 0;
    uint32_t name_len = 0;
    uint32_t value_off = 0;
    uint32_t value_len = 0;
};

// A parsed message head (and trailers). Strings are views into storage the
// message owns; they stay valid until the parser is reset() or destroyed.
// Invariant once headers_done(): every offset+length lies inside head_.
struct HttpMessage {
    uint8_t version_major = 0;
    uint8_t version_minor = 0;
    uint16_t status = 0;      // responses
    bool keep_alive = false;  // the connection may carry another one
    bool upgrade = false;     // Upgrade/CONNECT/101: not HTTP after it
    BodyFraming framing = BodyFraming::kNone;
    bool has_content_length = false;
    uint64_t content_length = 0;  // the Content-Length value, if any

    std::string_view method() const noexcept { return view(method_); }
    std::string_view target() const noexcept { return view(target_); }
    std::string_view reason() const noexcept { return view(reason_); }

    size_t header_count() const noexcept { return headers_.size(); }
    std::string_view header_name(size_t i) const noexcept;
    std::string_view header_value(size_t i) const noexcept;
    // The value of the first field named `name` (case-insensitive).
    std::optional<std::string_view> header(
        std::string_view name) const noexcept;
    // How many fields are named `name` (case-insensitive).
    size_t header_occurrences(std::string_view name) const noexcept;

    size_t trailer_count() const noexcept { return trailers_.size(); }
    std::string_view trailer_name(size_t i) const noexcept;
    std::string_view trailer_value(size_t i) const noexcept;
    std::optional<std::string_view> trailer(
        std::string_view name) const noexcept;

    bool is_head_request() const noexcept { return method() == "HEAD"; }
    // The message has body bytes to read (framing other than kNone and not
    // Content-Length: 0).
    bool has_body() const noexcept;

    void clear() noexcept;

    struct Span {
        uint32_t off = 0;
        uint32_t len = 0;
    };
    std::string_view view(Span s) const noexcept
    {
        return std::string_view(head_).substr(s.off, s.len);
    }

    // Storage, filled by HttpParser.
    std::string head_;  // method, target, reason, names, values: raw bytes
    Span method_, target_, reason_;
    std::vector<HttpFieldRef> headers_;
    std::vector<HttpFieldRef> trailers_;
};

// Case-insensitive ASCII comparison for field names and tokens.
bool http_iequals(std::string_view a, std::string_view b) noexcept;

enum class HttpParserType : uint8_t { kRequest, kResponse };

// Incremental parser for one direction of one connection. Not copyable or
// movable (llhttp keeps a pointer to it); allocate it with the connection.
//
// States: head (reading the start line and fields) -> body -> complete, or
// -> failed from anywhere. feed() stops at the end of each message; nothing
// more is consumed until reset(). failed() is final until reset().
class HttpParser {
public:
    // Most bytes of chunk extensions accepted on one chunk-size line; a
    // client has no reason to send many (RFC 9112 §7.1.1 lets a server
    // limit them), and unbounded ones would let it hold a worker busy.
    static constexpr size_t kMaxChunkExtension = 256;

    explicit HttpParser(HttpParserType type,
                        const HttpLimits& limits = HttpLimits{}) noexcept;
    HttpParser(const HttpParser&) = delete;
    HttpParser& operator=(const HttpParser&) = delete;

    // Parses up to `len` bytes of `data` and returns how many it consumed
    // (<= len). Stops after the last byte of a message (done()) or at an
    // error (failed(); the return value is then only a hint). Body bytes
    // found in this call are in body(); they point into `data`. Any split of
    // the input gives the same result.
    size_t feed(const char* data, size_t len) noexcept;

    // The peer closed its side. Completes a kUntilClose body (done() becomes
    // true); inside any other unfinished message fails with kTruncated.
    // Returns false if the parser is (now) failed. Between messages (nothing
    // fed since reset()) it does nothing and returns true.
    bool finish() noexcept;

    // Forgets the message and prepares for the next one on the same
    // connection, keeping the limits and allocated storage. For a response
    // parser the request method is forgotten too: call set_request_method()
    // again before the next response.
    void reset() noexcept;

    // Response parsers: the method of the request this response answers.
    // HEAD means no body whatever the headers say (RFC 9110 §9.3.2);
    // a 2xx to CONNECT turns the connection into a tunnel.
    void set_request_method(std::string_view method) noexcept;

    // Largest body accepted (Content-Length or the sum of chunks); 0, the
    // default, means no limit. Exceeding it fails with kBodyTooLarge.
    void set_max_body(uint64_t max) noexcept { max_body_ = max; }

    bool done() const noexcept { return state_ == State::kComplete; }
    bool failed() const noexcept { return state_ == State::kFailed; }
    bool headers_done() const noexcept { return headers_done_; }
    // Some byte of a message has been consumed and it is not complete.
    bool in_progress() const noexcept;

    HttpError error() const noexcept { return error_; }
    // A short lowercase description of the failure (llhttp's reason when it
    // was llhttp that refused); "" when not failed.
    const char* error_message() const noexcept;

    const HttpMessage& message() const noexcept { return msg_; }
    // Body bytes consumed by the last feed(), de-chunked, in order. Views
    // into that feed()'s buffer: valid until the buffer changes or the next
    // feed()/reset().
    const std::vector<std::string_view>& body() const noexcept { return body_; }
    // Body bytes delivered since reset().
    uint64_t body_bytes() const noexcept { return body_bytes_; }

private:
    enum class State : uint8_t { kHead, kBody, kComplete, kFailed };
    enum class Field : uint8_t {
        kOther,
        kContentLength,
        kTransferEncoding,
        kHost
    };
    enum class Last : uint8_t { kNone, kField, kFieldDone, kValue, kValueDone };
    // The chunked-framing shadow parser (see scan_chunked).
    enum class Chunk : uint8_t {
        kSizeStart,
        kSize,
        kExt,
        kSizeLf,
        kData,
        kDataCr,
        kDataLf,
        kTrailerStart,
        kTrailer,
        kTrailerLf,
        kFinalLf,
        kDone
    };

    friend struct HttpParserCallbacks;

    size_t scan_head(const char* data, size_t len) noexcept;
    size_t scan_chunked(const char* data, size_t len) noexcept;
    // Runs llhttp over data; returns the bytes it consumed. Sets state_.
    size_t execute(const char* data, size_t len) noexcept;
    void fail(HttpError error, const char* why = nullptr) noexcept;
    HttpError map_llhttp_error(llhttp_errno_t err) const noexcept;
    // Callback helpers; return an llhttp errno.
    int append(HttpMessage::Span* span, const char* at, size_t len) noexcept;
    int field_done() noexcept;
    int value_done() noexcept;
    int headers_complete() noexcept;
    int check_transfer_encoding(std::string_view value) noexcept;

    llhttp_t llhttp_;
    HttpParserType type_;
    HttpLimits limits_;
    State state_ = State::kHead;
    HttpError error_ = HttpError::kNone;
    const char* why_ = "";
    bool headers_done_ = false;
    bool started_ = false;
    bool head_request_ = false;     // response parser: answers a HEAD
    bool connect_request_ = false;  // response parser: answers a CONNECT
    uint64_t max_body_ = 0;
    uint64_t body_bytes_ = 0;

    // Head scanner state.
    bool scan_cr_ = false;        // previous byte was CR
    bool scan_in_start_ = true;   // still in the start line
    bool scan_head_end_ = false;  // saw the empty line ending the head
    bool scan_prev_sp_ = false;
    uint8_t scan_sp_count_ = 0;
    size_t scan_line_len_ = 0;       // bytes of the current line, no CRLF
    size_t scan_start_bytes_ = 0;    // start line plus leading empty lines
    size_t scan_section_bytes_ = 0;  // header (or trailer) section bytes
    size_t scan_lines_ = 0;          // field lines seen

    // Chunked shadow parser state.
    Chunk chunk_ = Chunk::kSizeStart;
    uint64_t chunk_left_ = 0;
    uint8_t chunk_digits_ = 0;
    size_t chunk_ext_ = 0;

    // Field callbacks state.
    Last last_ = Last::kNone;
    Field field_ = Field::kOther;
    bool in_trailers_ = false;
    bool seen_cl_ = false;
    bool seen_te_ = false;
    bool seen_host_ = false;
    bool te_chunked_final_ = false;  // the last coding so far is chunked
    bool te_other_ = false;          // a coding other than chunked
    uint8_t te_chunked_ = 0;         // how many times chunked appears
    HttpFieldRef cur_;

    HttpMessage msg_;
    std::vector<std::string_view> body_;
};

}  // namespace sj
