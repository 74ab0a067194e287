#!/usr/bin/perl
# The checks of t/unit/send_batch_test.cc (a C++ program that prints TAP), run
# from the build tree and asserted here one by one, with its exit status
# and how many checks it made.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Unit qw(unit_run unit_report);

my $u = unit_run('send_batch_test');
is($u->{status}, 0, 'send_batch_test exits 0');
cmp_ok($u->{count}, '>=', $u->{skipped} ? 1 : 21, 'and makes its 21 checks (1, skipped, without io_uring)');
unit_report($u);
done_testing();
