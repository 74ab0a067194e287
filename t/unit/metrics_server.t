#!/usr/bin/perl
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib'); use SJ::Unit; run_unit('metrics_server_test');
