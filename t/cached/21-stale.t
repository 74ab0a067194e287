#!/usr/bin/perl
# Stale serving: stale-if-error within cached.stale_grace when the origin
# is killed, refuses, times out or answers 5xx; `origin down` goes straight
# to stale content; stale-while-revalidate refreshes in the background.
# Also the store's integrity rules: a truncated response is never stored, a
# chunked one is, objects above max_object pass through.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Apache;
use SJ::Net;
use SJ::Test;
use SJ::Cached qw(start_cached get stats);

if (my $why = SJ::Apache::skip_reason()) { plan skip_all => $why }

# ---- Apache killed: stale-if-error within the grace.
{
    my $ap = SJ::Apache->start(name => 'origin');
    my ($t, $d, $port) = start_cached(origin => $ap->address,
        extra => 'stale_grace = 30.0; connect_timeout = 1.0;');
    my $p = '/cache.php?id=sie&cc=max-age%3D1';
    my $r = get($port, $p);
    like($r->{body}, qr/count=1 /, 'stored while Apache is up');
    $ap->kill;
    sleep 1.5;
    $r = get($port, $p);
    is($r->{status}, 200, 'Apache dead, object stale: still 200');
    like($r->{body}, qr/count=1 /, 'the stale body');
    like($r->{headers}{'cache-status'}, qr/; hit;.*detail=stale-if-error/,
         'Cache-Status says stale-if-error');
    $r = get($port, '/cache.php?id=never&cc=max-age%3D60');
    is($r->{status}, 502, 'not stored and Apache dead: 502');
    my $st = stats($d);
    ok($st->{origin_errors} >= 2, "origin errors counted ($st->{origin_errors})");
    ok($st->{stale} >= 1, "stale serves counted ($st->{stale})");

    # `origin down` (what heartbeatd sends): stale at once, no connect.
    my ($s, $b) = $d->ctl('origin down');
    is($s, 200, 'origin down accepted');
    my $t0 = time;
    $r = get($port, $p);
    like($r->{headers}{'cache-status'}, qr/detail=origin-down/,
         'origin down: stale without trying the origin');
    ok(time - $t0 < 0.5, 'origin down: no connect timeout paid');
    is(stats($d)->{origin}, 'down', 'show stats says origin down');
    $ap->start;
    ($s, $b) = $d->ctl('origin up');
    is($s, 200, 'origin up accepted');
    $r = get($port, $p);
    like($r->{body}, qr/count=2 /, 'origin up: refreshed from Apache');
    is($d->stop, 0, 'clean stop');
    $ap->stop;
}

