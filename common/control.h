#pragma once
// The control protocol, spoken on every daemon's control socket
// (DESIGN.md, "How the daemons talk"):
//
//   request:  one command per line, words separated by blanks; a word may be
//             double-quoted to hold blanks ("a b"), with \" and \\ escapes.
//             A line is at most kControlMaxLine bytes.
//   reply:    a fixed 13-byte header line, "SSS LLLLLLLL\n": a three-digit
//             status, one space, the body length in decimal left-aligned and
//             padded with spaces to 8 characters; then exactly that many body
//             bytes. A non-empty body ends with "\n".
//
// The fixed-size header (Varnish's CLI framing) lets a program read 13 bytes,
// then the body, with no guessing, while `socat - UNIX:x.sock` stays readable.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sj {

inline constexpr size_t kControlHeaderLen = 13;
inline constexpr size_t kControlMaxLine = 4096;
inline constexpr size_t kControlMaxBody = 16u << 20;

enum class ControlStatus : int {
    kOk = 200,
    kBadRequest = 400,  // syntax or usage
    kForbidden = 403,   // mutating command from a read-only peer
    kUnknown = 404,     // no such command or object
    kFailed = 500,      // the command ran and failed (e.g. reload error)
};

struct ControlReply {
    int status = 200;
    std::string body;
};

// Splits a command line into words (see the grammar above). Returns false
// and sets *err on an unterminated quote or a bad escape.
bool control_split(std::string_view line, std::vector<std::string>* words,
                   std::string* err);

// Quotes a word so control_split() returns it unchanged.
std::string control_quote(std::string_view word);

// The 13-byte header plus body.
std::string control_format_reply(const ControlReply& reply);

// Parses a header; returns false if `hdr` (exactly kControlHeaderLen bytes)
// is malformed or announces a body above kControlMaxBody.
bool control_parse_header(std::string_view hdr, int* status, size_t* length);

// Sends `line` (no newline needed) to the control socket at `path` and reads
// the reply, waiting at most `timeout` seconds overall. Blocking; for
// sjctl and tests. On failure returns false with *err set, e.g.
// "connect /run/sunjammer/cached.sock: No such file or directory".
bool control_call(const std::string& path, const std::string& line,
                  double timeout, ControlReply* out, std::string* err);

}  // namespace sj
