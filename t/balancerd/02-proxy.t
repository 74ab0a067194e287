#!/usr/bin/perl
# balancerd's HTTP proxy against scripted backends: requests and responses
# relayed byte for byte in both framings, header rewriting (hop-by-hop
# fields removed, X-Forwarded-* set, X-Forwarded-For honoured only from a
# trusted peer), pipelining, HTTP/1.0, and the proxy's own errors: 502 for
# a bad or truncated response, 503 when no node can take a request.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Balancerd qw(raw_exchange);

my $t = SJ::Test->new;
my $port = $t->port('http');
my $sock = $t->run_dir . '/balancerd.sock';

my $b1 = SJ::Balancerd::Backend->start(t => $t, name => 'b1', handler => sub {
    my ($r) = @_;
    my $tg = $r->{target};
    return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        . "Connection: keep-alive, X-Secret\r\nX-Secret: s\r\n"
        . "Keep-Alive: timeout=5\r\n\r\n"
        . "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" if $tg eq '/chunked';
    return "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort" if $tg eq '/truncated';
    return "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
        if $tg eq '/badcl';
    return sub { syswrite $_[0], "HTTP/1.1 200 OK\r\n\r\nuntil close"; 0 }
        if $tg eq '/close';
    return "garbage\r\n\r\n" if $tg eq '/garbage';
    if ($tg =~ m{^/echo}) {
        my $b = "head:\n$r->{head}body:$r->{body}";
        $b .= "\ntrailers:\n$r->{trailers}" if length $r->{trailers};
        return "HTTP/1.1 200 OK\r\nContent-Length: " . length($b) . "\r\n\r\n$b";
    }
    return "HTTP/1.1 204 No Content\r\n\r\n" if $tg eq '/204';
    return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        . "2\r\nok\r\n0\r\nX-Digest: sha=1\r\nX-Count: 2\r\n\r\n"
        if $tg eq '/trailers';
    return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
});

$t->write_conf(
    pools => qq{php: { retries = 0; nodes = ( { name = "b1"; address = "${\ $b1->address}"; } ); };
        dead: { retries = 1; nodes = ( { name = "d1"; address = "127.0.0.1:${\ $t->port('dead')}"; } ); };},
    balancerd => qq{listen = ( "127.0.0.1:$port", "unix:$sock" ); pool = "php";
        trusted = [ "unix" ]; server_timeout = 5.0;
        access_log = "${\ $t->dir}/access.log";},
);
my $d = $t->start('balancerd');

