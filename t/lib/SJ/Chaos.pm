package SJ::Chaos;
# Malformed, partial, pipelined and odd HTTP thrown at a server from a few
# client processes, bounded in time and count, with fixed seeds (so a
# failure can be replayed). survives_chaos() then checks that the
# daemon's workers are the same processes as before and still answer.
#
#   survives_chaos(d => $daemon, port => $port, workers => 2, seed => 1,
#                  probe => sub { status of one valid request });
use strict;
use warnings;
use Exporter 'import';
use Test::More;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(chaos survives_chaos);

my @paths = ('/', '/a?cc=max-age%3D60', '/b?size=100000&cc=max-age%3D60',
    '/c?status=500', '/d?sleep=50', '/e?trickle=5&size=20000&cc=max-age%3D60',
    '/f?cc=no-store', '/g?vary=Accept&cc=max-age%3D60', '/%00', '/..%2f..',
    '*', 'http://x/y', '//z');
my @methods = ('GET', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PURGE',
    'OPTIONS', 'CONNECT', 'TRACE', 'G ET', '', 'BREW');
my @headers = ('Range: bytes=0-10', 'Range: bytes=-5,3-1,0-',
    'Range: bytes=99999999999999999999-', 'If-None-Match: *',
    'If-Modified-Since: garbage', 'Cache-Control: max-age=-1, no-cache="x',
    'Transfer-Encoding: chunked', 'Content-Length: 5', 'Content-Length: -1',
    'Content-Length: 1, 2', 'Expect: 100-continue', 'Connection: close',
    'Connection: keep-alive, Upgrade', 'Upgrade: websocket',
    'X-Forwarded-For: 1.2.3.4', 'Accept: text/html',
    'Authorization: Basic eA==', 'Cookie: a=b', 'Pragma: no-cache',
    'Vary: *', ' folded', 'Bad Header: x', "X: \x01\x7f",
    "Host: a\r\nHost: b", 'Range: bytes=' . join(',', ('0-0') x 40));

sub _pick { $_[0][int rand @{ $_[0] }] }

sub _request {
    if (rand() < 0.1) {
        return join '', map { chr int rand 256 } 1 .. 1 + int rand 300;
    }
    if (rand() < 0.05) {
        return "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "
            . ('a' x (5000 + int rand 200000)) . "\r\n\r\n";
    }
    my $ver = _pick(['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0',
                     'HTTP/1.1x', '']);
    my @h = map { _pick(\@headers) } 1 .. int rand 7;
    unshift @h, 'Host: test.example' if rand() < 0.8;
    my $body = '';
    if (grep { /chunked/ } @h) {
        $body = _pick(["5\r\nhello\r\n0\r\n\r\n", "zz\r\n",
                       "ffffffffffffffffff\r\n", "3\r\nab", "0\r\n\r\n"]);
    } elsif (grep { /^Content-Length: 5$/ } @h) {
        $body = _pick(['hello', 'he', 'hellohello']);
    }
    my $eol = _pick(["\r\n", "\r\n", "\n", "\r"]);
    return _pick(\@methods) . ' ' . _pick(\@paths) . " $ver$eol"
        . join('', map { "$_$eol" } @h) . $eol . $body;
}

sub _client {
    my (%o) = @_;
    srand $o{seed};
    local $SIG{PIPE} = 'IGNORE';
    my $end = time + $o{seconds};
    my $n = 0;
    while (time < $end && $n < 20000) {
        ++$n;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $o{port}, Timeout => 2) or do { sleep 0.01; next };
        for (1 .. 1 + int rand 4) {    # pipelined
            my $req = _request();
            if (rand() < 0.2) {        # in small pieces
                syswrite $s, substr($req, $_ * 7, 7)
                    for 0 .. int((length($req) - 1) / 7);
            } else {
                syswrite $s, $req;
            }
        }
        if (rand() < 0.15) { close $s; next }    # hang up at once
        shutdown $s, 1 if rand() < 0.3;
        my $t0 = time;
        my $rin = '';
        vec($rin, fileno $s, 1) = 1;
        while (time - $t0 < 2) {
            select(my $r = $rin, undef, undef, 0.5) > 0 or next;
            my $got = sysread $s, my $buf, 65536;
            last if !$got || rand() < 0.05;    # end, or leave mid-way
        }
        close $s;
    }
    return $n;
}

# Runs `clients` processes for `seconds`; returns the number of
# connections they made in all.
sub chaos {
    my (%o) = @_;
    my $clients = $o{clients} // 3;
    my @kids;
    for my $i (1 .. $clients) {
        pipe my $r, my $w or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $r;
            my $n = _client(%o, seed => ($o{seed} // 1) * 100 + $i);
            print {$w} "$n\n";
            close $w;
            POSIX::_exit(0);
        }
        close $w;
        push @kids, [$pid, $r];
    }
    my $total = 0;
    for my $k (@kids) {
        my $line = readline $k->[1];
        $total += $line // 0;
        waitpid $k->[0], 0;
    }
    return $total;
}

# The checks (five tests): the workers before and after SJ_CHAOS_SECONDS
# (default 5) of chaos are the same processes, none died, and they answer.
sub survives_chaos {
    my (%o) = @_;
    my $d = $o{d};
    my @before = $d->wait_children($o{workers});
    is(scalar @before, $o{workers}, "$o{workers} workers");
    my $n = chaos(port => $o{port}, clients => 3, seed => $o{seed},
                  seconds => $ENV{SJ_CHAOS_SECONDS} // 5);
    ok($n > 100, "the clients made $n connections");
    is(join(' ', $d->children), join(' ', @before),
       'the same workers afterwards');
    is($o{probe}->(), 200, 'and they answer');
    unlike($d->log, qr/respawning/, 'no worker died');
}

1;
