package SJ::Memcached;

# A real memcached on a loopback port, in the foreground as our child, with a
# tiny text-protocol client so tests can look at what cached put in the
# shared tier.
#
#   my $mc = SJ::Memcached->start;          # free port, 64 MB
#   $mc->set('k', 'v'); $mc->get('k');      # 'v'
#   $mc->kill; $mc->start;                  # crash, then back on the same port
#
# Modelled on memcached's own t/lib/MemcachedTest.pm new_memcached().

use strict;
use warnings;

use Errno qw(EINTR);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

use SJ::Net;

# memcached_binary()
# The memcached binary, or undef when it is not installed.
sub memcached_binary {
    for my $b ($ENV{SJ_MEMCACHED} // (), '/usr/bin/memcached',
               '/usr/local/bin/memcached', '/usr/sbin/memcached') {
        return $b if -x $b;
    }
    return undef;
}

# skip_reason()
# Why memcached cannot run here (for plan skip_all), or undef.
sub skip_reason {
    return memcached_binary() ? undef
        : 'memcached not installed (apt-get install memcached)';
}

# SJ::Memcached->start(%opt) or $mc->start
# As a class method, creates and starts a server; as an instance method,
# starts a stopped one again on the same port. Options:
#   port   => N      default: a free loopback port
#   dir    => DIR    where its log goes (default: a temporary directory)
#   memory => 64     cache size in megabytes (-m)
#   args   => [...]  extra memcached arguments
# Waits until it answers "version"; dies with its log when it does not
# within 10 seconds.
sub start {
    my ($self, %o) = @_;
    unless (ref $self) {
        my $dir = $o{dir} // tempdir('sj-memcached-XXXXXX', TMPDIR => 1,
                                     CLEANUP => 1);
        $self = bless {
            port   => $o{port} // free_port(),
            memory => $o{memory} // 64,
            args   => $o{args} // [],
            dir    => $dir,
            pid    => undef,
        }, $self;
        $self->{log} = "$dir/memcached-$self->{port}.log";
    }
    die "memcached: already running (pid $self->{pid})\n"
        if $self->{pid} && process_alive($self->{pid});
    my $bin = memcached_binary() or die "memcached not installed\n";
    # -U 0: no UDP, so nothing else can collide with the port; -u only as
    # root, where memcached refuses to start without it.
    my @cmd = ($bin, '-l', '127.0.0.1', '-p', $self->{port}, '-U', '0',
               '-m', $self->{memory}, '-c', 1024, @{ $self->{args} });
    push @cmd, '-u', 'nobody' if $> == 0;
    $self->{pid} = spawn(cmd => \@cmd, stdout => $self->{log},
                         stderr => $self->{log},
                         name => "memcached $self->{port}");
    my $deadline = time + 10;
    while (1) {
        unless (process_alive($self->{pid})) {
            $self->{pid} = undef;
            die "memcached: exited at start on port $self->{port}\n"
                . $self->_log_tail;
        }
        if (wait_for_port('127.0.0.1', $self->{port}, 0.1)) {
            my $v = eval { $self->cmd('version') };
            last if defined $v && $v =~ /^VERSION /;
        }
        if (time >= $deadline) {
            kill_process(delete $self->{pid});
            die "memcached: no answer on port $self->{port}\n"
                . $self->_log_tail;
        }
        sleep 0.05;
    }
    return $self;
}

# $mc->stop($timeout = 10)
# SIGTERM, wait, SIGKILL after the timeout. Returns the wait status (undef
# when it had to be killed).
sub stop {
    my ($self, $timeout) = @_;
    $self->_disconnect;
    my $pid = delete $self->{pid} or return 0;
    return stop_process($pid, $timeout // 10);
}

# $mc->kill
# SIGKILL: a crashed cache node.
sub kill {
    my ($self) = @_;
    $self->_disconnect;
    my $pid = delete $self->{pid} or return;
    kill_process($pid);
}

# $mc->restart: stop, then start on the same port (the cache is empty).
sub restart {
    my ($self) = @_;
    $self->stop;
    return $self->start;
}

sub pid     { $_[0]{pid} }
sub port    { $_[0]{port} }
sub address { "127.0.0.1:$_[0]{port}" }
sub is_running { process_alive($_[0]{pid}) }

sub _log_tail {
    my ($self) = @_;
    open my $fh, '<', $self->{log} or return '';
    local $/;
    my $t = <$fh> // '';
    return "--- $self->{log}\n" . substr($t, -2000);
}

sub _disconnect {
    my ($self) = @_;
    close delete $self->{sock} if $self->{sock};
}

sub _sock {
    my ($self) = @_;
    return $self->{sock} if $self->{sock};
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $self->{port},
                                  Proto => 'tcp', Timeout => 5)
        or die "memcached 127.0.0.1:$self->{port}: connect: $!\n";
    binmode $s;
    return $self->{sock} = $s;
}

