package SJ::Net;

# Loopback networking and child-process helpers shared by the integration
# tests: free ports, waiting for a listener, a tiny HTTP/1.1 client written on
# raw sockets (so a test sees the exact status line, headers and body a proxy
# sent, not what a forgiving client library made of them), and a registry of
# the processes a test started, so every one of them is killed when the test
# ends, however it ends.
#
# Only core Perl modules are used.

use strict;
use warnings;

use Exporter qw(import);
# Loaded before the END block below is compiled, so that END runs first: the
# processes go before File::Temp removes the directories they work in.
use File::Temp ();
use Errno qw(EINTR ECHILD ESRCH);
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX qw(:sys_wait_h);
use Socket qw(SOCK_STREAM);
use Time::HiRes qw(sleep time);

our @EXPORT = qw(free_port wait_for_port wait_for_path port_is_closed
                 http_get http_send http_read
                 spawn stop_process kill_process process_alive
                 run_capture);
our @EXPORT_OK = qw(parse_url);

# ---------------------------------------------------------------------------
# Ports

my %ports_given;

# free_port()
# Returns a TCP port on 127.0.0.1 that nothing listened on a moment ago. The
# kernel picks it (bind to port 0); the port is closed again before it is
# returned, so another process could take it in between, but ephemeral ports
# cycle slowly enough for a test. A port is never handed out twice in one
# process, so two servers started by one test never collide with each other.
sub free_port {
    for (1 .. 100) {
        my $sock = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1',
            LocalPort => 0,
            Proto     => 'tcp',
            Listen    => 1,
        ) or die "free_port: cannot bind 127.0.0.1:0: $!\n";
        my $port = $sock->sockport;
        close $sock;
        next if $ports_given{$port}++;
        return $port;
    }
    die "free_port: no unused port after 100 tries\n";
}

# wait_for_port($host, $port, $timeout = 10)
# Polls connect() until something accepts on $host:$port. Returns 1 when it
# does, 0 when $timeout seconds pass first.
sub wait_for_port {
    my ($host, $port, $timeout) = @_;
    $timeout //= 10;
    my $deadline = time + $timeout;
    while (1) {
        my $sock = IO::Socket::INET->new(
            PeerAddr => $host,
            PeerPort => $port,
            Proto    => 'tcp',
            Timeout  => 1,
        );
        if ($sock) {
            close $sock;
            return 1;
        }
        return 0 if time >= $deadline;
        sleep 0.05;
    }
}

# port_is_closed($host, $port)
# True when a connect() to $host:$port is refused (or fails) right now.
sub port_is_closed {
    my ($host, $port) = @_;
    my $sock = IO::Socket::INET->new(
        PeerAddr => $host,
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => 2,
    );
    return 1 unless $sock;
    close $sock;
    return 0;
}

# wait_for_path($path, $timeout = 10)
# Waits for a file or a Unix socket to appear at $path. A socket only counts
# once something accepts on it: a daemon binds before it listens, and a client
# racing in between would get ECONNREFUSED. Returns 1 or 0 as wait_for_port.
sub wait_for_path {
    my ($path, $timeout) = @_;
    $timeout //= 10;
    my $deadline = time + $timeout;
    while (1) {
        if (-S $path) {
            my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM,
                                             Peer => $path);
            if ($sock) {
                close $sock;
                return 1;
            }
        } elsif (-e $path) {
            return 1;
        }
        return 0 if time >= $deadline;
        sleep 0.05;
    }
}

# ---------------------------------------------------------------------------
# HTTP

