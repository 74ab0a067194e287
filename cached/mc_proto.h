#pragma once
// The memcached text protocol as McTier speaks it, and the format of what it
// stores there. Pure functions, no I/O, so the parsing is tested without a
// server and the unit test can write items the way McTier would.
//
// Keys: a cache key is any bytes of any length, a memcached key is at most
// 250 bytes without spaces or control characters, so the memcached key is
// "sj:" + the hex of the first 20 bytes of the SHA-256 of the cache key.
// Two cache keys may in principle share one memcached key, so every stored
// value starts with the full cache key (a 4-byte big-endian length, then the
// bytes) and carries kFlags: a get whose stored key differs is a miss, never
// another URL's body.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sj::mc {

// "SJ" and a format version, in memcached's per-item flags: items that
// other software stored under an "sj:" key are not taken for ours.
inline constexpr uint32_t kFlags = 0x534a0001;
// Longer cache keys are neither looked up nor stored.
inline constexpr size_t kMaxCacheKey = 16384;
// The longest reply line we accept ("VALUE <key> <flags> <bytes>" is < 80).
inline constexpr size_t kMaxLine = 512;
// memcached reads an exptime above 30 days as an absolute Unix time.
inline constexpr uint32_t kMaxRelativeTtl = 30 * 24 * 3600;

struct HashedKey {
    std::string mc_key;  // "sj:" + 40 hex digits
    uint32_t point = 0;  // position on the consistent-hashing ring
};

// Hashes `cache_key` (any bytes). Never fails.
HashedKey hash_key(std::string_view cache_key);

// The ring position of the i-th point of the server named `name`.
uint32_t ring_point(std::string_view name, uint32_t i);

// The bytes stored in front of the value for `cache_key`.
std::string value_header(std::string_view cache_key);

// Checks a stored item against `cache_key`: true with *value set to the
// value's bytes (a view into `data`) when the flags are ours and the stored
// key is `cache_key`; false (a miss) otherwise.
bool decode_value(uint32_t flags, std::string_view data,
                  std::string_view cache_key, std::string_view* value);

// The exptime to send for a TTL in seconds from `now` (Unix time): 0 for no
// expiry, relative up to 30 days, absolute beyond.
uint32_t exptime(uint32_t ttl, int64_t now);

enum class Op : uint8_t { kGet, kSet, kDelete };

enum class ReplyStatus : uint8_t {
    kNeedMore,     // no complete reply yet
    kBad,          // not a reply to this request: the connection is unusable
    kMiss,         // get: END
    kHit,          // get: VALUE ... END, in Reply::flags and Reply::data
    kSkip,         // get: a VALUE larger than max_data, see Reply::skip
    kOk,           // set: STORED or NOT_STORED; delete: DELETED or NOT_FOUND
    kServerError,  // SERVER_ERROR <message>: this request failed
};

struct Reply {
    size_t consumed = 0;     // bytes of input the reply used
    uint32_t flags = 0;      // kHit
    std::string_view data;   // kHit: the item's bytes, a view into the input
    uint64_t skip = 0;       // kSkip: data bytes to drop, then kSkipTrailer
    std::string_view error;  // kServerError: the message
};

// After a kSkip's bytes are dropped, the reply ends with exactly these.
inline constexpr std::string_view kSkipTrailer = "\r\nEND\r\n";

// Parses the reply to the oldest pending request, of kind `op` (for kGet,
// sent as "get <mc_key>") from the start of `in`. A get reply whose data is
// larger than `max_data` gives kSkip after its VALUE line, so the caller
// never needs to hold it. Strict: anything but the replies memcached 1.6
// sends to these commands is kBad.
ReplyStatus parse_reply(std::string_view in, Op op, std::string_view mc_key,
                        size_t max_data, Reply* out);

}  // namespace sj::mc
