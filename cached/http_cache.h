#pragma once
// HTTP caching rules for cached (RFC 9111, with RFC 9110 for conditionals
// and ranges, RFC 5861 for stale-while-revalidate / stale-if-error and
// RFC 9211 for Cache-Status), as pure functions over parsed messages
// (common/http_parser.h) and times in seconds since the epoch. cached is a
// shared cache throughout: private responses stay out of it.
//
// Nothing here allocates on the hit path (freshness, age, the serve
// decision, conditional evaluation, range parsing); building keys and
// header blocks appends to caller-owned strings.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/http_parser.h"

namespace sj {

// RFC 9111 §1.2.2: delta-seconds too large to represent become 2^31.
inline constexpr int64_t kDeltaMax = 2147483648;

// Parsed Cache-Control directives (request and response ones in one
// struct). -1 means absent. Directives that appear twice with different
// values get the most restrictive value (§4.2.1): the smaller max-age,
// s-maxage, max-stale, stale-* windows, the larger min-fresh; an invalid
// max-age or s-maxage argument makes the response stale (0).
struct CacheControl {
    bool no_store = false;
    bool no_cache = false;         // also set by Pragma: no-cache (§5.4)
    bool no_cache_fields = false;  // the qualified form no-cache="..."
    bool private_ = false;         // qualified or not: both kept out
    bool public_ = false;
    bool must_revalidate = false;
    bool proxy_revalidate = false;
    bool must_understand = false;
    bool no_transform = false;
    bool only_if_cached = false;
    bool immutable = false;
    bool max_stale_any = false;  // max-stale without a value
    int64_t max_age = -1;
    int64_t s_maxage = -1;
    int64_t max_stale = -1;
    int64_t min_fresh = -1;
    int64_t stale_while_revalidate = -1;
    int64_t stale_if_error = -1;
};

// Adds the directives of one Cache-Control field value to *cc. Unknown
// extensions are ignored (§5.2.3); arguments may be tokens or quoted
// strings (§5.2).
void parse_cache_control(std::string_view value, CacheControl* cc) noexcept;
// All Cache-Control lines of a message, plus Pragma: no-cache when there
// is no Cache-Control (§5.4).
CacheControl cache_control_of(const HttpMessage& m) noexcept;

// HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, and the obsolete RFC 850 and
// asctime forms. False if invalid.
bool parse_http_date(std::string_view s, int64_t* t) noexcept;
// IMF-fixdate into out (29 chars + NUL).
void format_http_date(int64_t t, char out[30]) noexcept;

// delta-seconds (RFC 9111 §1.2.2), clamped to kDeltaMax; -1 if invalid.
int64_t parse_delta_seconds(std::string_view s) noexcept;

// Why a response is not stored, or kStorable.
enum class StoreVerdict : uint8_t {
    kStorable = 0,
    kMethod,         // not GET
    kStatus,         // not a final status the cache understands
    kNoStore,        // no-store in the request or the response
    kPrivate,        // private, in a shared cache
    kAuthorization,  // request had Authorization, response did not allow it
    kSetCookie,      // Set-Cookie, and the configuration says no
    kVaryStar,       // Vary: * never matches (§4.1)
    kNoFreshness,    // nothing says it may be cached (§3)
    kTruncated,      // the body did not arrive whole
};
const char* store_verdict_name(StoreVerdict v) noexcept;

struct StorePolicy {
    bool store_set_cookie = false;  // cache responses carrying Set-Cookie
};

// RFC 9111 §3 for a shared cache. `complete` is false when the response
// body was cut short (never stored, §3.3).
StoreVerdict storable(const HttpMessage& req, const CacheControl& req_cc,
                      const HttpMessage& resp, const CacheControl& resp_cc,
                      bool complete, const StorePolicy& policy) noexcept;

// Status codes a cache may reuse with heuristic freshness (RFC 9110 §15.1).
bool heuristically_cacheable(int status) noexcept;

struct FreshnessPolicy {
    double heuristic_fraction = 0.1;  // of Date - Last-Modified (§4.2.2)
    int64_t heuristic_max = 86400;    // cap on a heuristic lifetime
};

// The Date value (§4.2.3 date_value): the Date field, or response_time if
// it is missing or invalid.
int64_t date_value(const HttpMessage& resp, int64_t response_time) noexcept;
// The Age field value (age_value), 0 if absent or invalid.
int64_t age_value(const HttpMessage& resp) noexcept;

// Freshness lifetime (§4.2.1) in a shared cache: s-maxage, else max-age,
// else Expires - Date, else a heuristic (§4.2.2) for the statuses that
// allow it when Last-Modified is given. *heuristic (may be null) tells
// which. An invalid Expires means already expired (0).
int64_t freshness_lifetime(const HttpMessage& resp, const CacheControl& cc,
                           int64_t date, const FreshnessPolicy& policy,
                           bool* heuristic = nullptr) noexcept;

// The inputs of the age calculation, kept with a stored response.
struct AgeInputs {
    int64_t age_value = 0;
    int64_t date_value = 0;
    int64_t request_time = 0;
    int64_t response_time = 0;
};

// current_age (§4.2.3) at `now`, clamped to kDeltaMax.
int64_t current_age(const AgeInputs& a, int64_t now) noexcept;

// What a stored response needs before it may be reused.
struct StoredFreshness {
    int64_t lifetime = 0;
    int64_t age = 0;               // current_age
    bool must_revalidate = false;  // must-revalidate, or proxy-revalidate
                                   // or s-maxage in a shared cache
    bool no_cache = false;         // response no-cache: validate each time
    int64_t stale_while_revalidate = -1;
    int64_t stale_if_error = -1;
};

// Bits for ObjectMeta::flags, to rebuild StoredFreshness from the store.
inline constexpr uint32_t kStoredMustRevalidate = 1u << 0;
inline constexpr uint32_t kStoredNoCache = 1u << 1;
inline constexpr uint32_t kStoredHeuristic = 1u << 2;

// Flags for a response's directives (the kStoredXxx bits).
uint32_t stored_flags(const CacheControl& resp_cc, bool heuristic) noexcept;

enum class Reuse : uint8_t {
    kFresh,                 // serve it
    kStaleAllowed,          // stale, but the client's max-stale allows it
    kStaleWhileRevalidate,  // serve stale, refresh in the background
    kRevalidate,            // send a conditional request first
};
const char* reuse_name(Reuse r) noexcept;

// May the stored response be served for a request with these directives
// (§4.2, §4.2.4, §5.2.1, RFC 5861 §3)? `grace` (seconds, >= 0) widens the
// stale-while-revalidate window beyond the response's own; it never
// overrides must-revalidate, proxy-revalidate, s-maxage or no-cache.
Reuse reuse_decision(const StoredFreshness& f, const CacheControl& req_cc,
                     int64_t grace = 0) noexcept;

// When the origin failed (error, refused, timeout, 5xx): may the stale
// response be served instead (RFC 5861 §4)? Within the response's or
// the request's stale-if-error window, or within `grace`, unless a
// directive forbids serving stale (§4.2.4).
bool usable_on_error(const StoredFreshness& f, const CacheControl& req_cc,
                     int64_t grace) noexcept;

// only-if-cached (§5.2.1.7): a request that may not go to the origin and
// cannot be served from the cache gets 504.
inline bool
answer_504_only_if_cached(const CacheControl& req_cc, bool servable) noexcept
{
    return req_cc.only_if_cached && !servable;
}

// Vary (§4.1). The names of a response's Vary field, lowercased, in order,
// joined with ','; *star set for "*".
void vary_names(const HttpMessage& resp, std::string* out, bool* star);
// The request's values for those names, normalised (lines combined with
// ',', whitespace around commas and at the ends trimmed, tokens lowercased
// for the Accept-* fields), one per name, joined with '\n'; an absent
// field is "\x01", so it differs from an empty one.
void vary_values(const HttpMessage& req, std::string_view names,
                 std::string* out);
// Does the request select the stored variant?
bool vary_matches(const HttpMessage& req, std::string_view names,
                  std::string_view stored_values);

// The header lines a cache keeps from a response (§3.1): all but the
// hop-by-hop ones (Connection and the fields it names, Keep-Alive,
// Proxy-Connection, TE, Transfer-Encoding, Upgrade, Trailer), Age (sent
// recomputed), and Set-Cookie unless keep_set_cookie. "Name: value\r\n"
// lines appended to *out.
void stored_header_block(const HttpMessage& resp, bool keep_set_cookie,
                         std::string* out);

// Iterates "Name: value\r\n" lines of a stored header block.
class HeaderBlock {
public:
    explicit HeaderBlock(std::string_view block) noexcept : rest_(block) {}
    // The next line's name and value; false at the end.
    bool next(std::string_view* name, std::string_view* value) noexcept;
    // The first value of `name` in `block`.
    static bool find(std::string_view block, std::string_view name,
                     std::string_view* value) noexcept;

private:
    std::string_view rest_;
};

// Conditional request headers to revalidate a stored response (§4.3.1):
// If-None-Match from its ETag, If-Modified-Since from its Last-Modified.
// Appended to *out as header lines; false if it has neither validator.
bool revalidation_headers(std::string_view etag, std::string_view last_modified,
                          std::string* out);

// A 304 received for a stored response (§3.2, §4.3.4): the stored header
// block with every field of the 304 replacing the stored fields of that
// name, except Content-Length, Content-Range, Content-Encoding, the fields
// §3.1 never stores, and Set-Cookie unless keep_set_cookie. New block in
// *out.
void apply_304(std::string_view stored, const HttpMessage& resp304,
               bool keep_set_cookie, std::string* out);

// Does the 304 apply to the stored response (§4.3.4): same strong ETag,
// or same Last-Modified when neither has an ETag?
bool not_modified_matches(const HttpMessage& resp304, std::string_view etag,
                          std::string_view last_modified) noexcept;

// Entity tags (RFC 9110 §8.8.3.2).
bool etag_weak_equal(std::string_view a, std::string_view b) noexcept;
bool etag_strong_equal(std::string_view a, std::string_view b) noexcept;

enum class Conditional : uint8_t {
    kNone,         // serve the stored response
    kNotModified,  // answer 304
};

// A client's conditional GET/HEAD against a stored response (RFC 9110
// §13.2.2): If-None-Match (weak comparison) takes precedence over
// If-Modified-Since, which counts only when valid and no later than now.
// Preconditions a cache should not decide (If-Match, If-Unmodified-Since)
// are not evaluated: see needs_origin_precondition.
Conditional evaluate_conditional(const HttpMessage& req, std::string_view etag,
                                 std::string_view last_modified,
                                 int64_t now) noexcept;
bool needs_origin_precondition(const HttpMessage& req) noexcept;

// Byte ranges (RFC 9110 §14). Inclusive offsets into the body.
struct ByteRange {
    uint64_t first = 0;
    uint64_t last = 0;
};

enum class RangeResult : uint8_t {
    kIgnore,         // no Range, another unit, bad syntax, too many: 200
    kSatisfiable,    // answer 206 with the ranges
    kUnsatisfiable,  // answer 416 with Content-Range: bytes */size
};

inline constexpr size_t kMaxRanges = 16;

// Parses a Range value for a body of `size` bytes into out[0..*n).
// Unsatisfiable ranges are dropped (§14.1.1); more than kMaxRanges, or
// overlapping ranges, make it kIgnore (a server may ignore a Range, and
// these are how clients make servers work hard).
RangeResult parse_range(std::string_view value, uint64_t size, ByteRange* out,
                        size_t* n) noexcept;

// Whether If-Range lets the Range apply (§13.1.5): a strong ETag match, or
// a date equal to the stored Last-Modified. No If-Range: true.
bool if_range_allows(const HttpMessage& req, std::string_view etag,
                     std::string_view last_modified) noexcept;

// "Content-Range: bytes first-last/size\r\n" (206) or "bytes */size"
// (416), appended.
void content_range_header(const ByteRange* r, uint64_t size, std::string* out);

// A multipart/byteranges body (§14.6): literal text between body slices.
struct MultipartPiece {
    std::string text;        // sent first
    bool has_range = false;  // then these body bytes
    ByteRange range;
};
// Builds the pieces; returns the total body length for Content-Length. The
// response's Content-Type is "multipart/byteranges; boundary=" boundary.
uint64_t multipart_byteranges(const ByteRange* ranges, size_t n, uint64_t size,
                              std::string_view content_type,
                              std::string_view boundary,
                              std::vector<MultipartPiece>* out);

// Invalidation (§4.4): an unsafe request answered with a non-error status
// invalidates the target URI and the Location and Content-Location URIs on
// the same host. The keys to remove (cache_key() of each) are appended.
bool is_unsafe_method(std::string_view method) noexcept;
struct KeyPolicy;
void invalidation_keys(const HttpMessage& req, const HttpMessage& resp,
                       const KeyPolicy& policy, std::vector<std::string>* out);

// The cache key: lowercased host (without a default :80/:443 port), then
// the target path and query. With sort_query the parameters are sorted;
// parameters named in drop_params are removed. An absolute-form target
// (RFC 9112 §3.2.2) uses its own host.
struct KeyPolicy {
    bool sort_query = false;
    std::vector<std::string> drop_params;
};
void cache_key(std::string_view host, std::string_view target,
               const KeyPolicy& policy, std::string* out);
// The key of a stored variant: the primary key, NUL, the vary values.
void variant_key(std::string_view primary, std::string_view vary_values,
                 std::string* out);

// The Age value to send (§5.1): current_age, at most kDeltaMax.
inline int64_t
age_to_send(const AgeInputs& a, int64_t now) noexcept
{
    return current_age(a, now);
}

// Cache-Status (RFC 9211) for one response.
enum class CacheOutcome : uint8_t {
    kHit,       // served from the store
    kStaleHit,  // served stale (max-stale, swr, stale-if-error)
    kMiss,      // fwd=miss
    kUriMiss,   // fwd=uri-miss: not in the cache under any variant
    kVaryMiss,  // fwd=vary-miss: stored, another variant
    kRequest,   // fwd=request: the request said no-cache
    kStale,     // fwd=stale: revalidated
    kBypass,    // fwd=bypass: not cacheable (method, pass)
};
struct CacheStatusInfo {
    CacheOutcome outcome = CacheOutcome::kMiss;
    int fwd_status = 0;       // the origin's status, 0 to omit
    int64_t ttl = INT64_MIN;  // freshness left (negative when stale)
    bool stored = false;      // the response was stored
    bool collapsed = false;
    std::string_view detail;  // e.g. "stale-if-error", omitted if empty
};
// Appends e.g. "sunjammer; hit; ttl=42" or "sunjammer; fwd=miss; stored".
void cache_status(std::string_view cache_name, const CacheStatusInfo& info,
                  std::string* out);

}  // namespace sj