# parse_url($url)
# Splits "http://host[:port]/path" into (host, port, path_with_query).
sub parse_url {
    my ($url) = @_;
    $url =~ m{^http://([^/:]+)(?::(\d+))?(/.*)?$}
        or die "parse_url: not an http:// URL: $url\n";
    return ($1, $2 // 80, $3 // '/');
}

sub _args {
    my @args = @_;
    my %o;
    if (@args % 2) {
        my $url = shift @args;
        %o = @args;
        @o{qw(host port path)} = parse_url($url);
    } else {
        %o = @args;
    }
    $o{path}    //= '/';
    $o{method}  //= 'GET';
    $o{timeout} //= 10;
    $o{headers} //= {};
    return \%o;
}

# http_send($url, %opt) or http_send(host => .., port => .., path => .., %opt)
# Connects and writes one request; returns the connected socket, or undef
# with $@ set when the connection fails. Options:
#   unix    => PATH    connect to a Unix socket instead of host:port
#   method  => 'GET'   request method
#   headers => {}      extra request headers (Host and Connection are sent
#                      unless given here; pass Connection => undef to omit)
#   body    => STRING  request body (Content-Length is added)
#   timeout => 10      connect timeout in seconds
#   raw     => STRING  send these bytes verbatim instead of building a request
# Use it with http_read to keep several requests in flight at once.
sub http_send {
    my $o = _args(@_);
    my $sock;
    if (defined $o->{unix}) {
        $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM,
                                      Peer => $o->{unix});
    } else {
        $sock = IO::Socket::INET->new(
            PeerAddr => $o->{host} // '127.0.0.1',
            PeerPort => $o->{port},
            Proto    => 'tcp',
            Timeout  => $o->{timeout},
        );
    }
    unless ($sock) {
        $@ = "connect: $!";
        return undef;
    }
    binmode $sock;
    my $req;
    if (defined $o->{raw}) {
        $req = $o->{raw};
    } else {
        my %h = %{ $o->{headers} };
        my %lc = map { lc($_) => $_ } keys %h;
        unless (exists $lc{host}) {
            my $host = $o->{host} // 'localhost';
            $host .= ":$o->{port}" if defined $o->{port} && $o->{port} != 80;
            $h{Host} = $host;
        }
        $h{Connection} = 'close' unless exists $lc{connection};
        if (defined $o->{body} && !exists $lc{'content-length'}) {
            $h{'Content-Length'} = length $o->{body};
        }
        $req = "$o->{method} $o->{path} HTTP/1.1\r\n";
        for my $name (sort keys %h) {
            next unless defined $h{$name};
            $req .= "$name: $h{$name}\r\n";
        }
        $req .= "\r\n";
        $req .= $o->{body} if defined $o->{body};
    }
    local $SIG{PIPE} = 'IGNORE';
    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite($sock, $req, length($req) - $off, $off);
        unless (defined $n) {
            next if $! == EINTR;
            $@ = "write: $!";
            return undef;
        }
        $off += $n;
    }
    return $sock;
}

# Reads from $sock into $$buf until $want bytes are buffered (or EOF when
# $want is undef). Returns false on timeout or when EOF comes early.
sub _fill {
    my ($sock, $buf, $want, $deadline) = @_;
    while (!defined $want || length($$buf) < $want) {
        my $left = $deadline - time;
        return 0 if $left <= 0;
        my $rin = '';
        vec($rin, fileno($sock), 1) = 1;
        my $nready = select(my $rout = $rin, undef, undef, $left);
        next if $nready < 0 && $! == EINTR;
        return 0 if $nready <= 0;
        my $n = sysread($sock, $$buf, 65536, length $$buf);
        next if !defined $n && $! == EINTR;
        return !defined $want if !defined $n || $n == 0;
    }
    return 1;
}

sub _fill_line {
    my ($sock, $buf, $deadline) = @_;
    while (index($$buf, "\n") < 0) {
        my $len = length $$buf;
        _fill($sock, $buf, $len + 1, $deadline) or return 0;
    }
    return 1;
}

