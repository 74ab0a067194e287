package SJ::MariaDB;

# Real MariaDB servers for the tests: one, or a master-master pair like the
# site's database (each server a replica of the other, GTID-based, odd and
# even auto-increment values so both can take writes).
#
#   my $pair = SJ::MariaDB->start_pair;
#   $pair->server(0)->sql("INSERT INTO t.x VALUES (...)");
#   $pair->wait_synced;                       # both applied all they got
#   my @rows = $pair->server(1)->sql("SELECT * FROM t.x");
#   $pair->server(1)->slave_status->{Slave_IO_Running};   # Yes
#   $pair->server(0)->kill; $pair->server(0)->start;
#   $pair->stop_all;
#
# Each server runs from Debian's mariadb-server in the foreground as our
# child, with --no-defaults (nothing from /etc/mysql), its own datadir,
# socket, pid file and loopback port under the test's temporary directory,
# and tiny buffers so that it starts in about a second. SQL goes through the
# mariadb command-line client over the server's Unix socket, so no Perl
# database driver is needed.

use strict;
use warnings;

use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);

use SJ::Net;

our $ReplUser = 'repl';
our $ReplPassword = 'sj-repl';

sub _find {
    for my $bin (@_) {
        next unless defined $bin;
        return $bin if -x $bin;
    }
    return undef;
}

sub server_binary {
    _find($ENV{SJ_MARIADBD}, '/usr/sbin/mariadbd', '/usr/sbin/mysqld',
          '/usr/libexec/mariadbd');
}
sub client_binary  { _find('/usr/bin/mariadb', '/usr/bin/mysql') }
sub install_binary {
    _find('/usr/bin/mariadb-install-db', '/usr/bin/mysql_install_db');
}

# skip_reason()
# Why MariaDB servers cannot run here (for plan skip_all), or undef.
sub skip_reason {
    server_binary() && install_binary()
        or return 'mariadbd not installed (apt-get install mariadb-server)';
    client_binary()
        or return 'mariadb client not installed (apt-get install mariadb-client)';
    return undef;
}

# SJ::MariaDB->start(%opt)
# Initialises a datadir and starts one server; returns an SJ::MariaDB::Server.
# Options:
#   dir       => DIR   where it works (default: a temporary directory); the
#                      server uses DIR/mariadb-ID
#   id        => 1     server_id, also the GTID domain and the
#                      auto_increment_offset
#   port      => N     default: a free loopback port
#   increment => 1     auto_increment_increment
#   args      => [...] extra mariadbd options
sub start {
    my ($class, %o) = @_;
    my $s = SJ::MariaDB::Server->new(%o);
    $s->init;
    $s->start;
    return $s;
}

# SJ::MariaDB->start_pair(%opt)
# Two servers (server_id 1 and 2, auto_increment_increment 2, offsets 1 and
# 2), each a replica of the other; returns once both replication threads run
# on both. Options: dir, args as start. Dies, with the servers' logs, when
# replication does not come up within 20 seconds.
sub start_pair {
    my ($class, %o) = @_;
    my $dir = $o{dir} // tempdir('sj-mariadb-XXXXXX', TMPDIR => 1,
                                 CLEANUP => 1);
    my $self = bless { servers => [] }, $class;
    for my $id (1, 2) {
        push @{ $self->{servers} }, SJ::MariaDB::Server->new(
            dir => $dir, id => $id, increment => 2, args => $o{args},
            $o{ports} ? (port => $o{ports}[$id - 1]) : ());
    }
    my ($s0, $s1) = @{ $self->{servers} };
    # Initialise once and copy: the bootstrap is most of the start-up time,
    # and MariaDB keeps no per-server identity in the datadir (server_id and
    # the GTID domain come from the command line).
    $s0->init;
    $s1->init_from($s0);
    $_->start for $s0, $s1;
    for my $s ($s0, $s1) {
        # Each server gets its replication account without binlogging it;
        # replicated, the CREATE USER would fail on the peer that already has
        # the account and stop its SQL thread.
        $s->sql("SET sql_log_bin = 0; "
                . "CREATE USER '$ReplUser'\@'127.0.0.1' "
                . "IDENTIFIED BY '$ReplPassword'; "
                . "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* "
                . "TO '$ReplUser'\@'127.0.0.1'; "
                . "SET GLOBAL gtid_slave_pos = ''");
    }
    $s0->replicate_from($s1);
    $s1->replicate_from($s0);
    for my $s ($s0, $s1) {
        $s->wait_slave_running(20)
            or die "mariadb $s->{id}: replication did not start: "
                   . _status_line($s->slave_status) . "\n"
                   . $s->log_tail;
    }
    return $self;
}

