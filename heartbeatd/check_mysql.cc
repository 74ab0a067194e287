// The mysql check, on the MariaDB client's non-blocking API: every
// *_start/*_cont call returns at once with the events it waits for, which
// the probe turns into one ev_io (and an ev_timer when the library asks for
// a timeout of its own). Steps: connect, "SELECT 1, @@read_only,
// @@server_id", "SHOW SLAVE STATUS".
//
// Verdicts (the lessons of mysql-mmm and orchestrator: a NULL lag is not
// zero lag):
//   unreachable, login or query error           -> fail
//   not a replica (no slave status)             -> pass
//   both threads Yes, lag known and <= max_lag  -> pass
//   both threads Yes, lag above max_lag         -> lagging
//   a thread not running (an IO thread stuck in Connecting included) or a
//   NULL lag                                    -> lagging: reachable, so a
//   possible writer, but its data cannot be trusted as current

#include <arpa/inet.h>
#include <mysql.h>
#include <sys/socket.h>

#include <cstring>

#include "heartbeatd/probe.h"

namespace sj::hb {

namespace {

struct MysqlResDeleter {
    void operator()(MYSQL_RES* r) const noexcept { mysql_free_result(r); }
};
using MysqlResPtr = std::unique_ptr<MYSQL_RES, MysqlResDeleter>;

class MysqlProbe : public Probe {
public:
    MysqlProbe(struct ev_loop* loop, const ProbeTarget& target) noexcept
        : Probe(loop, target)
    {
        ev_io_init(&io_, on_io, -1, 0);
        io_.data = this;
        ev_timer_init(&timer_, on_timer, 0., 0.);
        timer_.data = this;
    }
    ~MysqlProbe() override { MysqlProbe::release(); }

private:
    enum class Step : uint8_t { kConnect, kQuery, kStore, kDone };