# http_read($sock, %opt)
# Reads one response from a socket returned by http_send. Returns a hashref:
#   status  => 200 (0 when no response came: see error)
#   reason  => 'OK'
#   version => 'HTTP/1.1'
#   headers => { lower-case name => value, repeated headers joined by ", " }
#   header_lines => [ [Name, value], ... ] in the order received
#   body    => the body (de-chunked)
#   raw_head => the status line and headers as received
#   error   => undef, or why the response is missing or incomplete
# Options: timeout => 10 (for the whole response), method => 'GET' (a HEAD
# response has no body).
sub http_read {
    my ($sock, %o) = @_;
    my $timeout = $o{timeout} // 10;
    my $deadline = time + $timeout;
    my %r = (status => 0, reason => '', headers => {}, header_lines => [],
             body => '', error => undef);
    my $buf = '';

    # The head ends at the first empty line.
    my $end;
    while (1) {
        $end = index($buf, "\r\n\r\n");
        last if $end >= 0;
        my $len = length $buf;
        unless (_fill($sock, \$buf, $len + 1, $deadline)) {
            $r{error} = length $buf ? 'incomplete response head'
                                    : 'no response';
            $r{raw_head} = $buf;
            return \%r;
        }
    }
    my $head = substr($buf, 0, $end + 4, '');
    $r{raw_head} = $head;
    my @lines = split /\r\n/, $head;
    my $status_line = shift @lines;
    unless ($status_line =~ m{^(HTTP/\d\.\d) (\d{3})(?: (.*))?$}) {
        $r{error} = "bad status line: $status_line";
        return \%r;
    }
    @r{qw(version status reason)} = ($1, $2, $3 // '');
    for my $line (@lines) {
        my ($name, $value) = $line =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/
            or do { $r{error} = "bad header line: $line"; return \%r };
        push @{ $r{header_lines} }, [$name, $value];
        my $k = lc $name;
        $r{headers}{$k} = exists $r{headers}{$k}
            ? "$r{headers}{$k}, $value" : $value;
    }

    # Message body length, RFC 9112 section 6.3.
    my $method = $o{method} // 'GET';
    my $s = $r{status};
    return \%r if $method eq 'HEAD' || $s =~ /^1/ || $s == 204 || $s == 304;
    my $te = $r{headers}{'transfer-encoding'};
    if (defined $te && $te =~ /chunked\s*$/i) {
        while (1) {
            unless (_fill_line($sock, \$buf, $deadline)) {
                $r{error} = 'incomplete chunk size';
                return \%r;
            }
            $buf =~ s/^([0-9a-fA-F]+)[^\n]*\n//
                or do { $r{error} = 'bad chunk size'; return \%r };
            my $size = hex $1;
            if ($size == 0) {
                # Trailers, then the final empty line.
                while (1) {
                    unless (_fill_line($sock, \$buf, $deadline)) {
                        $r{error} = 'incomplete trailers';
                        return \%r;
                    }
                    $buf =~ s/^([^\n]*)\n//;
                    last if $1 eq '' || $1 eq "\r";
                }
                last;
            }
            unless (_fill($sock, \$buf, $size + 2, $deadline)) {
                $r{body} .= $buf;
                $r{error} = 'incomplete chunk';
                return \%r;
            }
            $r{body} .= substr($buf, 0, $size, '');
            substr($buf, 0, 2, '');
        }
    } elsif (defined $r{headers}{'content-length'}) {
        my $len = $r{headers}{'content-length'};
        unless ($len =~ /^\d+$/) {
            $r{error} = "bad content-length: $len";
            return \%r;
        }
        unless (_fill($sock, \$buf, $len, $deadline)) {
            $r{error} = 'incomplete body';
        }
        $r{body} = substr($buf, 0, $len);
    } else {
        # Delimited by the close of the connection.
        _fill($sock, \$buf, undef, $deadline)
            or $r{error} = 'timeout reading body';
        $r{body} = $buf;
    }
    return \%r;
}

# http_get($url, %opt) or http_get(host => .., port => .., path => .., %opt)
# One request on a fresh connection (Connection: close unless the headers say
# otherwise); returns the http_read hashref. A failed connect gives status 0
# and error "connect: ...". Options as http_send.
sub http_get {
    my $o = _args(@_);
    my $sock = http_send(%$o);
    return { status => 0, reason => '', headers => {}, header_lines => [],
             body => '', error => $@ } unless $sock;
    my $r = http_read($sock, timeout => $o->{timeout},
                      method => $o->{method});
    close $sock;
    return $r;
}

# ---------------------------------------------------------------------------
# Processes

# Every process spawned here, pid => { pgrp => bool, name => str }. The END
# block below kills what is still running, so a test that dies half-way
# leaves nothing behind. Only this process kills them: a forked child that
# returns into Perl (it should not, but) must not shoot its siblings.
my %children;
my $owner_pid = $$;

# spawn(cmd => [...], stdout => FILE, stderr => FILE, pgrp => 1,
#       env => {}, name => 'apache')
# Forks and execs cmd (a list, no shell). stdout and stderr are appended to
# the given files (default /dev/null); stdin is /dev/null. With pgrp (the
# default) the child leads its own process group, so kill_process can reach
# the workers it forks too (Apache prefork children outlive a SIGKILLed
# parent otherwise). Returns the pid; dies when fork fails. A failed exec
# shows as the child exiting with status 127.
sub spawn {
    my %o = @_;
    my @cmd = @{ $o{cmd} };
    my $pgrp = $o{pgrp} // 1;
    my $pid = fork;
    die "spawn: fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        eval {
            POSIX::setpgid(0, 0) if $pgrp;
            open STDIN, '<', '/dev/null' or die "stdin: $!";
            open STDOUT, '>>', $o{stdout} // '/dev/null'
                or die "stdout $o{stdout}: $!";
            open STDERR, '>>', $o{stderr} // '/dev/null'
                or die "stderr $o{stderr}: $!";
            $ENV{$_} = $o{env}{$_} for keys %{ $o{env} // {} };
            $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE CHLD);
            exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!";
        };
        print STDERR "spawn: $@";
        POSIX::_exit(127);
    }
    # Set the group from the parent too, so a kill right after spawn cannot
    # miss a child that has not run yet.
    POSIX::setpgid($pid, $pid) if $pgrp;
    $children{$pid} = { pgrp => $pgrp, name => $o{name} // $cmd[0] };
    return $pid;
}

