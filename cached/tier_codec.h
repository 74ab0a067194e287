#pragma once
// How an object travels through the shared memcached tier: one memcached
// value holding a versioned binary record of the metadata (ObjectMeta,
// its Vary fields included) followed by the body, so another cached
// instance can insert it into its own store.
//
// A response with Vary is two values: under the primary key an index
// record (kStoredVaryIndex, the Vary names, no body) whose headers hold
// "Tier-Nonce: N", and the variant under tier_variant_key(). The nonce
// ties variants to one index: a PURGE deletes the index, the next one
// gets a new nonce, and the variants stored before are unreachable.

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

// The tier key of a variant: its store key (variant_key()) and `nonce`.
void tier_variant_key(std::string_view primary, std::string_view vary_values,
                      std::string_view nonce, std::string* out);

// The nonce of an index record's headers ("" if none).
std::string_view tier_nonce(std::string_view index_headers) noexcept;

}  // namespace sj
