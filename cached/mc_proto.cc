#include "cached/mc_proto.h"

#include <openssl/evp.h>

#include "common/check.h"

namespace sj::mc {

namespace {

constexpr size_t kDigestPrefix = 20;  // bytes of SHA-256 in the key

void
sha256(std::string_view a, std::string_view b, unsigned char out[32])
{
    // EVP_Digest would need one buffer; the ring points hash two parts.
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    CHECK(ctx != nullptr);
    CHECK(EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1);
    CHECK(EVP_DigestUpdate(ctx, a.data(), a.size()) == 1);
    CHECK(EVP_DigestUpdate(ctx, b.data(), b.size()) == 1);
    CHECK(EVP_DigestFinal_ex(ctx, out, &len) == 1);
    CHECK(len == 32);
    EVP_MD_CTX_free(ctx);
}

uint32_t
be32(const unsigned char* p)
{
    return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 |
           uint32_t{p[3]};
}

// A decimal number of at most `max` without sign, spaces or leading zeros
// beyond a lone "0"; false for anything else.
bool
parse_uint(std::string_view s, uint64_t max, uint64_t* out)
{
    if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0'))
        return false;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9')
            return false;
        uint64_t d = static_cast<uint64_t>(c - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

// Splits off the first space-separated field of *s.
std::string_view
next_field(std::string_view* s)
{
    size_t sp = s->find(' ');
    std::string_view f = s->substr(0, sp);
    *s = sp == std::string_view::npos ? std::string_view{} : s->substr(sp + 1);
    return f;
}

}  // namespace

HashedKey
hash_key(std::string_view cache_key)
{
    static constexpr char kHex[] = "0123456789abcdef";
    unsigned char d[32];
    sha256(cache_key, {}, d);
    HashedKey h;
    h.mc_key.reserve(3 + 2 * kDigestPrefix);
    h.mc_key = "sj:";
    for (size_t i = 0; i < kDigestPrefix; ++i) {
        h.mc_key += kHex[d[i] >> 4];
        h.mc_key += kHex[d[i] & 15];
    }
    // Bytes not in the memcached key, so ring position and key are
    // independent.
    h.point = be32(d + 28);
    return h;
}

uint32_t
ring_point(std::string_view name, uint32_t i)
{
    unsigned char d[32];
    std::string n = "-" + std::to_string(i);
    sha256(name, n, d);
    return be32(d);
}

std::string
value_header(std::string_view cache_key)
{
    CHECK(cache_key.size() <= kMaxCacheKey);
    std::string h;
    h.reserve(4 + cache_key.size());
    uint32_t n = static_cast<uint32_t>(cache_key.size());
    h += static_cast<char>(n >> 24);
    h += static_cast<char>(n >> 16 & 0xff);
    h += static_cast<char>(n >> 8 & 0xff);
    h += static_cast<char>(n & 0xff);
    h += cache_key;
    return h;
}

bool
decode_value(uint32_t flags, std::string_view data, std::string_view cache_key,
             std::string_view* value)
{
    if (flags != kFlags || data.size() < 4)
        return false;
    uint32_t n = be32(reinterpret_cast<const unsigned char*>(data.data()));
    if (n > data.size() - 4 || data.substr(4, n) != cache_key)
        return false;
    *value = data.substr(4 + n);
    return true;
}

uint32_t
exptime(uint32_t ttl, int64_t now)
{
    if (ttl <= kMaxRelativeTtl)
        return ttl;
    int64_t t = now + ttl;
    return t > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(t);
}

ReplyStatus
parse_reply(std::string_view in, Op op, std::string_view mc_key,
            size_t max_data, Reply* out)
{
    size_t eol = in.substr(0, kMaxLine).find("\r\n");
    if (eol == std::string_view::npos)
        return in.size() >= kMaxLine ? ReplyStatus::kBad
                                     : ReplyStatus::kNeedMore;
    std::string_view line = in.substr(0, eol);
    size_t after_line = eol + 2;
    for (char c : line)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            return ReplyStatus::kBad;

    if (line.starts_with("SERVER_ERROR ")) {
        out->consumed = after_line;
        out->error = line.substr(13);
        return ReplyStatus::kServerError;
    }
    switch (op) {
    case Op::kSet:
    case Op::kDelete:
        if (op == Op::kSet ? line == "STORED" || line == "NOT_STORED"
                           : line == "DELETED" || line == "NOT_FOUND") {
            out->consumed = after_line;
            return ReplyStatus::kOk;
        }
        return ReplyStatus::kBad;
    case Op::kGet: break;
    }
    if (line == "END") {
        out->consumed = after_line;
        return ReplyStatus::kMiss;
    }
    // "VALUE <key> <flags> <bytes>": exactly four fields, since we send
    // "get" (not "gets", which adds a CAS field) with one key.
    std::string_view rest = line;
    uint64_t flags = 0, bytes = 0;
    if (next_field(&rest) != "VALUE" || next_field(&rest) != mc_key ||
        !parse_uint(next_field(&rest), UINT32_MAX, &flags) ||
        !parse_uint(next_field(&rest), uint64_t{1} << 40, &bytes) ||
        !rest.empty())
        return ReplyStatus::kBad;
    if (bytes > max_data) {
        out->consumed = after_line;
        out->skip = bytes;
        return ReplyStatus::kSkip;
    }
    size_t need = after_line + bytes + kSkipTrailer.size();
    if (in.size() < need)
        return ReplyStatus::kNeedMore;
    if (in.substr(after_line + bytes, kSkipTrailer.size()) != kSkipTrailer)
        return ReplyStatus::kBad;
    out->consumed = need;
    out->flags = static_cast<uint32_t>(flags);
    out->data = in.substr(after_line, bytes);
    return ReplyStatus::kHit;
}

}  // namespace sj::mc
