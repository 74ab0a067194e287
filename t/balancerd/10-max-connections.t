#!/usr/bin/perl
# balancerd.max_connections: a worker holding that many client connections
# stops accepting (the next client waits in the listen backlog, it is not
# refused) without spinning on the readable listening socket, and accepts
# again as soon as one of its connections closes.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Net;
use SJ::Test;
use SJ::Balancerd;
use SJ::ConnLimit qw(check_max_connections);

my $t = SJ::Test->new;
my $port = $t->port('http');
my $b1 = SJ::Balancerd::Backend->start(t => $t, name => 'b1', handler => sub {
    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
});
$t->write_conf(
    pools => qq{php: { nodes = ( { name = "b1"; address = "${\ $b1->address}"; } ); };},
    balancerd => qq{listen = ( "127.0.0.1:$port" ); pool = "php";
        workers = 1; max_connections = 3;},
);
my $d = $t->start('balancerd');
wait_for_port('127.0.0.1', $port, 10);
my ($worker) = $d->wait_children(1);

check_max_connections(d => $d, port => $port, limit => 3, worker => $worker,
    setting => 'balancerd.max_connections',
    reached => sub {
        my ($path) = @_;
        scalar grep { $_->{head} =~ /^GET \Q$path\E / } $b1->requests;
    });

is($d->stop, 0, 'clean stop');
done_testing();
