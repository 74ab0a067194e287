#!/usr/bin/perl
# Invalidation by hand: PURGE from an allowed address (and 403, logged,
# from another), `purge URL`, `ban PREFIX`, `ban ~REGEX` and `show object`
# on the control socket.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use SJ::Net;
use SJ::Test;
use SJ::Cached qw(start_cached get stats);

my $t = SJ::Test->new;
my $o = SJ::Cached::Origin->start($t);
my ($tt, $d, $port) = start_cached(origin => $o->address, test => $t,
    extra => 'purge_allow = [ "127.0.0.1", "192.0.2.0/24" ];');

sub fetches { scalar $o->requests(qr/^GET \Q$_[0]\E(\?|$| )/) }
sub warm { get($port, "$_?cc=max-age%3D600") for @_ }

# Sends one request from a chosen local address; returns status.
sub from {
    my ($local, $method, $path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  LocalAddr => $local) or die "bind: $!";
    print $s "$method $path HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n";
    my $r = http_read($s, timeout => 5);
    return $r->{status};
}

warm('/p1');
is(from('127.0.0.1', 'PURGE', '/p1?cc=max-age%3D600'), 200,
   'PURGE from an allowed address: 200');
warm('/p1');
is(fetches('/p1'), 2, 'purged object fetched again');
is(from('127.0.0.1', 'PURGE', '/p1?cc=max-age%3D600'), 200, 'purge again');
is(from('127.0.0.1', 'PURGE', '/p1?cc=max-age%3D600'), 404,
   'PURGE of an object not stored: 404');
warm('/p2');
is(from('127.0.0.2', 'PURGE', '/p2?cc=max-age%3D600'), 403,
   'PURGE from a foreign address: 403');
warm('/p2');
is(fetches('/p2'), 1, 'refused PURGE removed nothing');
ok($d->wait_log(qr/client 127\.0\.0\.2:\d+: PURGE \S+ refused/),
   'refusal logged with the client address');

# Variants go together.
get($port, '/v?cc=max-age%3D600', headers => { 'Accept-Language' => 'x' });

# Control socket.
my ($s, $b) = $d->ctl('purge http://test.example/p2?cc=max-age%3D600');
is($s, 200, 'purge URL: 200');
like($b, qr/purged 1/, 'purge URL: one object');
warm('/p2');
is(fetches('/p2'), 2, 'purge URL took effect');
($s, $b) = $d->ctl('purge http://test.example/nothing');
is($s, 404, 'purge of nothing: 404');
($s, $b) = $d->ctl('purge notaurl');
is($s, 400, 'purge of a bad URL: 400');

warm('/img/a.png', '/img/b.png', '/css/site.css');
($s, $b) = $d->ctl('ban http://test.example/img/');
is($s, 200, 'ban PREFIX: 200');
like($b, qr/banned 2/, 'ban PREFIX: two objects');
warm('/img/a.png', '/css/site.css');
is(fetches('/img/a.png'), 2, 'banned object fetched again');
is(fetches('/css/site.css'), 1, 'others untouched');

warm('/a.js', '/b.js', '/c.txt');
($s, $b) = $d->ctl('ban ~\.js\?');
is($s, 200, 'ban ~REGEX: 200');
like($b, qr/banned 2/, 'ban ~REGEX: two objects');
warm('/a.js', '/c.txt');
is(fetches('/a.js'), 2, 'regex-banned object fetched again');
is(fetches('/c.txt'), 1, 'non-matching object kept');
($s, $b) = $d->ctl('ban ~(');
is($s, 400, 'bad regex: 400');

($s, $b) = $d->ctl('show object http://test.example/c.txt?cc=max-age%3D600');
is($s, 200, 'show object: 200');
like($b, qr/status 200 body \d+ age \d+ ttl \d+ state fresh/, 'show object: status, size, age, ttl');
($s, $b) = $d->ctl('show object http://test.example/none');
is($s, 404, 'show object of nothing: 404');

my $st = stats($d);
ok($st->{purges} >= 3, "purges counted ($st->{purges})");
ok($st->{bans} >= 2, "bans counted ($st->{bans})");
is($d->stop, 0, 'clean stop');
done_testing;
