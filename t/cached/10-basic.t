#!/usr/bin/perl
# cached in front of a real Apache: static files with Apache's own ETag and
# Last-Modified (heuristic freshness, then revalidation), PHP pages with
# max-age, the headers a client sees (Age, Via, Cache-Status), HEAD from a
# stored GET, keep-alive and pipelined hits, HTTP/1.0, and what the origin
# sees (X-Forwarded-For, X-Forwarded-Proto).
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use SJ::Apache;
use SJ::Net;
use SJ::Cached qw(start_cached get stats origin_count);

if (my $why = SJ::Apache::skip_reason()) { plan skip_all => $why }

my $ap = SJ::Apache->start(name => 'origin');
my $doc = $ap->docroot;
# Static files modified a day ago: heuristic freshness of 10% of that.
my $big = join('', map { sprintf("%07d\n", $_) } 1 .. 20000);  # 160 000 B
for (['old.txt', "old static file\n"], ['big.txt', $big],
     ['new.txt', "new static file\n"]) {
    open my $f, '>', "$doc/$_->[0]" or die;
    print $f $_->[1];
    close $f;
}
utime time - 86400, time - 86400, "$doc/old.txt", "$doc/big.txt";

my ($t, $d, $port) = start_cached(origin => $ap->address, workers => 2);

# A static file: the first request goes to Apache, the next ones are hits.
my $r = get($port, '/old.txt');
is($r->{status}, 200, 'static miss: 200');
is($r->{body}, "old static file\n", 'static miss: body');
like($r->{headers}{'cache-status'}, qr/^sunjammer; fwd=uri-miss|^sunjammer; fwd=miss; fwd-status=200; stored/,
     'static miss: Cache-Status says miss and stored');
like($r->{headers}{via}, qr/1\.1 sunjammer/, 'Via names the cache');
ok($r->{headers}{etag}, "Apache's ETag passed through");
for (1 .. 3) {
    $r = get($port, '/old.txt');
}
is($r->{body}, "old static file\n", 'hit: same body');
like($r->{headers}{'cache-status'}, qr/^sunjammer; hit; ttl=\d+/,
     'hit: Cache-Status hit with ttl');
like($r->{headers}{age}, qr/^\d+$/, 'hit: Age header');
ok($r->{headers}{'last-modified'}, 'hit: Last-Modified kept');
is(origin_count($ap, '/old\.txt'), 1, 'four requests, one reached Apache');

# A large static file streams and is stored; hits match byte for byte.
$r = get($port, '/big.txt');
is(length $r->{body}, length $big, 'large miss: whole body');
$r = get($port, '/big.txt');
ok($r->{body} eq $big, 'large hit: identical body');
like($r->{headers}{'cache-status'}, qr/hit/, 'large: a hit');
is(origin_count($ap, '/big\.txt'), 1, 'large: one origin request');

# A file modified just now has no heuristic lifetime: every request is
# revalidated with Apache, which answers 304.
get($port, '/new.txt');
$r = get($port, '/new.txt');
is($r->{body}, "new static file\n", 'revalidated: body from the store');
like($r->{headers}{'cache-status'}, qr/fwd=stale; fwd-status=304/,
     'revalidated: Cache-Status says 304 from the origin');
# Apache logs a request after answering it: wait for the line.
my @lines;
for (1 .. 40) {
    @lines = grep { /new\.txt.*" 304 / } $ap->access_log_lines;
    last if @lines;
    sleep 0.05;
}
like($lines[-1] // '', qr/" 304 /, 'Apache answered the revalidation 304');

# PHP with max-age: the counter in the body shows the origin was reached
# once.
my $p = '/cache.php?id=basic&cc=max-age%3D60';
$r = get($port, $p);
like($r->{body}, qr/count=1 /, 'php miss');
is($r->{headers}{'x-seen-proto'}, 'http', 'origin saw X-Forwarded-Proto');
is($r->{headers}{'x-seen-xff'}, '127.0.0.1', 'origin saw X-Forwarded-For');
$r = get($port, $p);
like($r->{body}, qr/count=1 /, 'php hit: no second origin request');
$r = get($port, $p, headers => { 'X-Forwarded-For' => '192.0.2.9' });
like($r->{body}, qr/count=1 /, 'hit with X-Forwarded-For');
$r = get($port, '/cache.php?id=xff&cc=no-store',
         headers => { 'X-Forwarded-For' => '192.0.2.9' });
is($r->{headers}{'x-seen-xff'}, '192.0.2.9, 127.0.0.1',
   'X-Forwarded-For appended to');

# HEAD from the stored GET: same headers, no body.
$r = get($port, $p, method => 'HEAD');
is($r->{status}, 200, 'HEAD hit: 200');
is($r->{body}, '', 'HEAD hit: no body');
like($r->{headers}{'cache-status'}, qr/hit/, 'HEAD hit: from the store');
ok($r->{headers}{'content-length'} > 0, 'HEAD hit: Content-Length of GET');
# HEAD first: the object is fetched with GET and stored for the GET after.
$r = get($port, '/cache.php?id=head&cc=max-age%3D60', method => 'HEAD');
is($r->{body}, '', 'HEAD miss: no body');
$r = get($port, '/cache.php?id=head&cc=max-age%3D60');
like($r->{body}, qr/id=head count=1 /, 'GET after HEAD miss: a hit');
like($r->{headers}{'x-seen-method'}, qr/GET/, 'HEAD was fetched as GET');

# Keep-alive and pipelining: three hits on one connection, in order.
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die;
print $s "GET /old.txt HTTP/1.1\r\nHost: test.example\r\n\r\n"
       . "GET $p HTTP/1.1\r\nHost: test.example\r\n\r\n"
       . "HEAD /old.txt HTTP/1.1\r\nHost: test.example\r\n\r\n"
       . "GET /big.txt HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n";
my $all = '';
my $end = time + 10;
while (time < $end) {
    my $n = sysread $s, $all, 65536, length $all;
    last unless $n;
}
my @st = $all =~ /^HTTP\/1\.1 (\d{3}) /mg;
is("@st", "200 200 200 200", 'four pipelined requests answered in order');
like($all, qr/old static file\n.*id=basic count=1.*\z/s, 'bodies in order');
ok(index($all, $big) > 0, 'the last pipelined answer carries the large body');

# HTTP/1.0 keep-alive.
$s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die;
print $s "GET /old.txt HTTP/1.0\r\nConnection: keep-alive\r\nHost: test.example\r\n\r\n";
my $resp = '';
$end = time + 5;
while (time < $end && $resp !~ /old static file\n/) {
    sysread $s, $resp, 65536, length $resp or last;
}
like($resp, qr/\r\nConnection: keep-alive\r\n/i, 'HTTP/1.0 keep-alive confirmed');
print $s "GET /old.txt HTTP/1.0\r\nHost: test.example\r\n\r\n";
my $resp2 = '';
$end = time + 5;
while (time < $end) {
    my $n = sysread $s, $resp2, 65536, length $resp2;
    last unless $n;
}
like($resp2, qr/old static file\n\z/, 'second HTTP/1.0 request served, then closed');

# A response without Content-Length (chunked from PHP) to an HTTP/1.0
# client is delimited by closing the connection.
$r = get($port, '/cache.php?id=h10&cc=no-store');
ok($r->{status} == 200, 'no-store page served');

my $st = stats($d);
ok($st->{hits} >= 8, "show stats counts hits ($st->{hits})");
ok($st->{misses} >= 4, "and misses ($st->{misses})");
ok($st->{objects} >= 4, "and objects ($st->{objects})");

is($d->stop, 0, 'clean stop');
done_testing;
