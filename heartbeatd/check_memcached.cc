// The memcached check, in the text protocol over the probe's own
// non-blocking socket (libmemcached's calls block, bounded only by its
// timeouts; speaking the three commands ourselves keeps the checker fully
// event-driven): "version", then a set and a get of a canary key whose value
// changes each time, so a server that answers but does not store fails.

#include <ctime>

#include "heartbeatd/stream_probe.h"

namespace sj::hb {

namespace {

class MemcachedProbe : public StreamProbe {
public:
    MemcachedProbe(struct ev_loop* loop, const ProbeTarget& target) noexcept
        : StreamProbe(loop, target, nullptr)
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        value_ = std::to_string(ts.tv_sec) + "." + std::to_string(ts.tv_nsec);
    }

private:
    enum class Step : uint8_t { kVersion, kStored, kValue, kData, kEnd };

    void on_connected() noexcept override
    {
        const std::string& key = target_.check.key;
        // Pipelined: the replies come back in order.
        send("version\r\nset " + key + " 0 60 " +
             std::to_string(value_.size()) + "\r\n" + value_ + "\r\nget " +
             key + "\r\n");
    }

    void on_input(bool eof) noexcept override
    {
        for (;;) {
            size_t nl = in_.find("\r\n");
            if (nl == std::string::npos) {
                if (eof)
                    fail("connection closed");
                return;
            }
            std::string line = in_.substr(0, nl);
            in_.erase(0, nl + 2);
            if (line.rfind("SERVER_ERROR", 0) == 0 || line == "ERROR" ||
                line.rfind("CLIENT_ERROR", 0) == 0) {
                fail("memcached: " + line.substr(0, 100));
                return;
            }
            switch (step_) {
            case Step::kVersion:
                if (line.rfind("VERSION ", 0) != 0) {
                    fail("unexpected reply to version");
                    return;
                }
                version_ = line.substr(8, 40);
                step_ = Step::kStored;
                break;
            case Step::kStored:
                if (line != "STORED") {
                    fail("set: " + line.substr(0, 100));
                    return;
                }
                step_ = Step::kValue;
                break;
            case Step::kValue:
                if (line == "END") {
                    fail("get: canary key missing after set");
                    return;
                }
                if (line.rfind("VALUE ", 0) != 0) {
                    fail("unexpected reply to get");
                    return;
                }
                step_ = Step::kData;
                break;
            case Step::kData:
                if (line != value_) {
                    fail("get: canary value differs");
                    return;
                }
                step_ = Step::kEnd;
                break;
            case Step::kEnd:
                if (line != "END") {
                    fail("unexpected reply to get");
                    return;
                }
                pass("version " + version_);
                return;
            }
        }
    }

    std::string value_;
    std::string version_;
    Step step_ = Step::kVersion;
};

}  // namespace

std::unique_ptr<Probe>
make_memcached_probe(struct ev_loop* loop, const ProbeTarget& target)
{
    return std::make_unique<MemcachedProbe>(loop, target);
}

}  // namespace sj::hb
