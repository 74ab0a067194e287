#!/usr/bin/perl
# balancerd: the daemon lifecycle (see SJ::Lifecycle) with two, then three
# workers.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Lifecycle;

run_lifecycle(
    name     => 'balancerd',
    children => 2,
    unix_listener => 'run/balancerd.sock',
    sections => sub {
        my ($t, %v) = @_;
        my $node = $t->port('php1');
        my $sock = $t->run_dir . '/balancerd.sock';
        return (
            pools => qq{php: { nodes = ( { name = "php1";
                address = "127.0.0.1:$node"; } ); };},
            balancerd => qq{listen = ( "unix:$sock" ); pool = "php";
                workers = $v{workers};},
        );
    },
);
done_testing;
