#!/usr/bin/perl
# Bad client input and every timeout, each with its status: smuggling and
# malformed requests are refused with 400/413/414/431/501 and never reach
# the node as two requests (counted at a scripted node); header, body and
# idle timeouts on the client side; the response timeout on the node side.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Balancerd qw(raw_exchange ctl_rows);
use Socket qw(SOL_SOCKET SO_RCVBUF pack_sockaddr_in inet_aton);

my $t = SJ::Test->new;
my $port = $t->port('http');
my $b1 = SJ::Balancerd::Backend->start(t => $t, name => 'b1', handler => sub {
    my ($r) = @_;
    if ($r->{target} =~ m{^/sleep}) {
        sleep 3;
    }
    if ($r->{target} eq '/big') {
        # Several MB, more than every buffer between here and a client
        # that does not read: balancerd's, and both sockets' on loopback.
        return sub {
            my ($c) = @_;
            my $chunk = 'y' x 65536;
            syswrite $c, "HTTP/1.1 200 OK\r\nContent-Length: "
                . (128 * 65536) . "\r\n\r\n";
            for (1 .. 128) {
                my $off = 0;
                while ($off < length $chunk) {
                    my $n = syswrite $c, $chunk, length($chunk) - $off, $off;
                    return 0 unless $n;
                    $off += $n;
                }
            }
            return 0;
        };
    }
    return "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
});
$t->write_conf(
    pools => qq{php: { retries = 0; nodes = ( { name = "b1"; address = "${\ $b1->address}"; } ); };},
    balancerd => qq{listen = ( "127.0.0.1:$port" ); pool = "php";
        header_timeout = 0.5; body_timeout = 0.7; idle_timeout = 0.6;
        server_timeout = 0.8; connect_timeout = 0.5; max_body = "1K";
        send_timeout = 1.0;
        limits = { request_line = 512; header_line = 512; header_total = 2048; };},
);
my $d = $t->start('balancerd');

sub req { raw_exchange(port => $port, data => $_[0], timeout => $_[1] // 5) }

my @bad = (
    ['CL and TE', "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        . "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ['two Content-Length', "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        . "Content-Length: 40\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ['TE not chunked last', "POST / HTTP/1.1\r\nHost: x\r\n"
        . "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400],
    ['TE gzip, chunked', "POST / HTTP/1.1\r\nHost: x\r\n"
        . "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501],
    ['obs-fold', "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400],
    ['space before colon', "GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n", 400],
    ['bare LF', "GET / HTTP/1.1\nHost: x\n\n", 400],
    ['no Host', "GET / HTTP/1.1\r\n\r\n", 400],
    ['two Host', "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
    ['TE in HTTP/1.0', "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
    ['bad Content-Length', "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400],
    ['URI too long', "GET /" . ('a' x 600) . " HTTP/1.1\r\nHost: x\r\n\r\n", 414],
    ['header too large', "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " . ('b' x 600) . "\r\n\r\n", 431],
    ['body too large', "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" . ('c' x 5000), 413],
    ['upgrade', "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 501],
    ['bad version', "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505],
);
for my $case (@bad) {
    my ($name, $bytes, $want) = @$case;
    $b1->clear;
    my $r = req($bytes);
    like($r, qr{\AHTTP/1\.1 $want }, "$name: $want");
    like($r, qr{\r\nConnection: close\r\n}, "$name: connection closed");
    is(scalar(() = $b1->requests), 0, "$name: nothing reached the node");
}

# A bad chunk after part of the body went on: the node sees one
# (truncated) request on a connection that is then closed, never two.
$b1->clear;
my $r = req("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    . "3\r\nabcXX0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
like($r, qr{\AHTTP/1\.1 400 }, 'bad chunk framing: 400');
sleep 0.3;
ok(!grep({ $_->{head} =~ /smuggled/ } $b1->requests), 'smuggled request never reached the node');
ok($d->wait_log(qr/client 127\.0\.0\.1:\d+: 400 Bad Request: /), 'refusals are logged');

# Client timeouts.
my $t0 = time;
$r = req("GET / HTTP/1.1\r\nHost: x\r\n", 3);
like($r, qr{\AHTTP/1\.1 408 .*header timeout}s, 'slow header: 408');
ok(time - $t0 < 2, 'after header_timeout');
$t0 = time;
$r = req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", 3);
like($r, qr{\AHTTP/1\.1 408 .*body timeout}s, 'slow body: 408');
ok(time - $t0 < 2, 'after body_timeout');
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die;
syswrite $s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
$t0 = time;
my $buf = '';
while (time - $t0 < 3) {
    my $n = sysread $s, $buf, 4096, length $buf;
    last unless $n;
}
like($buf, qr{\AHTTP/1\.1 200 }, 'keep-alive response');
ok(time - $t0 > 0.4 && time - $t0 < 2, 'idle keep-alive connection closed after idle_timeout');

# Node timeouts.
$t0 = time;
$r = req("GET /sleep HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
like($r, qr{\AHTTP/1\.1 504 }, 'node too slow: 504');
ok(time - $t0 < 2, 'after server_timeout');

# A client that asks for a large response and never reads it: once it
# has taken no byte for send_timeout, both its connection and the node's
# are closed, with a log line and a count.
my $slow = IO::Socket::INET->new(Proto => 'tcp') or die;
setsockopt($slow, SOL_SOCKET, SO_RCVBUF, 4096) or die;
$slow->connect(pack_sockaddr_in($port, inet_aton('127.0.0.1'))) or die;
syswrite $slow, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
ok($d->wait_log(qr{client 127\.0\.0\.1:\d+: took no response byte for 1 s; closing}, 8),
   'client not reading: closed after send_timeout, logged');
my $got = 0;
$t0 = time;
while (time - $t0 < 5) {
    my $n = sysread $slow, my $chunk, 65536;
    last unless $n;
    $got += $n;
}
ok($got > 0 && $got < 128 * 65536, 'the client got part of the response, then the close')
    or diag $got;
close $slow;
my (undef, $pools) = $d->ctl('show pools');
my ($prow) = ctl_rows($pools);
is($prow->{SEND_TIMEOUTS}, 1, 'show pools counts it');
$r = req("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
like($r, qr{\AHTTP/1\.1 200 }, 'the node still answers');

is($d->stop, 0, 'clean stop');
done_testing;