sub _status_line {
    my ($st) = @_;
    return 'no slave status' unless $st && %$st;
    return join ', ', map { "$_=" . ($st->{$_} // '') }
        qw(Slave_IO_Running Slave_SQL_Running Last_IO_Error Last_SQL_Error);
}

# $pair->server($i): server 0 (server_id 1) or 1 (server_id 2).
sub server  { $_[0]{servers}[$_[1]] }
sub servers { @{ $_[0]{servers} } }

# $pair->wait_synced($timeout = 10)
# Waits until each running server has applied everything the other running
# server has written (its gtid_binlog_pos is in the peer's gtid_slave_pos,
# domain by domain). Returns true when synced, false on timeout.
sub wait_synced {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    my @run = grep { $_->is_running } $self->servers;
    while (1) {
        my $ok = 1;
        for my $s (@run) {
            for my $peer (grep { $_ != $s } @run) {
                my ($pos) = $s->sql_value(
                    'SELECT @@global.gtid_binlog_pos');
                my ($applied) = $peer->sql_value(
                    'SELECT @@global.gtid_slave_pos');
                my %seen = map { /^(\d+-\d+)-(\d+)$/ ? ($1 => $2) : () }
                    split /,/, ($applied // '');
                for my $g (split /,/, ($pos // '')) {
                    next unless $g =~ /^(\d+)-(\d+)-(\d+)$/;
                    # Only the domain the writer owns: its own writes.
                    next unless $1 == $s->{id};
                    my $have = $seen{"$1-$2"} // -1;
                    $ok = 0 if $have < $3;
                }
            }
        }
        return 1 if $ok;
        return 0 if time >= $deadline;
        sleep 0.1;
    }
}

# $pair->stop_all: stops both servers (SIGTERM, clean shutdown).
sub stop_all {
    my ($self) = @_;
    $_->stop for $self->servers;
}

package SJ::MariaDB::Server;

use strict;
use warnings;

use File::Copy qw(copy);
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);

use SJ::Net;

sub new {
    my ($class, %o) = @_;
    my $base = $o{dir} // tempdir('sj-mariadb-XXXXXX', TMPDIR => 1,
                                  CLEANUP => 1);
    my $id = $o{id} // 1;
    my $d = "$base/mariadb-$id";
    mkdir $d unless -d $d;
    mkdir "$d/tmp" unless -d "$d/tmp";
    my $self = bless {
        id        => $id,
        port      => $o{port} // free_port(),
        increment => $o{increment} // 1,
        args      => $o{args} // [],
        dir       => $d,
        datadir   => "$d/data",
        socket    => "$d/mysqld.sock",
        pidfile   => "$d/mysqld.pid",
        log       => "$d/error.log",
        pid       => undef,
    }, $class;
    # sun_path holds 108 bytes; a deep TMPDIR would make the socket unusable.
    die "mariadb: socket path too long: $self->{socket}\n"
        if length $self->{socket} > 100;
    return $self;
}

sub id       { $_[0]{id} }
sub port     { $_[0]{port} }
sub socket   { $_[0]{socket} }
sub pid      { $_[0]{pid} }
sub dir      { $_[0]{dir} }
sub datadir  { $_[0]{datadir} }
sub address  { "127.0.0.1:$_[0]{port}" }
sub is_running { process_alive($_[0]{pid}) }

sub _user_args {
    # mariadbd refuses to run as root unless told to; the test tree belongs
    # to root then, so root it is.
    return $> == 0 ? ('--user=root') : ();
}

sub _tuning_args {
    return ('--innodb-buffer-pool-size=16M', '--innodb-log-file-size=8M',
            '--innodb-flush-log-at-trx-commit=2', '--sync-binlog=0',
            '--performance-schema=OFF', '--skip-name-resolve',
            '--innodb-doublewrite=0');
}

# $server->init
# Creates the datadir with mariadb-install-db (root@localhost without a
# password, no test database).
sub init {
    my ($self) = @_;
    my $bin = SJ::MariaDB::install_binary() or die "mariadb-install-db missing\n";
    my ($st, $out, $err) = run_capture(
        { timeout => 60 },
        $bin, '--no-defaults', "--datadir=$self->{datadir}",
        '--auth-root-authentication-method=normal', '--skip-test-db',
        "--tmpdir=$self->{dir}/tmp", _user_args(), _tuning_args());
    die "mariadb-install-db failed for server $self->{id} "
        . "(status $st):\n$out$err" if $st != 0;
}

# $server->init_from($other): copies another server's fresh datadir.
sub init_from {
    my ($self, $other) = @_;
    my ($st, $out, $err) = run_capture('/bin/cp', '-a', $other->{datadir},
                                       $self->{datadir});
    die "copying datadir: $out$err" if $st != 0;
}

sub _command {
    my ($self) = @_;
    my $bin = SJ::MariaDB::server_binary() or die "mariadbd not installed\n";
    return ($bin, '--no-defaults', _user_args(),
            "--datadir=$self->{datadir}", "--tmpdir=$self->{dir}/tmp",
            "--socket=$self->{socket}", "--pid-file=$self->{pidfile}",
            "--log-error=$self->{log}",
            '--bind-address=127.0.0.1', "--port=$self->{port}",
            "--server-id=$self->{id}", "--gtid-domain-id=$self->{id}",
            "--log-bin=$self->{dir}/binlog", '--binlog-format=ROW',
            '--log-slave-updates', "--relay-log=$self->{dir}/relay",
            "--auto-increment-increment=$self->{increment}",
            "--auto-increment-offset=$self->{id}",
            '--report-host=127.0.0.1', "--report-port=$self->{port}",
            # A replica whose master went away retries every second (see
            # MASTER_CONNECT_RETRY) and notices a silent master in 5 s.
            '--slave-net-timeout=5',
            _tuning_args(), @{ $self->{args} });
}

# $server->start
# Starts the server (again, on the same port and datadir) and waits until it
# accepts SQL. Replication configured before resumes by itself. Dies with the
# error log when it does not come up within 30 seconds.
sub start {
    my ($self) = @_;
    die "mariadb $self->{id}: already running (pid $self->{pid})\n"
        if $self->{pid} && process_alive($self->{pid});
    $self->{pid} = spawn(cmd => [$self->_command],
                         stdout => "$self->{dir}/stdout.log",
                         stderr => "$self->{dir}/stdout.log",
                         name => "mariadbd $self->{id}");
    my $deadline = time + 30;
    while (1) {
        unless (process_alive($self->{pid})) {
            $self->{pid} = undef;
            die "mariadb $self->{id}: exited at start\n" . $self->log_tail;
        }
        if (-S $self->{socket}
            && wait_for_port('127.0.0.1', $self->{port}, 0)) {
            my ($st) = $self->_client('SELECT 1');
            last if $st == 0;
        }
        if (time >= $deadline) {
            kill_process(delete $self->{pid});
            die "mariadb $self->{id}: no answer on port $self->{port}\n"
                . $self->log_tail;
        }
        sleep 0.1;
    }
    return $self;
}

# $server->stop($timeout = 30)
# SIGTERM (a clean shutdown), wait, SIGKILL after the timeout. Returns the
# wait status, undef when it had to be killed.
sub stop {
    my ($self, $timeout) = @_;
    my $pid = delete $self->{pid} or return 0;
    return stop_process($pid, $timeout // 30);
}

# $server->kill: SIGKILL, a crashed database server.
sub kill {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill_process($pid);
}

sub restart {
    my ($self) = @_;
    $self->stop;
    return $self->start;
}

sub log_tail {
    my ($self) = @_;
    my $out = '';
    for my $f ($self->{log}, "$self->{dir}/stdout.log") {
        open my $fh, '<', $f or next;
        my @l = <$fh>;
        splice @l, 0, -20 if @l > 20;
        $out .= "--- $f\n" . join('', @l);
    }
    return $out;
}

# Runs SQL with the command-line client over the socket, as root.
# Returns ($status, $stdout, $stderr).
sub _client {
    my ($self, $sql, @opt) = @_;
    my $bin = SJ::MariaDB::client_binary() or die "mariadb client missing\n";
    return run_capture(
        { timeout => 30, stdin => $sql },
        $bin, '--no-defaults', "--socket=$self->{socket}", '-uroot',
        '--connect-timeout=5', '--batch', @opt);
}

# $server->sql($sql)
# Runs one or more statements (separated by ";") and returns the rows of the
# result sets as array refs, without the column names. Values are as the
# client prints them in batch mode: NULL is the string "NULL", tabs and
# newlines inside values come escaped (\t, \n). Dies with the client's error
# (including the SQL error code) when a statement fails.
sub sql {
    my ($self, $sql) = @_;
    my ($st, $out, $err) = $self->_client($sql, '--skip-column-names');
    die "mariadb $self->{id}: $err" . ($err =~ /\n$/ ? '' : "\n")
        if $st != 0;
    return map { [split /\t/, $_, -1] } split /\n/, $out;
}

# $server->sql_value($sql): the first column of the first row, or undef.
sub sql_value {
    my ($self, $sql) = @_;
    my @rows = $self->sql($sql);
    return @rows ? $rows[0][0] : undef;
}

# $server->sql_hashes($sql)
# Rows of the (last) result set as hashrefs keyed by column name.
sub sql_hashes {
    my ($self, $sql) = @_;
    my ($st, $out, $err) = $self->_client($sql);
    die "mariadb $self->{id}: $err" if $st != 0;
    my @lines = split /\n/, $out;
    return () unless @lines;
    my @names = split /\t/, shift @lines, -1;
    return map {
        my @v = split /\t/, $_, -1;
        my %h;
        @h{@names} = @v;
        \%h;
    } @lines;
}

# $server->slave_status
# SHOW SLAVE STATUS as a hashref (Slave_IO_Running, Slave_SQL_Running,
# Last_IO_Error, Seconds_Behind_Master, ...); empty when not a replica.
sub slave_status {
    my ($self) = @_;
    my @rows = $self->sql_hashes('SHOW SLAVE STATUS');
    return $rows[0] // {};
}

# $server->replicate_from($master)
# Makes this server a replica of $master (GTID, from the point this server
# already applied) and starts replication. The account comes from
# start_pair.
sub replicate_from {
    my ($self, $master) = @_;
    $self->sql("CHANGE MASTER TO MASTER_HOST='127.0.0.1', "
               . "MASTER_PORT=$master->{port}, "
               . "MASTER_USER='$SJ::MariaDB::ReplUser', "
               . "MASTER_PASSWORD='$SJ::MariaDB::ReplPassword', "
               . "MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos; "
               . "START SLAVE");
}

# $server->wait_slave_running($timeout = 10)
# Waits until both replication threads say Yes. Returns true, or false on
# timeout (or when one stopped with an error).
sub wait_slave_running {
    my ($self, $timeout) = @_;
    return $self->wait_slave_state(
        sub { ($_[0]{Slave_IO_Running} // '') eq 'Yes'
              && ($_[0]{Slave_SQL_Running} // '') eq 'Yes' },
        $timeout);
}

# $server->wait_slave_state(sub { my $status = shift; ... }, $timeout = 10)
# Polls SHOW SLAVE STATUS until the predicate holds. Returns the status
# hashref that satisfied it, or undef on timeout.
sub wait_slave_state {
    my ($self, $pred, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        my $st = $self->slave_status;
        return $st if $pred->($st);
        return undef if time >= $deadline;
        sleep 0.1;
    }
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    $self->stop(10) if $self->{pid};
}

1;
