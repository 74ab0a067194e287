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
use SJ::Balancerd qw(start_one_node);
use SJ::ConnLimit qw(check_max_connections);

my $t = SJ::Test->new;
my ($d, $port, $b1) = start_one_node($t, 'max_connections = 3;');
my ($worker) = $d->wait_children(1);

check_max_connections(d => $d, port => $port, limit => 3, worker => $worker,
    setting => 'balancerd.max_connections',
    reached => sub {
        my ($path) = @_;
        scalar grep { $_->{head} =~ /^GET \Q$path\E / } $b1->requests;
    });

is($d->stop, 0, 'clean stop');
done_testing();