sub _write {
    my ($self, $data) = @_;
    my $s = $self->_sock;
    local $SIG{PIPE} = 'IGNORE';
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($s, $data, length($data) - $off, $off);
        if (!defined $n) {
            next if $! == EINTR;
            $self->_disconnect;
            die "memcached 127.0.0.1:$self->{port}: write: $!\n";
        }
        $off += $n;
    }
}

# Reads until $done->($buf) returns true; 5 s timeout.
sub _read_until {
    my ($self, $done) = @_;
    my $s = $self->_sock;
    my $buf = '';
    my $deadline = time + 5;
    until ($done->($buf)) {
        my $left = $deadline - time;
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        my $n = $left > 0 ? select(my $rout = $rin, undef, undef, $left) : 0;
        next if $n < 0 && $! == EINTR;
        if ($n <= 0) {
            $self->_disconnect;
            die "memcached 127.0.0.1:$self->{port}: timeout\n";
        }
        my $r = sysread($s, $buf, 65536, length $buf);
        next if !defined $r && $! == EINTR;
        if (!$r) {
            $self->_disconnect;
            die "memcached 127.0.0.1:$self->{port}: connection closed\n";
        }
    }
    return $buf;
}

# $mc->cmd($line)
# Sends one single-line command ("version", "flush_all", "delete k") and
# returns the first reply line without its CRLF. Dies on connection errors.
sub cmd {
    my ($self, $line) = @_;
    $self->_write("$line\r\n");
    my $buf = $self->_read_until(sub { $_[0] =~ /\r\n/ });
    $buf =~ s/\r\n.*//s;
    return $buf;
}

# $mc->set($key, $value, $exptime = 0, $flags = 0)
# Returns true when memcached answered STORED.
sub set {
    my ($self, $key, $value, $exptime, $flags) = @_;
    $exptime //= 0;
    $flags //= 0;
    $self->_write("set $key $flags $exptime " . length($value)
                  . "\r\n$value\r\n");
    my $buf = $self->_read_until(sub { $_[0] =~ /\r\n/ });
    return $buf =~ /^STORED\r\n/;
}

# $mc->get($key)
# The value, or undef when the key is absent. In list context also the flags.
sub get {
    my ($self, $key) = @_;
    $self->_write("get $key\r\n");
    my $buf = $self->_read_until(sub {
        my $b = $_[0];
        return 1 if $b =~ /^END\r\n/;
        return 0 unless $b =~ /^VALUE \S+ (\d+) (\d+)\r\n/;
        my $hl = $+[0];
        return length($b) >= $hl + $2 + 2 + 5;   # data, CRLF, END CRLF
    });
    return undef if $buf =~ /^END\r\n/;
    $buf =~ /^VALUE \S+ (\d+) (\d+)\r\n/
        or die "memcached: bad get reply: $buf\n";
    my $value = substr($buf, $+[0], $2);
    return wantarray ? ($value, $1) : $value;
}

# $mc->delete($key): true when memcached answered DELETED.
sub delete {
    my ($self, $key) = @_;
    return $self->cmd("delete $key") eq 'DELETED';
}

# $mc->stats
# A hashref of "stats" (curr_items, get_hits, get_misses, cmd_set, ...).
sub stats {
    my ($self, $sub) = @_;
    $self->_write(defined $sub ? "stats $sub\r\n" : "stats\r\n");
    my $buf = $self->_read_until(sub { $_[0] =~ /(?:^|\r\n)END\r\n$/ });
    my %s;
    $s{$1} = $2 while $buf =~ /^STAT (\S+) (.*?)\r$/mg;
    return \%s;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    $self->stop(5) if $self->{pid};
}

1;
