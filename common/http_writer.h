#pragma once
// Serialising HTTP/1.1 message heads and chunked framing into a std::string
// (the caller's output buffer: everything is appended, nothing is cleared).
//
// Names and values are written verbatim, never reformatted, but every
// function that takes text refuses (returns false and leaves `out` exactly
// as it was) anything that could end a line or a head early: CR, LF and NUL
// anywhere, other controls in values, non-token names. So no value taken
// from a request or an origin can split a message (response splitting,
// RFC 9112 §11.1).

#include <cstdint>
#include <string>
#include <string_view>

namespace sj {

// The standard reason phrase for `status` (RFC 9110 §15, RFC 6585), e.g.
// "Not Found"; "" for a code without one. Static storage.
const char* http_reason_phrase(int status) noexcept;

// True if `s` is a non-empty token (RFC 9110 §5.6.2): what a method or field
// name must be.
bool http_is_token(std::string_view s) noexcept;

// True if `s` may be written as a field value or reason phrase: no CR, LF,
// NUL or other control except HTAB (RFC 9110 §5.5), no leading or trailing
// whitespace.
bool http_is_safe_value(std::string_view s) noexcept;

// Appends "METHOD SP target SP HTTP/major.minor CRLF". The method must be a
// token; the target must be non-empty and contain no whitespace or
// controls; the version digits 0..9.
bool http_write_request_line(std::string* out, std::string_view method,
                             std::string_view target, int major = 1,
                             int minor = 1);

// Appends "HTTP/major.minor SP status SP reason CRLF". `status` must be
// 100..599; an empty `reason` means the standard phrase.
bool http_write_status_line(std::string* out, int status,
                            std::string_view reason = {}, int major = 1,
                            int minor = 1);

// Appends "name: value CRLF"; the name must be a token and the value safe
// (see http_is_safe_value). An empty value is allowed.
bool http_write_header(std::string* out, std::string_view name,
                       std::string_view value);

// Same, for a decimal number (Content-Length).
bool http_write_header(std::string* out, std::string_view name, uint64_t value);

// Appends the CRLF that ends a head or a trailer section.
void http_end_head(std::string* out);

// Appends a chunk-size line "HEX CRLF" for a chunk of `size` bytes; size 0
// is refused (that is the last chunk, http_write_last_chunk).
bool http_write_chunk_header(std::string* out, uint64_t size);

// Appends the CRLF that follows the data of a chunk.
void http_write_chunk_end(std::string* out);

// Appends a whole chunk: header, `data` (non-empty), CRLF. Copies data; a
// proxy that streams uses the header/end pair around its own buffer.
bool http_write_chunk(std::string* out, std::string_view data);

// Appends "0 CRLF" (the last chunk). Follow it with trailer fields
// (http_write_header) if any, then http_end_head().
void http_write_last_chunk(std::string* out);

// A complete short response for errors a proxy makes itself: status line,
// "Content-Type: text/plain", Content-Length, "Connection: close" if `close`,
// and the body `text` plus "\n" (the reason phrase when `text` is empty).
// `status` outside 100..599 is answered as 500.
std::string http_error_response(int status, std::string_view text = {},
                                bool close = true);

}  // namespace sj
