package SJ::Test;
# The integration-test harness (the nginx-tests / memcached t/lib way):
# a temporary directory per test, a configuration written into it, free
# loopback ports, the real daemons started in the foreground (-d) with their
# stderr captured to a log file, and the control protocol spoken directly.
#
#   my $t = SJ::Test->new;
#   my $port = $t->port('http');
#   $t->write_conf(cached => "listen = ( \"127.0.0.1:$port\" ); ...");
#   my $d = $t->start('cached');
#   my ($status, $body) = $d->ctl('status');
#   is($d->stop, 0, 'clean exit');
#
# Every daemon started is stopped when the test ends, dies or is
# interrupted: by its pid, never by name.
use strict;
use warnings;
use File::Temp ();
use IO::Socket::UNIX;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use Exporter 'import';
our @EXPORT_OK = qw(builddir srcdir);

my @all_daemons;

sub builddir { $ENV{SJ_BUILDDIR} // '.' }
sub srcdir   { $ENV{SJ_SRCDIR}   // '.' }

sub new {
    my ($class, %args) = @_;
    my $dir = File::Temp::tempdir('sj-test-XXXXXX', TMPDIR => 1,
                                  CLEANUP => !$ENV{SJ_KEEP});
    # Children run as nobody when we are root; they must reach the files.
    chmod 0755, $dir;
    mkdir "$dir/run";
    my $self = bless { dir => $dir, ports => {}, %args }, $class;
    return $self;
}

sub dir     { $_[0]{dir} }
sub run_dir { "$_[0]{dir}/run" }
sub conf_file { "$_[0]{dir}/sunjammer.conf" }
sub is_root { $> == 0 }

# A free loopback TCP port, the same one for the same name.
sub port {
    my ($self, $name) = @_;
    $name //= 'default';
    return $self->{ports}{$name} //= do {
        require SJ::Net;
        SJ::Net::free_port();
    };
}

# The `global` section every test starts from. Children drop privileges to
# nobody:nogroup when the test runs as root.
sub global_conf {
    my ($self, %over) = @_;
    my %g = (
        run_dir          => '"' . $self->run_dir . '"',
        log_level        => '"debug"',
        shutdown_timeout => '3.0',
        $self->is_root ? (user => '"nobody"', group => '"nogroup"') : (),
        %over,
    );
    return "global: {\n" . join('', map { "  $_ = $g{$_};\n" } sort keys %g)
        . "};\n";
}

# Writes the configuration file. Takes sections as name => body text (the
# text inside the braces, or for `pools` the pools' bodies); `raw` is
# appended as it is. Returns the path.
sub write_conf {
    my ($self, %s) = @_;
    my $text = $self->global_conf(%{ delete $s{global} // {} });
    my $raw = delete $s{raw} // '';
    for my $sec (qw(pools cached balancerd heartbeatd)) {
        next unless defined $s{$sec};
        $text .= "$sec: {\n$s{$sec}\n};\n";
    }
    $text .= $raw;
    return $self->write_file('sunjammer.conf', $text);
}

sub write_file {
    my ($self, $name, $text) = @_;
    my $path = "$self->{dir}/$name";
    open my $fh, '>', $path or die "$path: $!";
    print $fh $text;
    close $fh;
    return $path;
}

sub binary {
    my ($self, $name) = @_;
    my $sub = $name eq 'sjctl' ? 'sjctl' : $name;
    my $bin = builddir() . "/$sub/$name";
    die "$bin is not built\n" unless -x $bin;
    return $bin;
}

# Runs a program to completion; returns (exit status, stdout+stderr).
sub run {
    my ($self, @cmd) = @_;
    my $out = "$self->{dir}/run.out";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', $out or die;
        open STDERR, '>&', \*STDOUT or die;
        exec @cmd or die "exec $cmd[0]: $!";
    }
    waitpid $pid, 0;
    my $status = $? >> 8;
    open my $fh, '<', $out or die;
    local $/;
    my $text = <$fh> // '';
    return ($status, $text);
}

# `name -n -f conf`: (exit status, output).
sub check_conf {
    my ($self, $name, $conf) = @_;
    return $self->run($self->binary($name), '-n', '-f',
                      $conf // $self->conf_file);
}

# Starts a daemon in the foreground; waits for its control socket unless
# `wait => 0`. Returns an SJ::Daemon.
sub start {
    my ($self, $name, %opt) = @_;
    my $d = SJ::Daemon->new(test => $self, name => $name, %opt);
    $d->spawn;
    push @all_daemons, $d;
    if ($opt{wait} // 1) {
        $d->wait_ready($opt{timeout} // 10)
            or die "$name did not open its control socket:\n" . $d->log;
    }
    return $d;
}

sub ctl_path { my ($self, $name) = @_; $self->run_dir . "/$name.ctl" }

END {
    my $status = $?;
    $_->kill_hard for @all_daemons;
    $? = $status;
}
$SIG{INT} = $SIG{TERM} = sub { exit 1 };

# ---------------------------------------------------------------- a daemon

package SJ::Daemon;
use strict;
use warnings;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use IO::Socket::UNIX;

sub new {
    my ($class, %a) = @_;
    my $self = bless {%a}, $class;
    $self->{log_file} = $a{test}->dir . "/$a{name}.log";
    return $self;
}

sub name { $_[0]{name} }
sub pid  { $_[0]{pid} }
sub pid_file { $_[0]{test}->run_dir . "/$_[0]{name}.pid" }
sub ctl_path { $_[0]{test}->ctl_path($_[0]{name}) }

sub spawn {
    my ($self) = @_;
    my $bin = $self->{test}->binary($self->{name});
    my @args = ('-d', '-f', $self->{conf} // $self->{test}->conf_file,
                @{ $self->{args} // [] });
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $self->{log_file} or die;
        open STDERR, '>&', \*STDOUT or die;
        # `wrap => [...]`: a command that execs the daemon in the same
        # process (taskset -c 0), so the pid is still the daemon's.
        my @cmd = (@{ $self->{wrap} // [] }, $bin, @args);
        exec @cmd or die "exec $cmd[0]: $!";
    }
    $self->{pid} = $pid;
    $self->{exited} = undef;
    return $pid;
}

# True once the control socket answers ping.
sub wait_ready {
    my ($self, $timeout) = @_;
    my $end = time + ($timeout // 10);
    while (time < $end) {
        return 0 if $self->exited;
        my ($st, $body) = eval { $self->ctl('ping') };
        return 1 if defined $st && $st == 200;
        sleep 0.05;
    }
    return 0;
}

# Has the process exited? Reaps it and records its status.
sub exited {
    my ($self) = @_;
    return 1 if defined $self->{exited};
    my $r = waitpid $self->{pid}, WNOHANG;
    if ($r == $self->{pid}) {
        $self->{exited} = $?;
        return 1;
    }
    return 0;
}

# The raw wait status ($?) once exited, else undef.
sub wait_status { $_[0]{exited} }

# Waits for the process to exit; returns its exit code (or 128+signal), or
# undef on timeout.
sub wait_exit {
    my ($self, $timeout) = @_;
    my $end = time + ($timeout // 10);
    while (time < $end) {
        if ($self->exited) {
            my $s = $self->{exited};
            return ($s & 127) ? 128 + ($s & 127) : $s >> 8;
        }
        sleep 0.05;
    }
    return undef;
}

# SIGTERM and wait: the exit code, or undef if it did not exit in time.
sub stop {
    my ($self, $timeout) = @_;
    return $self->wait_exit(0) if $self->exited;
    kill 'TERM', $self->{pid};
    return $self->wait_exit($timeout // 15);
}

sub signal { my ($self, $sig) = @_; kill $sig, $self->{pid} }

sub kill_hard {
    my ($self) = @_;
    return if !$self->{pid} || $self->exited;
    my @kids = $self->children;
    kill 'TERM', $self->{pid};
    my $end = time + 5;
    sleep 0.05 while !$self->exited && time < $end;
    if (!$self->exited) {
        kill 'KILL', $self->{pid}, @kids;
        waitpid $self->{pid}, 0;
        $self->{exited} = $?;
    }
}

sub log {
    my ($self) = @_;
    open my $fh, '<', $self->{log_file} or return '';
    local $/;
    return <$fh> // '';
}

# Waits until the log matches $re; returns the match or undef.
sub wait_log {
    my ($self, $re, $timeout) = @_;
    my $end = time + ($timeout // 5);
    while (time < $end) {
        my @m = $self->log =~ $re;
        return $m[0] // 1 if @m;
        sleep 0.05;
    }
    return undef;
}

# The pids of the daemon's children (from /proc).
sub children {
    my ($self) = @_;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        # "pid (comm) state ppid ...": comm may hold spaces and parens.
        my ($pid, $ppid) = $line =~ /^(\d+) \(.*\) \S+ (\d+)/s or next;
        push @kids, $pid if $ppid == $self->{pid};
    }
    return sort { $a <=> $b } @kids;
}

# Waits until the daemon has $n children; returns them.
sub wait_children {
    my ($self, $n, $timeout) = @_;
    my $end = time + ($timeout // 10);
    my @k;
    while (time < $end) {
        @k = $self->children;
        return @k if @k == $n;
        sleep 0.05;
    }
    return @k;
}

# Sends one control command; returns (status, body). Dies on a protocol
# error.
sub ctl {
    my ($self, $line) = @_;
    return SJ::Daemon::ctl_call($self->ctl_path, $line);
}

sub ctl_call {
    my ($path, $line, $timeout) = @_;
    my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path)
        or die "connect $path: $!\n";
    $s->autoflush(1);
    print $s "$line\n";
    my $hdr = _read_n($s, 13, $timeout // 10);
    $hdr =~ /^(\d{3}) (\d+) *\n\z/ or die "bad reply header '$hdr'\n";
    my ($status, $len) = ($1, $2);
    my $body = $len ? _read_n($s, $len, $timeout // 10) : '';
    return ($status, $body);
}

sub _read_n {
    my ($s, $n, $timeout) = @_;
    my $buf = '';
    my $end = time + $timeout;
    while (length $buf < $n) {
        my $rin = '';
        vec($rin, fileno $s, 1) = 1;
        my $left = $end - time;
        die "timed out reading the control reply\n" if $left <= 0;
        select(my $rout = $rin, undef, undef, $left) or next;
        my $r = sysread $s, $buf, $n - length $buf, length $buf;
        die "control socket closed after " . length($buf) . " bytes\n"
            unless $r;
    }
    return $buf;
}

# Parses a "key: value" body.
sub kv {
    my ($body) = @_;
    return { map { /^([^:]+):\s*(.*)$/ ? ($1, $2) : () } split /\n/, $body };
}

1;
