#!/usr/bin/perl
# cached.max_connections: a worker holding that many client connections
# stops accepting (the next client waits in the listen backlog, it is not
# refused), and accepts again as soon as one of its connections closes.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use IO::Select;
use Time::HiRes qw(sleep time);
use SJ::Net;
use SJ::Test;
use SJ::Cached qw(start_cached get);

my $o = SJ::Cached::Origin->start(SJ::Test->new);
my ($t, $d, $port) = start_cached(origin => $o->address,
    extra => 'max_connections = 3;');

# One keep-alive request on a new connection; returns the open socket
# once answered (so the worker surely holds it), or undef.
sub held {
    my ($path) = @_;
    my $s = http_send(host => '127.0.0.1', port => $port, raw =>
        "GET $path HTTP/1.1\r\nHost: test.example\r\n\r\n") or return;
    my $r = http_read($s, timeout => 5);
    return $r->{status} == 200 ? $s : undef;
}

my @held = map { held("/held$_") } 1 .. 3;
is(scalar(grep { defined } @held), 3, 'three keep-alive connections held');

# The fourth connects (the kernel's backlog) but is not served.
my $s = http_send(host => '127.0.0.1', port => $port, raw =>
    "GET /fourth HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n");
ok($s, 'a fourth client connects');
ok(!IO::Select->new($s)->can_read(1.0),
   'but gets no answer while the worker is at max_connections');
ok($d->wait_log(qr/3 connections \(cached\.max_connections\)/),
   'the pause is logged');
is(scalar($o->requests(qr/^GET \/fourth /)), 0, 'nothing reached the origin');

# One held connection closes: the waiting one is accepted and answered.
close shift @held;
my $t0 = time;
my $r = http_read($s, timeout => 5);
is($r->{status}, 200, 'answered once a connection closed');
ok(time - $t0 < 2, 'promptly');
close $s;
ok($d->wait_log(qr/accepting again/), 'the resume is logged');

# The limit keeps holding: two held and the answered one gone, one more
# fits, the next waits again.
my @more = map { held("/more$_") } 1 .. 1;
is(scalar(grep { defined } @more), 1, 'the freed places are used again');
my $s2 = http_send(host => '127.0.0.1', port => $port, raw =>
    "GET /late HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n");
ok(!IO::Select->new($s2)->can_read(1.0), 'at the limit again: no answer');
close $_ for @held, @more;
$r = http_read($s2, timeout => 5);
is($r->{status}, 200, 'answered after the others closed');
close $s2;

# The setting is checked.
$t->write_conf(cached => qq{listen = ( "127.0.0.1:$port" );
    origin = "${\ $o->address}"; max_connections = 0;});
my ($st, $body) = $d->ctl('reload');
is($st, 500, 'max_connections = 0 is refused');
like($body, qr/max_connections/, 'naming the setting');

is($d->stop, 0, 'clean stop');
done_testing();
