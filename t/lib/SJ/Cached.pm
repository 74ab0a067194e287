package SJ::Cached;
# Helpers for cached's integration tests: a cached in front of an origin,
# requests with chosen headers, the origin's request count, `show stats`.
#
#   my ($t, $d, $port) = SJ::Cached::start_cached(origin => $apache->address,
#                                                 extra => 'stale_grace = 5;');
#   my $r = SJ::Cached::get($port, '/cache.php?id=a&cc=max-age%3D60');
#   is($r->{headers}{'cache-status'}, ...);
use strict;
use warnings;
use Exporter 'import';
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Net;

our @EXPORT_OK = qw(start_cached get stats origin_count server_pid);

# start_cached(origin => "127.0.0.1:N", workers => 1, extra => TEXT,
#              test => SJ::Test, listen => TEXT, name => 'cached')
# Writes the configuration and starts cached; returns ($t, $daemon, $port).
sub start_cached {
    my (%o) = @_;
    my $t = $o{test} // SJ::Test->new;
    my $port = $t->port($o{name} // 'http');
    my $workers = $o{workers} // 1;
    my $listen = $o{listen} // qq{"127.0.0.1:$port"};
    my $memory = $o{memory} // '8M';
    my $max_object = $o{max_object} // '1M';
    $t->write_conf(
        cached => qq{listen = ( $listen );
    origin = "$o{origin}"; workers = $workers;
    memory = "$memory"; max_object = "$max_object";
    access_log = "${\ $t->dir}/access.log";
    ${\ ($o{extra} // "")}},
        %{ $o{sections} // {} });
    my $d = $t->start('cached');
    wait_for_port("127.0.0.1", $port, 10);
    return ($t, $d, $port);
}

# get($port, $path, %opt): one request on a new connection; headers =>
# {...}, method => 'GET'. Returns http_read's hashref.
sub get {
    my ($port, $path, %o) = @_;
    my %h = (Host => 'test.example', %{ $o{headers} // {} });
    return http_get(host => '127.0.0.1', port => $port, path => $path,
                    method => $o{method} // 'GET', headers => \%h,
                    timeout => $o{timeout} // 10,
                    defined $o{body} ? (body => $o{body}) : ());
}

# server_pid($sock): the pid of the process holding the server side of the
# loopback TCP connection $sock (ss(8)), 0 if none is found.
sub server_pid {
    my ($sock) = @_;
    my $lport = $sock->sockport;
    my (undef, $out) = run_capture('ss', '-Htnp', 'state', 'established',
                                   "( dport = :$lport )");
    return $out =~ /pid=(\d+)/ ? $1 : 0;
}

# stats($daemon): `show stats` as a hashref.
sub stats {
    my ($d) = @_;
    my ($s, $body) = $d->ctl('show stats');
    my %kv = map { /^(\w+): (.*)$/ ? ($1, $2) : () } split /\n/, $body;
    return \%kv;
}

# origin_count($apache, $regex): requests that reached the Apache node.
sub origin_count {
    my ($apache, $re) = @_;
    # Apache logs after answering: give it a moment to settle.
    my $n = -1;
    for (1 .. 20) {
        my $c = $apache->requests_count($re);
        last if $c == $n;
        $n = $c;
        sleep 0.05;
    }
    return $n;
}

1;

package SJ::Cached::Origin;
# The scripted origin t/cached/origin.pl, started on a free port.
use strict;
use warnings;
use SJ::Net;
use SJ::Test;

sub start {
    my ($class, $t) = @_;
    my $port = free_port();
    my $log = $t->dir . "/origin-$port.log";
    open my $f, '>', $log or die;
    close $f;
    my $pid = spawn(cmd => [$^X, SJ::Test::srcdir() . '/t/cached/origin.pl',
                            $port, $log],
                    name => 'scripted origin');
    wait_for_port('127.0.0.1', $port, 10) or die "origin did not start\n";
    return bless { port => $port, log => $log, pid => $pid }, $class;
}

sub address { "127.0.0.1:$_[0]{port}" }
sub port { $_[0]{port} }
sub pid { $_[0]{pid} }

# The requests logged so far (optionally matching a regex).
sub requests {
    my ($self, $re) = @_;
    open my $f, '<', $self->{log} or return ();
    my @l = <$f>;
    chomp @l;
    return defined $re ? grep { /$re/ } @l : @l;
}

# Makes every answer $status (undef: back to normal).
sub fail {
    my ($self, $status) = @_;
    if (defined $status) {
        open my $f, '>', "$self->{log}.fail" or die;
        print $f "$status\n";
        close $f;
    } else {
        unlink "$self->{log}.fail";
    }
}

sub stop {
    my ($self) = @_;
    kill_process($self->{pid}) if $self->{pid};
    $self->{pid} = undef;
}

sub DESTROY { $_[0]->stop }

1;
