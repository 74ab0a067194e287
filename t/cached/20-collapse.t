#!/usr/bin/perl
# Collapsed forwarding: concurrent misses for one key make one origin
# request, in one worker and across two; an uncacheable answer releases
# the waiters at once and marks the key pass, so later requests do not
# queue behind each other. Scripted origin (t/cached/origin.pl) that sleeps.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use Digest::MD5 qw(md5_hex);
use SJ::Net;
use SJ::Test;
use SJ::Cached qw(start_cached stats);

my $t = SJ::Test->new;
my $o = SJ::Cached::Origin->start($t);

# Sends $n requests for $path at once; returns (elapsed, responses).
sub burst {
    my ($port, $path, $n) = @_;
    my $t0 = time;
    my @socks = map {
        http_send(host => '127.0.0.1', port => $port, path => $path,
                  headers => { Host => 'test.example' })
            or die "send: $@"
    } 1 .. $n;
    my @r = map { http_read($_, timeout => 10) } @socks;
    return (time - $t0, @r);
}

for my $workers (1, 2) {
    my ($tt, $d, $port) = start_cached(origin => $o->address,
        workers => $workers, test => SJ::Test->new,
        extra => 'pass_ttl = 5.0; collapse_wait = 5.0;');
    my $path = "/c$workers?sleep=1000&cc=max-age%3D60";
    my ($el, @r) = burst($port, $path, 10);
    is(scalar(grep { $_->{status} == 200 } @r), 10,
       "$workers worker(s): ten concurrent misses all answered");
    is(scalar(grep { $_->{body} eq "origin body for $path\n" } @r), 10,
       "$workers worker(s): all with the body");
    is(scalar($o->requests(qr/^GET \/c$workers\?/)), 1,
       "$workers worker(s): one origin request for ten clients");
    ok($el < 3, sprintf("$workers worker(s): in %.2fs", $el));
    ok(scalar(grep { ($_->{headers}{'cache-status'} // '') =~ /collapsed/ } @r) >= 1,
       "$workers worker(s): waiters say collapsed in Cache-Status");

    # Misses that reach both workers in the same instant: only one of
    # them may claim the fetch, round after round.
    my @extra;
    for my $round (1 .. 8) {
        my $p = "/r$workers-$round?sleep=200&cc=max-age%3D60";
        my (undef, @rr) = burst($port, $p, 12);
        my $ok = grep { $_->{status} == 200 } @rr;
        my $n = $o->requests(qr/^GET \/r$workers-$round\?/);
        push @extra, "round $round: $n origin requests, $ok answered"
            if $n != 1 || $ok != 12;
    }
    is_deeply(\@extra, [], "$workers worker(s): eight more bursts, "
              . "one origin request each");

    # Uncacheable: the waiters are released when the answer shows it, and
    # then the key passes: five concurrent requests take one origin time.
    my $u = "/u$workers?sleep=1000";
    ($el, @r) = burst($port, $u, 5);
    is(scalar(grep { $_->{status} == 200 } @r), 5,
       "$workers worker(s): uncacheable: all answered");
    ok($el < 3.5, sprintf("$workers worker(s): uncacheable first burst "
                          . "not serialised (%.2fs)", $el));
    ($el, @r) = burst($port, $u, 5);
    ok($el < 1.9, sprintf("$workers worker(s): pass: five in parallel "
                          . "(%.2fs)", $el));
    is(scalar($o->requests(qr/^GET \/u$workers\?/)), 10,
       "$workers worker(s): every uncacheable request reached the origin");
    my $st = stats($d);
    ok($st->{collapsed} >= 9, "collapsed counted ($st->{collapsed})");
    is($d->stop, 0, "$workers worker(s): clean stop");
}

# Requests served so far, by worker pid (show stats).
sub worker_requests {
    my ($d) = @_;
    my (undef, $body) = $d->ctl('show stats');
    return { map { /^worker \d+ (\d+) (\d+)/ ? ($1, $2) : () }
             split /\n/, $body };
}

# Reads the responses on @socks side by side until each is complete or
# closed; returns for each [seconds to its first body byte, status, body
# bytes, closed before the end, MD5 of the body].
sub timed_reads {
    my ($t0, @socks) = @_;
    my @st = map { { buf => '', first => undef, done => 0 } } @socks;
    my $deadline = time + 15;
    while (time < $deadline && grep { !$_->{done} } @st) {
        my $rin = '';
        vec($rin, fileno $socks[$_], 1) = 1
            for grep { !$st[$_]{done} } 0 .. $#socks;
        select(my $rout = $rin, undef, undef, 0.5) > 0 or next;
        for my $i (grep { !$st[$_]{done} } 0 .. $#socks) {
            next unless vec($rout, fileno $socks[$i], 1);
            my $s = $st[$i];
            my $n = sysread $socks[$i], $s->{buf}, 65536, length $s->{buf};
            my $he = index $s->{buf}, "\r\n\r\n";
            $s->{first} //= time - $t0
                if $he >= 0 && length($s->{buf}) > $he + 4;
            if (!$n) {
                $s->{done} = 1;
                $s->{eof} = 1;
            } elsif ($he >= 0 && $s->{buf} =~ /\r\ncontent-length: (\d+)/i
                     && length($s->{buf}) >= $he + 4 + $1) {
                $s->{done} = 1;
            }
        }
    }
    return map {
        my $he = index $_->{buf}, "\r\n\r\n";
        my ($status) = $_->{buf} =~ m{^HTTP/1\.\d (\d+)};
        my ($cl) = $_->{buf} =~ /\r\ncontent-length: (\d+)/i;
        [$_->{first}, $status // 0,
         $he < 0 ? 0 : length($_->{buf}) - $he - 4,
         ($_->{eof} && (!defined $cl || length($_->{buf}) - $he - 4 < $cl))
             ? 1 : 0,
         md5_hex($he < 0 ? '' : substr($_->{buf}, $he + 4))]
    } @st;
}

# Following a fill: those waiting for an object get its body as it
# arrives, in the fetching worker and in the other one, not when it is
# complete. The origin sends 200,000 bytes in ten pieces over 1.5 s.
for my $workers (1, 2) {
    my ($tt, $d, $port) = start_cached(origin => $o->address,
        workers => $workers, test => SJ::Test->new,
        extra => 'collapse_wait = 10.0;');
    # Spaced a little, so that with two workers both take some.
    my $path = "/t$workers?size=200000&pattern=1&trickle=150"
             . '&cc=max-age%3D60';
    my $want = md5_hex(substr(join('', map { sprintf "%015d\n", $_ }
                                       0 .. 200000 / 16), 0, 200000));
    my $before = worker_requests($d);
    my $t0 = time;
    my @socks;
    for (1 .. 6) {
        push @socks, http_send(host => '127.0.0.1', port => $port,
            path => $path, headers => { Host => 'test.example' })
            or die "send: $@";
        sleep 0.05;
    }
    my @r = timed_reads($t0, @socks);
    is(join(' ', map { "$_->[1]/$_->[2]/$_->[3]/$_->[4]" } @r),
       join(' ', ("200/200000/0/$want") x 6),
       "$workers worker(s), followed fill: six whole bodies");
    my @late = grep { !defined $_->[0] || $_->[0] > 1.0 } @r;
    is(scalar @late, 0, "$workers worker(s), followed fill: every client "
       . 'had body bytes before the origin was done (first byte at '
       . join(' ', map { sprintf '%.2f', $_->[0] // -1 } @r) . ' s)');
    is(scalar($o->requests(qr/^GET \/t$workers\?/)), 1,
       "$workers worker(s), followed fill: one origin request");
    my $after = worker_requests($d);
    my $busy = grep { $after->{$_} > ($before->{$_} // 0) } keys %$after;
    diag("$workers worker(s): $busy worker(s) served the followed fill");

    # The origin closes half-way: the clients that followed the fill are
    # cut off too (their Content-Length cannot be met), never hang.
    $path = "/x$workers?size=200000&trickle=100&truncate=100000"
          . '&cc=max-age%3D60';
    $t0 = time;
    @socks = map {
        http_send(host => '127.0.0.1', port => $port, path => $path,
                  headers => { Host => 'test.example' }) or die "send: $@"
    } 1 .. 4;
    @r = timed_reads($t0, @socks);
    is(join(' ', map { "$_->[1]/$_->[3]" } @r), join(' ', ('200/1') x 4),
       "$workers worker(s), failed fill: all four cut short, closed");
    ok(time - $t0 < 5, "$workers worker(s), failed fill: at once");
    my $st = stats($d);
    is($d->stop, 0, "$workers worker(s), followed fill: clean stop");
}

# Across workers a waiting request is woken by the worker whose fetch it
# waits for, with a datagram, as that fetch moves (its response starts
# being stored, more of it arrives, it ends); it does not find out by
# polling. Two keep-alive connections served by different workers (each
# opened while the other worker is stopped with SIGSTOP, so that this one
# accepts it; the kernel, left to itself, often gives one worker all): the first asks for an object the origin answers after 0.4 s
# and sends in ten pieces, the second asks for it 0.1 s later. The second
# waits in its worker for the first's fetch, then follows the fill; both
# get the whole body, the origin one request, and show stats counts the
# wake-ups.
sub worker_of {
    my ($d, $sock, $path) = @_;
    my $before = worker_requests($d);
    print {$sock} "GET $path HTTP/1.1\r\nHost: test.example\r\n\r\n";
    my $r = http_read($sock);
    return undef unless $r->{status} == 200;
    for (1 .. 50) {
        my $after = worker_requests($d);
        my @moved = grep { $after->{$_} > ($before->{$_} // 0) } keys %$after;
        return $moved[0] if @moved == 1;
        sleep 0.02;
    }
    return undef;
}
{
    my ($tt, $d, $port) = start_cached(origin => $o->address,
        workers => 2, test => SJ::Test->new,
        extra => 'collapse_wait = 10.0;');
    my %conn;    # worker pid -> a connection it serves
    my @kids = $d->wait_children(2);
    for my $i (0, 1) {
        my $other = $kids[1 - $i];
        kill 'STOP', $other;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port) or die "connect: $!";
        print {$s} "GET /place$i?cc=max-age%3D60 HTTP/1.1\r\n"
                 . "Host: test.example\r\n\r\n";
        my $r = http_read($s);
        kill 'CONT', $other;
        # Which worker that was, as its request counter says.
        my $pid = $r->{status} == 200
            ? worker_of($d, $s, "/warm$i?cc=max-age%3D60") : undef;
        $conn{$pid} //= $s if defined $pid;
    }
    is_deeply([sort keys %conn], [sort @kids],
              'across workers: a connection in each worker');
    if (keys %conn == 2) {
        my ($pid_a, $pid_b) = keys %conn;
        my ($a, $b) = @conn{$pid_a, $pid_b};
        my $path = '/wk?sleep=400&size=200000&pattern=1&trickle=60'
                 . '&cc=max-age%3D60';
        my $want = md5_hex(substr(join('', map { sprintf "%015d\n", $_ }
                                           0 .. 200000 / 16), 0, 200000));
        my $woken = stats($d)->{woken};
        my $t0 = time;
        print {$a} "GET $path HTTP/1.1\r\nHost: test.example\r\n\r\n";
        sleep 0.1;
        print {$b} "GET $path HTTP/1.1\r\nHost: test.example\r\n\r\n";
        my @r = timed_reads($t0, $a, $b);
        is(join(' ', map { "$_->[1]/$_->[2]/$_->[4]" } @r),
           join(' ', ("200/200000/$want") x 2),
           'across workers: both whole');
        is(scalar($o->requests(qr/^GET \/wk\?/)), 1,
           'across workers: one origin request');
        my $n = stats($d)->{woken} - $woken;
        # Once when the fill starts, then at pieces it was waiting for.
        ok($n >= 2, "across workers: the waiter was woken by the fetching "
           . "worker ($n wake-ups)");
        ok(defined $r[1][0] && defined $r[0][0]
           && $r[1][0] < $r[0][0] + 0.3,
           sprintf('across workers: the waiter had its first bytes with '
                   . 'the fetching client (%.3f s, %.3f s)',
                   $r[0][0] // -1, $r[1][0] // -1));
        diag(sprintf('across workers: first bytes %.1f ms apart',
                     1000 * (($r[1][0] // 0) - ($r[0][0] // 0))));
        like(join('', map { $_ } grep { /woken/ }
                  split /\n/, ($d->ctl('show stats'))[1]),
             qr/^woken: \d+$/, 'show stats lists woken');

        # A range request cannot follow the fill: it waits for the whole
        # object, woken by the fetching worker when its fetch ends (not
        # at every piece, and without polling).
        $path = '/rg?size=200000&pattern=1&trickle=60&cc=max-age%3D60';
        $woken = stats($d)->{woken};
        $t0 = time;
        print {$a} "GET $path HTTP/1.1\r\nHost: test.example\r\n\r\n";
        sleep 0.2;
        print {$b} "GET $path HTTP/1.1\r\nHost: test.example\r\n"
                 . "Range: bytes=0-15\r\n\r\n";
        @r = timed_reads($t0, $a, $b);
        is("$r[0][1] $r[1][1]/$r[1][2]/$r[1][4]",
           "200 206/16/" . md5_hex(sprintf "%015d\n", 0),
           'range across workers: the first 16 bytes of the whole object');
        $n = stats($d)->{woken} - $woken;
        ok($n >= 1 && $n <= 2, "range across workers: woken when the "
           . "fetch ended ($n wake-ups)");
        is(scalar($o->requests(qr/^GET \/rg\?/)), 1,
           'range across workers: one origin request');

        # The worker fetching for others is killed: the request waiting
        # for it in the other worker fetches for itself at once (the
        # parent clears the dead worker's claims and wakes the watchers),
        # not once collapse_wait (10 s here) has run out.
        $path = '/dead?sleep=1500&cc=max-age%3D60';
        print {$a} "GET $path HTTP/1.1\r\nHost: test.example\r\n\r\n";
        sleep 0.2;
        print {$b} "GET $path HTTP/1.1\r\nHost: test.example\r\n\r\n";
        sleep 0.2;
        kill 'KILL', $pid_a;
        $t0 = time;
        my $r = http_read($b, timeout => 15);
        my $el = time - $t0;
        is($r->{status}, 200, 'fetching worker killed: the waiter in the '
           . 'other worker is answered');
        ok($el < 5, sprintf('at once, not after collapse_wait (%.2f s)',
                            $el));
        is(scalar($o->requests(qr/^GET \/dead\?/)), 2,
           'by a fetch of its own');
    }
    is($d->stop, 0, 'across workers: clean stop');
}

# A client that does not read does not hold the fill back: past a mark it
# reads the rest from the store like a follower, and the fetch goes on at
# the origin's pace, so a second client gets the whole 16 MB object while
# the first has read nothing; the first then gets it whole too.
{
    my ($tt, $d, $port) = start_cached(origin => $o->address,
        workers => 1, test => SJ::Test->new, memory => '64M',
        max_object => '32M');
    my $size = 16_000_000;
    my $path = "/big?size=$size&pattern=1&cc=max-age%3D60";
    my $want = md5_hex(substr(join('', map { sprintf "%015d\n", $_ }
                                       0 .. $size / 16), 0, $size));
    my $slow = http_send(host => '127.0.0.1', port => $port, path => $path,
                         headers => { Host => 'test.example' });
    sleep 0.3;
    my $t0 = time;
    my ($r) = timed_reads($t0, http_send(host => '127.0.0.1', port => $port,
        path => $path, headers => { Host => 'test.example' }));
    my $el = time - $t0;
    is("$r->[1]/$r->[2]/$r->[3]/$r->[4]", "200/$size/0/$want",
       'slow client: the other client gets the whole object');
    ok($el < 4, sprintf('slow client: not held back by it (%.2f s)', $el));
    sleep 4 - $el if $el < 4;
    ($r) = timed_reads(time, $slow);
    is("$r->[1]/$r->[2]/$r->[3]/$r->[4]", "200/$size/0/$want",
       'slow client: then reads the whole object itself');
    is(scalar($o->requests(qr/^GET \/big\?/)), 1,
       'slow client: one origin request');
    is($d->stop, 0, 'slow client: clean stop');
}

# A fetch that fails: those waiting for it, in its worker and in the
# other, get its answer at once instead of trying the origin one by one
# (each would wait origin_timeout in turn). A request that comes after
# the failure tries the origin again.
{
    my ($tt, $d, $port) = start_cached(origin => $o->address,
        workers => 2, test => SJ::Test->new,
        extra => 'origin_timeout = 0.6; collapse_wait = 10.0;');
    my $path = '/f?sleep=3000&cc=max-age%3D60';
    my ($el, @r) = burst($port, $path, 10);
    is(join(' ', map { $_->{status} } @r), join(' ', (504) x 10),
       'failed fetch: all ten waiters answered 504');
    ok($el < 2.5, sprintf('failed fetch: at once, not in turn (%.2fs)', $el));
    is(scalar($o->requests(qr/^GET \/f\?/)), 1,
       'failed fetch: one origin request for ten clients');
    my $r = http_get(host => '127.0.0.1', port => $port,
                     path => '/f?sleep=0&cc=max-age%3D60',
                     headers => { Host => 'test.example' });
    is($r->{status}, 200, 'after the failure a new request is fetched');
    is($d->stop, 0, 'failed fetch: clean stop');
}

done_testing;
