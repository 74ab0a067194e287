#!/usr/bin/perl
# cached: the daemon lifecycle (see SJ::Lifecycle) with two, then three
# workers.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Lifecycle;

run_lifecycle(
    name     => 'cached',
    children => 2,
    sections => sub {
        my ($t, %v) = @_;
        my $port = $t->port('http');
        my $origin = $t->run_dir . '/balancerd.sock';
        return (cached => qq{listen = ( "127.0.0.1:$port" );
            origin = "unix:$origin"; workers = $v{workers};});
    },
);
done_testing;