# process_alive($pid)
# True while $pid runs (a child already reaped, or a zombie we reap here,
# counts as gone).
sub process_alive {
    my ($pid) = @_;
    return 0 unless $pid;
    if ($children{$pid}) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid || ($r < 0 && $! == ECHILD)) {
            $children{$pid}{status} = $? if $r == $pid;
            $children{$pid}{reaped} = 1;
            return 0;
        }
        return 1;
    }
    return kill(0, $pid) ? 1 : 0;
}

sub _signal {
    my ($pid, $sig) = @_;
    my $c = $children{$pid};
    if ($c && $c->{pgrp}) {
        # The whole group: a leader that is gone may leave workers behind.
        kill($sig, -$pid);
    }
    kill($sig, $pid) unless $c && $c->{reaped};
}

# Waits until $pid exits, up to $timeout seconds. Returns its wait status,
# or undef on timeout.
sub _wait {
    my ($pid, $timeout) = @_;
    my $c = $children{$pid};
    my $deadline = time + $timeout;
    while (1) {
        if ($c) {
            return $c->{status} // 0 if $c->{reaped};
            my $r = waitpid($pid, WNOHANG);
            if ($r == $pid) {
                $c->{reaped} = 1;
                $c->{status} = $?;
                return $?;
            }
            if ($r < 0) {
                $c->{reaped} = 1;
                return $c->{status} // 0;
            }
        } else {
            return 0 unless kill 0, $pid;
        }
        return undef if time >= $deadline;
        sleep 0.02;
    }
}

# True while a process other than a zombie is left in process group $pgid.
# Zombies do not count: their descriptors are closed already, and orphans
# wait for init to reap them, which inside a container may be never.
sub _group_alive {
    my ($pgid) = @_;
    unless (-d '/proc/self') {
        return kill(0, -$pgid) ? 1 : 0;
    }
    opendir my $dh, '/proc' or return 0;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $stat = <$fh> // next;
        # pid (comm) state ppid pgrp ...; comm may hold spaces and ")".
        $stat =~ /\)\s+(\S)\s+\d+\s+(\d+)/ or next;
        return 1 if $2 == $pgid && $1 ne 'Z' && $1 ne 'X';
    }
    return 0;
}

