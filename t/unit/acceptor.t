#!/usr/bin/perl
# The checks of t/unit/acceptor_test.cc (a C++ program that prints TAP), run
# from the build tree and asserted here one by one, with its exit status
# and how many checks it made.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Unit qw(unit_run unit_report);

my $u = unit_run('acceptor_test');
is($u->{status}, 0, 'acceptor_test exits 0');
cmp_ok($u->{count}, '>=', 20, 'and makes its 20 checks');
unit_report($u);
done_testing();