sub req { raw_exchange(port => $port, data => $_[0], timeout => $_[1] // 5) }

my $r = req("GET /plain HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n");
like($r, qr{\AHTTP/1\.1 200 OK\r\n}, 'GET relayed');
like($r, qr{\r\n\r\nhello\z}, 'body relayed');
like($r, qr{\r\nConnection: close\r\n}i, 'Connection: close to a closing client');

$r = req("GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
like($r, qr{\r\nTransfer-Encoding: chunked\r\n}, 'chunked response re-chunked');
like($r, qr{\r\n\r\nb\r\nhello world\r\n0\r\n\r\n\z}, 'chunked body intact');
unlike($r, qr{X-Secret|Keep-Alive}i, 'hop-by-hop and Connection-named response fields removed');

$r = req("GET /chunked HTTP/1.0\r\nHost: x\r\n\r\n");
like($r, qr{\r\n\r\nhello world\z}, 'HTTP/1.0 client gets the body until close');
unlike($r, qr{Transfer-Encoding}i, 'and no chunked coding');

$r = req("GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
like($r, qr{\r\n\r\nb\r\nuntil close\r\n0\r\n\r\n\z}, 'response until close re-chunked for 1.1');

$r = req("HEAD /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
like($r, qr{\AHTTP/1\.1 200 OK\r\n.*Content-Length: 5\r\n.*\r\n\r\n\z}s, 'HEAD: head only');

$r = req("GET /204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
like($r, qr{\AHTTP/1\.1 204 No Content\r\n}, '204 relayed');

# Request heads as the node sees them.
$b1->clear;
$r = req("POST /echo HTTP/1.1\r\nHost: site.example\r\nConnection: close, X-Hop\r\n"
    . "X-Hop: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\nUpgrade-Insecure-Requests: 1\r\n"
    . "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
    . "Content-Length: 5\r\n\r\nabcde");
like($r, qr{\r\nhead:\nPOST /echo HTTP/1\.1\r\n}, 'request line forwarded as HTTP/1.1');
my ($echoed) = $r =~ /head:\n(.*?)\r\n\r\n/s;
unlike($echoed, qr{X-Hop|Keep-Alive|\nTE:|Connection:}i, 'hop-by-hop request fields removed');
like($r, qr{Upgrade-Insecure-Requests: 1}, 'end-to-end field kept');
like($r, qr{\r\nX-Forwarded-For: 127\.0\.0\.1\r\n}, 'untrusted XFF replaced by the peer');
like($r, qr{\r\nX-Forwarded-Proto: http\r\n}, 'untrusted X-Forwarded-Proto replaced');
like($r, qr{\r\nX-Forwarded-Host: site\.example\r\n}, 'X-Forwarded-Host set');
like($r, qr{body:abcde\z}, 'Content-Length body relayed');

$r = raw_exchange(unix => $sock, data => "GET /echo HTTP/1.1\r\nHost: x\r\n"
    . "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n");
like($r, qr{\r\nX-Forwarded-For: 203\.0\.113\.9\r\n}, 'trusted unix peer: XFF kept');
like($r, qr{\r\nX-Forwarded-Proto: https\r\n}, 'trusted unix peer: proto kept');

$r = req("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    . "Connection: close\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n");
like($r, qr{body:abcdefg\z}, 'chunked request body relayed');
my @reqs = $b1->requests;
like($reqs[-1]{head}, qr{\r\nTransfer-Encoding: chunked\r\n}, 'node saw chunked framing');

# Trailers of a chunked request follow its last chunk to the node, and
# those of a chunked response reach the client; a hop-by-hop field in a
# trailer section stays behind. A framing field in trailers is refused.
$r = req("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    . "Connection: close\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: c1\r\n"
    . "Keep-Alive: 5\r\nX-Other: 2\r\n\r\n");
like($r, qr{body:abc\ntrailers:\nX-Checksum: c1\r\nX-Other: 2\r\n\z},
     'request trailers forwarded after the last chunk, hop-by-hop one dropped');
$r = req("GET /trailers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
like($r, qr{\r\n\r\n2\r\nok\r\n0\r\nX-Digest: sha=1\r\nX-Count: 2\r\n\r\n\z},
     'response trailers relayed to the client');
$b1->clear;
$r = req("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    . "Connection: close\r\n\r\n3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n");
like($r, qr{\AHTTP/1\.1 400 }, 'Content-Length in request trailers: 400');
ok(!grep({ $_->{body} ne '' } $b1->requests), 'and no complete request reached the node');

# Keep-alive and pipelining: three requests, three answers in order.
$r = req("GET /echo?1 HTTP/1.1\r\nHost: x\r\n\r\n"
    . "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n"
    . "GET /echo?3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
my @st = $r =~ m{HTTP/1\.1 (\d\d\d) }g;
is("@st", '200 200 200', 'three pipelined requests answered');
like($r, qr{GET /echo\?1 .*hello.*GET /echo\?3 }s, 'in order');

# Errors made by the proxy.
$r = req("GET /truncated HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
like($r, qr{\AHTTP/1\.1 200 OK\r\n.*short\z}s, 'truncated body: head and bytes relayed');
$r = req("GET /garbage HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
like($r, qr{\AHTTP/1\.1 502 }, 'invalid response: 502');
$r = req("GET /badcl HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
like($r, qr{\AHTTP/1\.1 502 }, 'duplicate Content-Length from the node: 502');
ok($d->wait_log(qr/invalid response to GET \/garbage/), 'bad response logged');

$r = req("GET /plain HTTP/1.1\r\nHost: x\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
@st = $r =~ m{HTTP/1\.1 (\d\d\d) }g;
is("@st", '200 200', 'keep-alive connection reused after a clean response');

# Access log.
sleep 0.5;
open my $fh, '<', $t->dir . '/access.log' or die;
my @log = <$fh>;
close $fh;
ok(@log >= 10, 'access log has lines');
my ($line) = grep { m{"POST /echo HTTP/1.1" 200} } @log;
like($line, qr{^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z 127\.0\.0\.1:\d+ "POST /echo HTTP/1\.1" 200 \d+ \d+ b1 0 \d+\.\d{3} \d+\.\d{3} \d+\.\d{3} \d+\.\d{3} ok$},
     'access log line format');
ok((grep { m{"GET /garbage HTTP/1.1" 502 .* bad-response$} } @log), 'a 502 is logged with how it ended');

is($d->stop, 0, 'clean stop');
done_testing;
