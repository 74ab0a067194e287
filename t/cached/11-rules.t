#!/usr/bin/perl
# One check per RFC 9111 rule cached implements, against mod_php pages that
# set the headers (t/php/cache.php): what the client gets, and how many
# requests reached the origin (the page's counter, count=N in the body).
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use URI::Escape ();
use SJ::Apache;
use SJ::Net;
use SJ::Cached qw(start_cached get stats);

if (my $why = SJ::Apache::skip_reason()) { plan skip_all => $why }

my $ap = SJ::Apache->start(name => 'origin');
# A directory whose responses may be stored with their Set-Cookie.
mkdir $ap->docroot . '/ok';
open my $inc, '>', $ap->docroot . '/ok/cache.php' or die;
print $inc "<?php require __DIR__ . '/../cache.php';\n";
close $inc;
my ($t, $d, $port) = start_cached(
    origin => $ap->address,
    extra  => 'cookie_paths = [ "/ok/" ];
               sort_query = true; ignore_params = [ "utm_source" ];
               pass_ttl = 1.0;');

sub page {
    my (%q) = @_;
    return '/cache.php?' . join('&', map {
        "$_=" . URI::Escape::uri_escape($q{$_}) } sort keys %q);
}
sub count { ($_[0]{body} =~ /count=(\d+)/)[0] // 0 }
# Requests $path $n times; returns the list of counts seen.
sub counts {
    my ($path, $n, %o) = @_;
    return map { count(get($port, $path, %o)) } 1 .. $n;
}

# Freshness: max-age, s-maxage (wins over max-age), Expires.
is(join(',', counts(page(id => 'ma', cc => 'max-age=60'), 3)), '1,1,1',
   'max-age=60: stored, served from the cache');
is(join(',', counts(page(id => 'sm', cc => 'max-age=0, s-maxage=60'), 3)),
   '1,1,1', 's-maxage wins over max-age in a shared cache');
is(join(',', counts(page(id => 'ex', expires => 60), 2)), '1,1',
   'Expires in the future: stored');
is(join(',', counts(page(id => 'ma0', cc => 'max-age=0'), 2)), '1,2',
   'max-age=0 without validators: refetched');
is(join(',', counts(page(id => 'none'), 2)), '1,2',
   'no freshness information: not stored');

# Freshness runs out: max-age=1 expires, the next request refetches.
my $short = page(id => 'short', cc => 'max-age=1');
get($port, $short);
sleep 2.1;
is(count(get($port, $short)), 2, 'expired object refetched');

# Directives that keep a response out of the shared store.
is(join(',', counts(page(id => 'ns', cc => 'no-store, max-age=60'), 2)),
   '1,2', 'no-store: not stored');
is(join(',', counts(page(id => 'pr', cc => 'private, max-age=60'), 2)),
   '1,2', 'private: not stored');

# no-cache: stored, but revalidated every time (304 with the ETag).
my $nc = page(id => 'nc', cc => 'no-cache, max-age=60', etag => 1);
my $r = get($port, $nc);
$r = get($port, $nc);
is(count($r), 1, 'no-cache: body from the store after revalidation');
like($r->{headers}{'cache-status'}, qr/fwd=stale; fwd-status=304/,
     'no-cache: revalidated with the origin (304)');

# must-revalidate with an expired object: revalidated, never served stale.
my $mr = page(id => 'mr', cc => 'max-age=1, must-revalidate', etag => 1);
get($port, $mr);
sleep 1.5;
$r = get($port, $mr);
like($r->{headers}{'cache-status'}, qr/fwd=stale; fwd-status=304/,
     'must-revalidate: expired object revalidated');

# Request directives.
my $rq = page(id => 'rq', cc => 'max-age=60', etag => 1);
get($port, $rq);
$r = get($port, $rq, headers => { 'Cache-Control' => 'no-cache' });
like($r->{headers}{'cache-status'}, qr/fwd=/,
     'request no-cache: goes to the origin');
sleep 1.1;  # an age of 0 is still acceptable to max-age=0
$r = get($port, $rq, headers => { 'Cache-Control' => 'max-age=0' });
like($r->{headers}{'cache-status'}, qr/fwd=/,
     'request max-age=0: goes to the origin');
$r = get($port, $rq, headers => { 'Cache-Control' => 'min-fresh=3600' });
like($r->{headers}{'cache-status'}, qr/fwd=/,
     'request min-fresh beyond the lifetime: goes to the origin');
$r = get($port, $rq);
like($r->{headers}{'cache-status'}, qr/; hit/, 'plain request: a hit');
$r = get($port, page(id => 'oic'),
         headers => { 'Cache-Control' => 'only-if-cached' });
is($r->{status}, 504, 'only-if-cached and not stored: 504');
$r = get($port, $rq, headers => { 'Cache-Control' => 'only-if-cached' });
is($r->{status}, 200, 'only-if-cached and stored: 200');
my $ms = page(id => 'ms', cc => 'max-age=1', etag => 1);
get($port, $ms);
sleep 1.5;
$r = get($port, $ms, headers => { 'Cache-Control' => 'max-stale=60' });
like($r->{headers}{'cache-status'}, qr/; hit.*detail=stale/,
     'max-stale: stale object served');
is(count($r), 1, 'max-stale: no origin request');

# Vary: one variant per Accept-Language value; Vary: * never stored.
my $v = page(id => 'vary', cc => 'max-age=60', vary => 'Accept-Language');
my $en1 = get($port, $v, headers => { 'Accept-Language' => 'en' });
my $fr1 = get($port, $v, headers => { 'Accept-Language' => 'fr' });
my $en2 = get($port, $v, headers => { 'Accept-Language' => 'en' });
my $fr2 = get($port, $v, headers => { 'Accept-Language' => 'fr' });
my $none = get($port, $v);
like($en2->{body}, qr/count=1 lang=en/, 'Vary: en variant stored');
like($fr2->{body}, qr/count=2 lang=fr/, 'Vary: fr variant stored apart');
like($none->{body}, qr/count=3 lang=-/, 'Vary: no header is a third variant');
like($en2->{headers}{'cache-status'}, qr/hit/, 'Vary: a hit for en');
is(join(',', counts(page(id => 'vstar', cc => 'max-age=60', vary => '*'), 2)),
   '1,2', 'Vary: * is not stored');

# Conditional requests answered from the store.
my $cond = page(id => 'cond', cc => 'max-age=60', etag => 1);
$r = get($port, $cond);
my $etag = $r->{headers}{etag};
$r = get($port, $cond, headers => { 'If-None-Match' => $etag });
is($r->{status}, 304, 'If-None-Match matching: 304 from the cache');
is($r->{headers}{etag}, $etag, '304 carries the ETag');
is($r->{body}, '', '304 has no body');
$r = get($port, $cond, headers => { 'If-None-Match' => '"other"' });
is($r->{status}, 200, 'If-None-Match not matching: 200');
is(count($r), 1, 'conditionals answered without the origin');
my $lmp = page(id => 'lm', cc => 'max-age=60', lm => 1);
$r = get($port, $lmp);
$r = get($port, $lmp,
         headers => { 'If-Modified-Since' => $r->{headers}{'last-modified'} });
is($r->{status}, 304, 'If-Modified-Since not older: 304');

# Ranges from a stored full object.
my $rg = page(id => 'range', cc => 'max-age=60', size => 1000, etag => 1);
my $full = get($port, $rg)->{body};
$r = get($port, $rg, headers => { Range => 'bytes=0-9' });
is($r->{status}, 206, 'single range: 206');
is($r->{body}, substr($full, 0, 10), 'single range: the bytes');
is($r->{headers}{'content-range'}, 'bytes 0-9/1000', 'single range: Content-Range');
$r = get($port, $rg, headers => { Range => 'bytes=-5' });
is($r->{body}, substr($full, -5), 'suffix range');
$r = get($port, $rg, headers => { Range => 'bytes=0-1,10-12' });
is($r->{status}, 206, 'multiple ranges: 206');
like($r->{headers}{'content-type'}, qr{^multipart/byteranges; boundary=},
     'multiple ranges: multipart/byteranges');
like($r->{body}, qr/Content-Range: bytes 0-1\/1000\r\n\r\n\Q${\ substr($full, 0, 2)}\E\r\n/,
     'multipart: first part');
like($r->{body}, qr/Content-Range: bytes 10-12\/1000\r\n\r\n\Q${\ substr($full, 10, 3)}\E\r\n/,
     'multipart: second part');
$r = get($port, $rg, headers => { Range => 'bytes=5000-6000' });
is($r->{status}, 416, 'unsatisfiable range: 416');
is($r->{headers}{'content-range'}, 'bytes */1000', '416 Content-Range');
$r = get($port, $rg, headers => { Range => 'bytes=0-9', 'If-Range' => '"stale"' });
is($r->{status}, 200, 'If-Range not matching: whole object');
is(count(get($port, $rg)), 1, 'ranges served without the origin');

# Unsafe methods invalidate the target (and Location on the same host).
my $inv = page(id => 'inv', cc => 'max-age=60');
get($port, $inv);
is(count(get($port, $inv)), 1, 'stored before the POST');
$r = get($port, $inv, method => 'POST', body => 'x=1');
is(count($r), 2, 'POST reaches the origin');
is(count(get($port, $inv)), 3, 'after the POST the GET is refetched');

# Set-Cookie: not stored, unless the path is in cookie_paths.
is(join(',', counts(page(id => 'cookie', cc => 'max-age=60', cookie => 1), 2)),
   '1,2', 'Set-Cookie: not stored');
(my $ck = page(id => 'cookieok', cc => 'max-age=60', cookie => 1))
    =~ s{^/}{/ok/};
my @c = map { get($port, $ck) } 1 .. 2;
is(count($c[1]), 1, 'Set-Cookie under cookie_paths: stored');
ok($c[1]{headers}{'set-cookie'}, 'and the cookie is served with it');

# Authorization: not served from the store, not stored, unless public.
my $au = page(id => 'auth', cc => 'max-age=60');
get($port, $au);
$r = get($port, $au, headers => { Authorization => 'Basic dTpw' });
is(count($r), 2, 'Authorization: not served from the store');
like($r->{body}, qr/auth=yes/, 'the origin saw the credentials');
$r = get($port, $au);
is(count($r), 1, "the authorized response did not replace the stored one");
my $ap2 = page(id => 'authpriv', cc => 'max-age=60');
get($port, $ap2, headers => { Authorization => 'Basic dTpw' });
$r = get($port, $ap2);
is(count($r), 2, 'a response to Authorization is not stored');
my $pub = page(id => 'authpub', cc => 'public, max-age=60');
get($port, $pub, headers => { Authorization => 'Basic dTpw' });
$r = get($port, $pub, headers => { Authorization => 'Basic dTpw' });
is(count($r), 1, 'public allows storing and serving with Authorization');

# The cache key: Host is part of it; query order and ignored parameters.
my $hk = page(id => 'host', cc => 'max-age=60');
get($port, $hk, headers => { Host => 'a.example' });
$r = get($port, $hk, headers => { Host => 'b.example' });
is(count($r), 2, 'another Host is another object');
$r = get($port, $hk, headers => { Host => 'A.EXAMPLE:80' });
is(count($r), 1, 'Host is case-insensitive and :80 is the default');
get($port, '/cache.php?id=q&cc=max-age%3D60&b=2&a=1');
$r = get($port, '/cache.php?a=1&b=2&cc=max-age%3D60&id=q&utm_source=mail');
is(count($r), 1, 'sorted query, utm_source ignored: same object');

# Hit-for-pass: an uncacheable answer is remembered for pass_ttl.
get($port, page(id => 'hfp'));
my $st = stats($d);
ok($st->{passes} > 0, "uncacheable keys pass afterwards ($st->{passes})");

is($d->stop, 0, 'clean stop');
done_testing;
