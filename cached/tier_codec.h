#pragma once
// How an object travels through the shared memcached tier: one memcached
// value holding a versioned binary record of the metadata (ObjectMeta
// without the Vary fields: varying objects stay local) followed by the
// body, so another cached instance can insert it into its own store.

#include <string>
#include <string_view>

#include "cached/store.h"

namespace sj {

// Appends the record header for `m` to *out; the caller appends the body.
void tier_encode_meta(const ObjectMeta& m, std::string* out);

// Splits a value into metadata (views into `value`) and body. False if it
// is not a record this version wrote (another version, or corrupt).
bool tier_decode(std::string_view value, ObjectMeta* m,
                 std::string_view* body) noexcept;

}  // namespace sj