# Waits up to $timeout seconds for the group to empty.
sub _wait_group {
    my ($pgid, $timeout) = @_;
    my $deadline = time + $timeout;
    while (_group_alive($pgid)) {
        return 0 if time >= $deadline;
        sleep 0.01;
    }
    return 1;
}

sub _forget {
    my ($pid) = @_;
    my $c = delete $children{$pid};
    # Stragglers in the group (workers of a dead leader) go too, and are
    # gone, their sockets closed, when this returns.
    if ($c && $c->{pgrp}) {
        kill('KILL', -$pid);
        _wait_group($pid, 5);
    }
}

# stop_process($pid, $timeout = 10)
# Sends SIGTERM to $pid, waits up to $timeout seconds, then SIGKILLs it (and
# its process group). Returns the wait status of a graceful exit, or undef
# when it had to be killed.
sub stop_process {
    my ($pid, $timeout) = @_;
    return 0 unless $pid;
    $timeout //= 10;
    kill('TERM', $pid) unless $children{$pid} && $children{$pid}{reaped};
    my $status = _wait($pid, $timeout);
    unless (defined $status) {
        _signal($pid, 'KILL');
        _wait($pid, 5);
    }
    _forget($pid);
    return $status;
}

# kill_process($pid)
# SIGKILLs $pid and its process group, a crash as far as peers can tell, and
# reaps it. Returns once it is gone.
sub kill_process {
    my ($pid) = @_;
    return unless $pid;
    _signal($pid, 'KILL');
    _wait($pid, 5);
    _forget($pid);
}

# run_capture(@cmd) or run_capture({ stdin => STRING, timeout => 30 }, @cmd)
# Runs a command to completion (no shell) and returns
# ($exit_status, $stdout, $stderr), with $exit_status as in $? (-1 when it
# could not run, killed after the timeout gives the signal in the low bits).
sub run_capture {
    my $o = ref $_[0] eq 'HASH' ? shift : {};
    my @cmd = @_;
    my $timeout = $o->{timeout} // 60;
    my $out = File::Temp->new;
    my $err = File::Temp->new;
    my $in  = File::Temp->new;
    print $in $o->{stdin} if defined $o->{stdin};
    close $in;
    my $pid = fork;
    return (-1, '', "fork: $!") unless defined $pid;
    if ($pid == 0) {
        eval {
            open STDIN, '<', $in->filename or die "stdin: $!";
            open STDOUT, '>', $out->filename or die "stdout: $!";
            open STDERR, '>', $err->filename or die "stderr: $!";
            $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE CHLD);
            exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!";
        };
        print STDERR "run_capture: $@";
        POSIX::_exit(127);
    }
    my $deadline = time + $timeout;
    my $status;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid) { $status = $?; last }
        if (time >= $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            $status = $?;
            last;
        }
        sleep 0.01;
    }
    local $/;
    open my $fo, '<', $out->filename or die;
    open my $fe, '<', $err->filename or die;
    my ($so, $se) = (scalar(<$fo>) // '', scalar(<$fe>) // '');
    return ($status, $so, $se);
}

# Kill what is left when the test ends: normal exit, die, or a signal turned
# into an exit below. TERM first so daemons can remove their files, then
# KILL for the stubborn.
sub _cleanup {
    return unless $$ == $owner_pid;
    my @pids = keys %children;
    return unless @pids;
    local $?;
    kill('TERM', $_) for @pids;
    for my $pid (@pids) {
        _wait($pid, 5) // do { _signal($pid, 'KILL'); _wait($pid, 2) };
        _forget($pid);
    }
}

END { _cleanup() }

# SIGINT/SIGTERM would skip END blocks; turn them into an ordinary exit so
# the processes and temporary directories still go. A handler a test set
# itself is left alone.
my %signo = (HUP => 1, INT => 2, TERM => 15);
for my $sig (sort keys %signo) {
    next if defined $SIG{$sig} && $SIG{$sig} ne '' && $SIG{$sig} ne 'DEFAULT';
    $SIG{$sig} = sub { exit(128 + $signo{$sig}) };
}

1;