    void begin() noexcept override
    {
        const Address& a = target_.address;
        char ip[INET6_ADDRSTRLEN] = "";
        if (a.family == Address::Family::kInet)
            inet_ntop(AF_INET,
                      &reinterpret_cast<const sockaddr_in*>(a.sa())->sin_addr,
                      ip, sizeof ip);
        else if (a.family == Address::Family::kInet6)
            inet_ntop(AF_INET6,
                      &reinterpret_cast<const sockaddr_in6*>(a.sa())->sin6_addr,
                      ip, sizeof ip);
        host_ = ip;
        m_ = mysql_init(nullptr);
        if (m_ == nullptr) {
            fail("mysql_init: out of memory");
            return;
        }
        mysql_options(m_, MYSQL_OPT_NONBLOCK, nullptr);
        unsigned timeout = static_cast<unsigned>(target_.check.timeout) + 1;
        mysql_options(m_, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
        step_ = Step::kConnect;
        MYSQL* ret = nullptr;
        const CheckConfig& c = target_.check;
        int st = mysql_real_connect_start(
            &ret, m_, host_.c_str(), c.user.empty() ? nullptr : c.user.c_str(),
            c.password.empty() ? nullptr : c.password.c_str(), nullptr, a.port,
            nullptr, 0);
        if (st == 0)
            connect_done(ret);
        else
            wait_for(st);
    }

    void release() noexcept override
    {
        ev_io_stop(loop_, &io_);
        ev_timer_stop(loop_, &timer_);
        res_.reset();
        if (m_ != nullptr) {
            // In the middle of an operation the library may want to finish
            // it; a socket shut down makes any such I/O fail at once
            // instead of blocking the checker.
            if (busy_) {
                int fd = mysql_get_socket(m_);
                if (fd >= 0)
                    shutdown(fd, SHUT_RDWR);
            }
            mysql_close(m_);
            m_ = nullptr;
        }
        busy_ = false;
    }

    void wait_for(int st) noexcept
    {
        busy_ = true;
        int fd = mysql_get_socket(m_);
        int events = 0;
        if (st & MYSQL_WAIT_READ)
            events |= EV_READ;
        if (st & MYSQL_WAIT_WRITE)
            events |= EV_WRITE;
        if (st & MYSQL_WAIT_EXCEPT)
            events |= EV_READ;
        ev_io_stop(loop_, &io_);
        if (events != 0 && fd >= 0) {
            ev_io_set(&io_, fd, events);
            ev_io_start(loop_, &io_);
        }
        ev_timer_stop(loop_, &timer_);
        if (st & MYSQL_WAIT_TIMEOUT) {
            ev_timer_set(&timer_, mysql_get_timeout_value_ms(m_) / 1000.0, 0.);
            ev_timer_start(loop_, &timer_);
        }
    }

    void resume(int ready) noexcept
    {
        int st = 0;
        switch (step_) {
        case Step::kConnect: {
            MYSQL* ret = nullptr;
            st = mysql_real_connect_cont(&ret, m_, ready);
            if (st == 0)
                connect_done(ret);
            break;
        }
        case Step::kQuery: {
            int err = 0;
            st = mysql_real_query_cont(&err, m_, ready);
            if (st == 0)
                query_done(err);
            break;
        }
        case Step::kStore: {
            MYSQL_RES* r = nullptr;
            st = mysql_store_result_cont(&r, m_, ready);
            if (st == 0)
                store_done(r);
            break;
        }
        case Step::kDone: return;
        }
        if (st != 0)
            wait_for(st);
    }

    static void on_io(struct ev_loop*, ev_io* w, int revents) noexcept
    {
        auto* self = static_cast<MysqlProbe*>(w->data);
        int ready = 0;
        if (revents & EV_READ)
            ready |= MYSQL_WAIT_READ;
        if (revents & EV_WRITE)
            ready |= MYSQL_WAIT_WRITE;
        self->resume(ready);
    }

    static void on_timer(struct ev_loop*, ev_timer* w, int) noexcept
    {
        static_cast<MysqlProbe*>(w->data)->resume(MYSQL_WAIT_TIMEOUT);
    }

    std::string error_text() const
    {
        return std::to_string(mysql_errno(m_)) + " " + mysql_error(m_);
    }

    void connect_done(MYSQL* ret) noexcept
    {
        busy_ = false;
        if (ret == nullptr) {
            fail("connect: " + error_text());
            return;
        }
        query(0);
    }

    void query(int which) noexcept
    {
        static const char* const kQueries[] = {
            "SELECT 1, @@read_only, @@server_id", "SHOW SLAVE STATUS"};
        which_ = which;
        step_ = Step::kQuery;
        int err = 0;
        const char* q = kQueries[which];
        int st = mysql_real_query_start(&err, m_, q, std::strlen(q));
        if (st == 0)
            query_done(err);
        else
            wait_for(st);
    }

    void query_done(int err) noexcept
    {
        busy_ = false;
        if (err != 0) {
            fail(std::string(which_ == 0 ? "select" : "show slave status") +
                 ": " + error_text());
            return;
        }
        step_ = Step::kStore;
        MYSQL_RES* r = nullptr;
        int st = mysql_store_result_start(&r, m_);
        if (st == 0)
            store_done(r);
        else
            wait_for(st);
    }

    void store_done(MYSQL_RES* r) noexcept
    {
        busy_ = false;
        res_.reset(r);
        if (!res_) {
            fail("result: " + error_text());
            return;
        }
        if (which_ == 0) {
            MYSQL_ROW row = mysql_fetch_row(res_.get());
            if (row == nullptr || mysql_num_fields(res_.get()) < 3) {
                fail("select: no row");
                return;
            }
            read_only_ = row[1] != nullptr ? row[1] : "?";
            server_id_ = row[2] != nullptr ? row[2] : "?";
            res_.reset();
            query(1);
            return;
        }
        judge_replication();
    }

    void judge_replication() noexcept
    {
        step_ = Step::kDone;
        std::string who = "server_id " + server_id_ + ", read_only " +
                          read_only_;
        MYSQL_ROW row = mysql_fetch_row(res_.get());
        if (row == nullptr) {
            pass(who + ", not a replica");
            return;
        }
        unsigned n = mysql_num_fields(res_.get());
        MYSQL_FIELD* fields = mysql_fetch_fields(res_.get());
        auto col = [&](const char* name) -> const char* {
            for (unsigned i = 0; i < n; ++i)
                if (std::strcmp(fields[i].name, name) == 0)
                    return row[i];
            return nullptr;
        };
        std::string io = col("Slave_IO_Running") ? col("Slave_IO_Running")
                                                 : "NULL";
        std::string sql = col("Slave_SQL_Running") ? col("Slave_SQL_Running")
                                                   : "NULL";
        const char* lag = col("Seconds_Behind_Master");
        std::string lag_text = lag != nullptr ? lag : "NULL";
        if (io != "Yes" || sql != "Yes" || lag == nullptr) {
            std::string why = "replication broken: IO thread " + io +
                              ", SQL thread " + sql + ", lag " + lag_text;
            const char* err = col(
                io != "Yes" ? "Last_IO_Error" : "Last_SQL_Error");
            if (err != nullptr && *err != '\0')
                why += ": " + std::string(err).substr(0, 200);
            finish(Outcome::kLagging, why);
            return;
        }
        long behind = std::strtol(lag, nullptr, 10);
        if (behind > target_.check.max_lag) {
            finish(Outcome::kLagging,
                   "replication " + lag_text + " s behind (max_lag " +
                       std::to_string(target_.check.max_lag) + ")");
            return;
        }
        pass(who + ", lag " + lag_text + " s");
    }

    MYSQL* m_ = nullptr;
    MysqlResPtr res_;
    std::string host_;
    std::string read_only_, server_id_;
    Step step_ = Step::kConnect;
    int which_ = 0;
    bool busy_ = false;  // an operation is between _start and its end
    ev_io io_{};
    ev_timer timer_{};
};

}  // namespace

std::unique_ptr<Probe>
make_mysql_probe(struct ev_loop* loop, const ProbeTarget& target)
{
    return std::make_unique<MysqlProbe>(loop, target);
}

}  // namespace sj::hb
