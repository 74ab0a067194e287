#include "common/http_writer.h"

#include <cstring>

namespace sj {

namespace {

inline bool
is_tchar(char c) noexcept
{
    // RFC 9110 §5.6.2: tchar.
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

void
append_uint(std::string* out, uint64_t v, unsigned base)
{
    char buf[24];
    char* p = buf + sizeof buf;
    do {
        unsigned d = static_cast<unsigned>(v % base);
        *--p = static_cast<char>(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v != 0);
    out->append(p, static_cast<size_t>(buf + sizeof buf - p));
}

}  // namespace

const char*
http_reason_phrase(int status) noexcept
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 511: return "Network Authentication Required";
    default: return "";
    }
}

bool
http_is_token(std::string_view s) noexcept
{
    if (s.empty())
        return false;
    for (char c : s)
        if (!is_tchar(c))
            return false;
    return true;
}

bool
http_is_safe_value(std::string_view s) noexcept
{
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && c != '\t') || u == 0x7f)
            return false;
    }
    // Leading or trailing whitespace would not survive a parse (it is OWS,
    // RFC 9112 §5), so writing it would break the round trip.
    if (!s.empty() && (s.front() == ' ' || s.front() == '\t' ||
                       s.back() == ' ' || s.back() == '\t'))
        return false;
    return true;
}

bool
http_write_request_line(std::string* out, std::string_view method,
                        std::string_view target, int major, int minor)
{
    if (!http_is_token(method) || target.empty() || major < 0 || major > 9 ||
        minor < 0 || minor > 9)
        return false;
    for (char c : target) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f)
            return false;
    }
    out->append(method);
    out->push_back(' ');
    out->append(target);
    out->append(" HTTP/");
    out->push_back(static_cast<char>('0' + major));
    out->push_back('.');
    out->push_back(static_cast<char>('0' + minor));
    out->append("\r\n");
    return true;
}

bool
http_write_status_line(std::string* out, int status, std::string_view reason,
                       int major, int minor)
{
    if (status < 100 || status > 599 || major < 0 || major > 9 || minor < 0 ||
        minor > 9 || !http_is_safe_value(reason))
        return false;
    if (reason.empty())
        reason = http_reason_phrase(status);
    out->append("HTTP/");
    out->push_back(static_cast<char>('0' + major));
    out->push_back('.');
    out->push_back(static_cast<char>('0' + minor));
    out->push_back(' ');
    append_uint(out, static_cast<uint64_t>(status), 10);
    out->push_back(' ');
    out->append(reason);
    out->append("\r\n");
    return true;
}

bool
http_write_header(std::string* out, std::string_view name,
                  std::string_view value)
{
    if (!http_is_token(name) || !http_is_safe_value(value))
        return false;
    out->append(name);
    out->append(": ");
    out->append(value);
    out->append("\r\n");
    return true;
}

bool
http_write_header(std::string* out, std::string_view name, uint64_t value)
{
    if (!http_is_token(name))
        return false;
    out->append(name);
    out->append(": ");
    append_uint(out, value, 10);
    out->append("\r\n");
    return true;
}

void
http_end_head(std::string* out)
{
    out->append("\r\n");
}

bool
http_write_chunk_header(std::string* out, uint64_t size)
{
    if (size == 0)
        return false;
    append_uint(out, size, 16);
    out->append("\r\n");
    return true;
}

void
http_write_chunk_end(std::string* out)
{
    out->append("\r\n");
}

bool
http_write_chunk(std::string* out, std::string_view data)
{
    if (!http_write_chunk_header(out, data.size()))
        return false;
    out->append(data);
    out->append("\r\n");
    return true;
}

void
http_write_last_chunk(std::string* out)
{
    out->append("0\r\n");
}

std::string
http_error_response(int status, std::string_view text, bool close)
{
    if (status < 100 || status > 599)
        status = 500;
    std::string body(
        text.empty() ? std::string_view(http_reason_phrase(status)) : text);
    body.push_back('\n');
    std::string out;
    out.reserve(128 + body.size());
    http_write_status_line(&out, status);
    http_write_header(&out, "Content-Type", "text/plain");
    http_write_header(&out, "Content-Length",
                      static_cast<uint64_t>(body.size()));
    if (close)
        http_write_header(&out, "Connection", "close");
    http_end_head(&out);
    out.append(body);
    return out;
}

}  // namespace sj
