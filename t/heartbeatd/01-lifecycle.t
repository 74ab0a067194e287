#!/usr/bin/perl
# heartbeatd: the daemon lifecycle (see SJ::Lifecycle), one checker child.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Lifecycle;

run_lifecycle(
    name           => 'heartbeatd',
    children       => 1,
    fixed_children => 1,
    sections       => sub {
        my ($t, %v) = @_;
        # `workers` does not apply: heartbeatd always runs one checker.
        return (heartbeatd => qq{node = "lb1"; priority = 150;});
    },
);
done_testing;
