#!/usr/bin/perl
# cached.max_connections: a worker holding that many client connections
# stops accepting (the next client waits in the listen backlog, it is not
# refused) without spinning on the readable listening socket, and accepts
# again as soon as one of its connections closes.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Net;
use SJ::Test;
use SJ::Cached qw(start_cached);
use SJ::ConnLimit qw(check_max_connections);

my $o = SJ::Cached::Origin->start(SJ::Test->new);
my ($t, $d, $port) = start_cached(origin => $o->address,
    extra => 'max_connections = 3;');
my ($worker) = $d->wait_children(1);

check_max_connections(d => $d, port => $port, limit => 3, worker => $worker,
    setting => 'cached.max_connections',
    reached => sub { scalar $o->requests(qr/^GET \Q$_[0]\E /) });

# The setting is checked.
$t->write_conf(cached => qq{listen = ( "127.0.0.1:$port" );
    origin = "${\ $o->address}"; max_connections = 0;});
my ($st, $body) = $d->ctl('reload');
is($st, 500, 'max_connections = 0 is refused');
like($body, qr/max_connections/, 'naming the setting');

is($d->stop, 0, 'clean stop');
done_testing();