# ---- Scripted origin: 5xx, timeouts, beyond the grace, swr, framing.
{
    my $t = SJ::Test->new;
    my $o = SJ::Cached::Origin->start($t);
    my ($tt, $d, $port) = start_cached(origin => $o->address, test => $t,
        extra => 'stale_grace = 2.0; origin_timeout = 1.0;',
        max_object => '64K');
    # 5xx from the origin: stale within the grace, 5xx relayed without.
    get($port, '/e?cc=max-age%3D1');
    sleep 1.3;
    $o->fail(503);
    my $r = get($port, '/e?cc=max-age%3D1');
    is($r->{status}, 200, '503 from the origin: stale object served');
    like($r->{headers}{'cache-status'}, qr/stale-if-error; ?|detail=stale-if-error/,
         '503: Cache-Status says stale-if-error');
    like($r->{headers}{'cache-status'}, qr/fwd-status=503/,
         '503: and the origin status');
    $r = get($port, '/other');
    is($r->{status}, 503, 'nothing stored: the 503 is relayed');
    $o->fail(undef);
    # An origin that accepts and never answers: stale after origin_timeout.
    get($port, '/t?cc=max-age%3D1');
    sleep 1.3;
    # Same key, but the origin will now be slow: the query is the key, so
    # use the stored key and a timeout from an origin that stopped.
    $o->stop;
    my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1:' . $o->port,
                                       Listen => 5, ReuseAddr => 1);
    ok($silent, 'a silent origin on the same port');
    my $t0 = time;
    $r = get($port, '/t?cc=max-age%3D1');
    is($r->{status}, 200, 'origin timeout: stale served');
    like($r->{headers}{'cache-status'}, qr/stale-if-error/, 'stale-if-error after a timeout');
    ok(time - $t0 < 2, 'after about origin_timeout');
    sleep 2.2;
    $t0 = time;
    $r = get($port, '/t?cc=max-age%3D1');
    is($r->{status}, 504, 'beyond the grace: 504, not stale');
    close $silent;
    $o = SJ::Cached::Origin->start($t);
    is($d->stop, 0, 'clean stop');

    ($tt, $d, $port) = start_cached(origin => $o->address, test => SJ::Test->new,
        extra => 'stale_grace = 0.0; max_body = "64K";', max_object => '64K');
    # The object's own stale-if-error window, with no grace configured.
    get($port, '/s?cc=max-age%3D1%2C%20stale-if-error%3D60');
    get($port, '/g?cc=max-age%3D1');
    sleep 2.3;  # ages are whole seconds: make it surely stale
    $o->fail(500);
    $r = get($port, '/s?cc=max-age%3D1%2C%20stale-if-error%3D60');
    is($r->{status}, 200, "response's stale-if-error: stale served");
    $r = get($port, '/g?cc=max-age%3D1');
    is($r->{status}, 500, 'no grace, no stale-if-error: the 500 is relayed');
    $o->fail(undef);

    # stale-while-revalidate: served stale at once, refreshed behind.
    my $sw = '/swr?cc=max-age%3D1%2C%20stale-while-revalidate%3D30&sleep=300';
    get($port, $sw);
    sleep 1.3;
    $t0 = time;
    $r = get($port, $sw);
    ok(time - $t0 < 0.25, 'swr: answered without waiting for the origin');
    like($r->{headers}{'cache-status'}, qr/detail=stale/, 'swr: served stale');
    sleep 0.6;
    is(scalar($o->requests(qr/^GET \/swr/)), 2, 'swr: one background refresh');
    $r = get($port, $sw);
    like($r->{headers}{'cache-status'}, qr/; hit; ttl=/, 'swr: fresh again');

    # A truncated response is never stored.
    $r = get($port, '/trunc?cc=max-age%3D60&size=5000&truncate=1000');
    ok(length($r->{body}) < 5000, 'truncated response reaches the client cut');
    get($port, '/trunc?cc=max-age%3D60&size=5000&truncate=1000');
    is(scalar($o->requests(qr/^GET \/trunc/)), 2, 'truncated: not stored');
    # Chunked: streamed and stored.
    $r = get($port, '/chunk?cc=max-age%3D60&chunked=1&size=3000');
    is(length $r->{body}, 3000, 'chunked: whole body');
    $r = get($port, '/chunk?cc=max-age%3D60&chunked=1&size=3000');
    is(length $r->{body}, 3000, 'chunked: whole body from the store');
    is(scalar($o->requests(qr/^GET \/chunk/)), 1, 'chunked: stored');
    like($r->{headers}{'content-length'}, qr/^3000$/, 'served with Content-Length');
    # Read until close.
    $r = get($port, '/close?cc=max-age%3D60&close=1&size=2000');
    is(length $r->{body}, 2000, 'close-delimited: whole body');
    $r = get($port, '/close?cc=max-age%3D60&close=1&size=2000');
    is(scalar($o->requests(qr/^GET \/close/)), 1, 'close-delimited: stored');
    # Above max_object: passed through, not stored.
    $r = get($port, '/huge?cc=max-age%3D60&size=100000');
    is(length $r->{body}, 100000, 'above max_object: whole body');
    get($port, '/huge?cc=max-age%3D60&size=100000');
    is(scalar($o->requests(qr/^GET \/huge/)), 2, 'above max_object: not stored');
    $r = get($port, '/hugec?cc=max-age%3D60&size=100000&chunked=1');
    is(length $r->{body}, 100000, 'chunked above max_object: whole body');
    get($port, '/hugec?cc=max-age%3D60&size=100000&chunked=1');
    is(scalar($o->requests(qr/^GET \/hugec/)), 2, 'chunked above max_object: not stored');
    # A malformed response is refused (502), never relayed or stored.
    $r = get($port, '/bad?cc=max-age%3D60&garbage=1');
    is($r->{status}, 502, 'malformed origin response: 502');
    ok($d->wait_log(qr/bad response/), 'and logged');
    # A request body over max_body: 413 before anything reaches the origin.
    $r = get($port, '/post', method => 'POST', body => 'x' x 70000);
    is($r->{status}, 413, 'request body over max_body: 413');
    is(scalar($o->requests(qr/^POST \/post/)), 0, 'not forwarded');
    $r = get($port, '/post', method => 'POST', body => 'x' x 1000);
    is($r->{status}, 200, 'a body within the limit is forwarded');
    # Expect: 100-continue gets its interim answer, then the response.
    my $s = http_send(host => '127.0.0.1', port => $port, path => '/post2',
                      method => 'POST', raw => "POST /post2 HTTP/1.1\r\n"
                      . "Host: x\r\nContent-Length: 3\r\n"
                      . "Expect: 100-continue\r\nConnection: close\r\n\r\n");
    my $got = '';
    my $end = time + 3;
    while (time < $end && $got !~ /\r\n\r\n/) {
        sysread $s, $got, 4096, length $got or last;
    }
    like($got, qr/^HTTP\/1\.1 100 Continue\r\n\r\n/, '100 Continue sent');
    print $s "abc";
    my $rr = http_read($s, timeout => 5);
    is($rr->{status}, 200, 'then the final response');
    # HEAD passed through keeps the origin's Content-Length.
    $r = get($port, '/hp?size=1234', method => 'HEAD',
             headers => { 'If-Match' => '*' });
    is($r->{headers}{'content-length'}, 1234, 'HEAD pass: Content-Length kept');
    is($d->stop, 0, 'clean stop');
}

done_testing;
