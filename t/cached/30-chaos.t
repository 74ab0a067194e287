#!/usr/bin/perl
# Hard to break: for a few seconds, three clients throw malformed,
# partial, pipelined and odd requests at cached (two workers, PURGE
# allowed from loopback) in front of the scripted origin: garbage bytes,
# bad versions and line ends, conflicting lengths, broken chunked bodies,
# absurd ranges, huge headers, slow pieces, hang-ups mid-request and
# mid-response. Afterwards the same two worker processes still serve a
# request, and none died. (Run under the sanitizers by .ci/run.)
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Net;
use SJ::Test;
use SJ::Cached qw(start_cached get);
use SJ::Chaos qw(survives_chaos);

my $o = SJ::Cached::Origin->start(SJ::Test->new);
my ($t, $d, $port) = start_cached(origin => $o->address, workers => 2,
    extra => 'purge_allow = [ "127.0.0.1" ]; header_timeout = 1.0;');
survives_chaos(d => $d, port => $port, workers => 2, seed => 1,
    probe => sub { get($port, '/after?cc=max-age%3D60')->{status} });
is($d->stop, 0, 'clean stop');
done_testing();
