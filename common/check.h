#pragma once
// Always-on invariant checks (the Varnish tradition): a broken invariant logs
// where it broke and aborts, so the parent respawns a clean worker instead of
// letting a corrupted one keep serving.

namespace sj {
[[noreturn]] void check_failed(const char* file, int line,
                               const char* expr) noexcept;
}  // namespace sj

#define CHECK(expr)                                        \
    do {                                                   \
        if (!(expr)) [[unlikely]]                          \
            ::sj::check_failed(__FILE__, __LINE__, #expr); \
    } while (0)
