#!/usr/bin/perl
# Hard to break: for a few seconds, three clients throw malformed,
# partial, pipelined and odd requests at balancerd (two workers, two
# scripted nodes with maxconn and a queue): garbage bytes, bad versions
# and line ends, conflicting lengths, broken chunked bodies, huge
# headers, slow pieces, hang-ups mid-request and mid-response.
# Afterwards the same two worker processes still serve a request, and
# none died. (Run under the sanitizers by .ci/run.)
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Net;
use SJ::Test;
use SJ::Balancerd;
use SJ::Chaos qw(survives_chaos);

my $t = SJ::Test->new;
my $port = $t->port('http');
my @b = map {
    SJ::Balancerd::Backend->start(t => $t, name => "b$_", handler => sub {
        my ($r) = @_;
        return "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
            if $r->{target} !~ /size/;
        return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            . "5\r\nhello\r\n0\r\n\r\n";
    })
} 1 .. 2;
$t->write_conf(
    pools => qq{php: { retries = 1; queue_timeout = 0.5; nodes = (
        { name = "b1"; address = "${\ $b[0]->address}"; maxconn = 4; },
        { name = "b2"; address = "${\ $b[1]->address}"; maxconn = 4; } ); };},
    balancerd => qq{listen = ( "127.0.0.1:$port" ); pool = "php";
        workers = 2; header_timeout = 1.0; body_timeout = 1.0;
        max_body = "1K";},
);
my $d = $t->start('balancerd');
wait_for_port('127.0.0.1', $port, 10);
survives_chaos(d => $d, port => $port, workers => 2, seed => 2,
    probe => sub {
        http_get(host => '127.0.0.1', port => $port, path => '/after')
            ->{status};
    });
is($d->stop, 0, 'clean stop');
done_testing();
