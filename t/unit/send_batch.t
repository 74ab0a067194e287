#!/usr/bin/perl
# The assertions are in t/unit/send_batch_test.cc, a C++ program that prints TAP;
# this runs it from the build tree (a missing binary fails, never skips).
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib'); use SJ::Unit; run_unit('send_batch_test');
