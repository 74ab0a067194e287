// libFuzzer target for sunjammer.conf(5): any input must either parse into
// a Config or raise ConfigError; anything else (another exception, a crash,
// a sanitizer report) is a bug. A parsed Config must also dump to text that
// parses again, since `show config` relies on it.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/config.h"

// libconfig 1.5's scanner leaks the token being scanned when a syntax error
// follows it (strbuf_append, libconfig_yylex); that is the library's, not
// ours, and costs a few bytes per failed reload.
extern "C" const char*
__lsan_default_suppressions()
{
    return "leak:libconfig\n";
}

extern "C" int
LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string text(reinterpret_cast<const char*>(data), size);
    // @include would read arbitrary files (or block on /dev/stdin); the
    // include path is tested by config_test instead.
    if (text.find("@include") != std::string::npos)
        return 0;
    std::shared_ptr<const sj::Config> config;
    try {
        config = sj::parse_config_text(text, "fuzz.conf");
    } catch (const sj::ConfigError&) {
        return 0;
    }
    try {
        sj::parse_config_text(sj::dump_config(*config), "dump.conf");
    } catch (const sj::ConfigError&) {
        std::abort();  // a valid Config must dump to a valid file
    }
    return 0;
}
