#!/usr/bin/perl
# The MariaDB helper: a master-master pair of real servers replicating both
# ways, and what a replica shows when its master goes away and comes back.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time);

use SJ::Net;
use SJ::MariaDB;

my $why = SJ::MariaDB->skip_reason;
plan skip_all => $why if $why;

my $t0 = time;
my $pair = SJ::MariaDB->start_pair;
my ($db1, $db2) = $pair->servers;
diag(sprintf 'pair up in %.1fs', time - $t0);
ok($db1->pid && $db2->pid, 'both servers running');
isnt($db1->port, $db2->port, 'own ports');
is($db1->sql_value('SELECT @@server_id'), 1, 'server 0 has server_id 1');
is($db2->sql_value('SELECT @@server_id'), 2, 'server 1 has server_id 2');
is($db1->sql_value('SELECT @@log_bin'), 1, 'binary log on');
is($db1->sql_value('SELECT @@binlog_format'), 'ROW', 'row format');

for my $s ($db1, $db2) {
    my $st = $s->slave_status;
    is($st->{Slave_IO_Running}, 'Yes', "server_id $s->{id}: IO thread Yes");
    is($st->{Slave_SQL_Running}, 'Yes', "server_id $s->{id}: SQL thread Yes");
    is($st->{Master_Port}, ($s == $db1 ? $db2 : $db1)->port,
       "server_id $s->{id}: replicates from its peer");
}

# Schema on one side, rows from both.
$db1->sql('CREATE DATABASE sj; '
          . 'CREATE TABLE sj.t (id INT AUTO_INCREMENT PRIMARY KEY, '
          . 'origin VARCHAR(16)) ENGINE=InnoDB');
ok($pair->wait_synced(5), 'schema replicated');
is($db2->sql_value("SHOW TABLES FROM sj LIKE 't'"), 't', 'table on server 1');

$db1->sql("INSERT INTO sj.t (origin) VALUES ('one'), ('one')");
$db2->sql("INSERT INTO sj.t (origin) VALUES ('two'), ('two')");
ok($pair->wait_synced(5), 'writes replicated both ways');
my @ids1 = map { $_->[0] } $db1->sql("SELECT id FROM sj.t WHERE origin='one'");
my @ids2 = map { $_->[0] } $db2->sql("SELECT id FROM sj.t WHERE origin='two'");
is_deeply([map { $_ % 2 } @ids1], [1, 1], "server 0 ids odd (@ids1)");
is_deeply([map { $_ % 2 } @ids2], [0, 0], "server 1 ids even (@ids2)");
my $all = join ' ', map { "$_->[0]:$_->[1]" }
    $db1->sql('SELECT id, origin FROM sj.t ORDER BY id');
is($all, join(' ', map { "$_->[0]:$_->[1]" }
                  $db2->sql('SELECT id, origin FROM sj.t ORDER BY id')),
   "same rows on both ($all)");
is(scalar(() = $all =~ /:/g), 4, 'four rows');

# SQL errors come back as exceptions with the server's message.
ok(!eval { $db1->sql('SELECT * FROM sj.nonexistent'); 1 }, 'bad SQL dies');
like($@, qr/1146|doesn't exist/, 'with the server error');

# Stop server 0: server 1 keeps running and keeps trying to reach it.
$db1->stop;
ok(port_is_closed('127.0.0.1', $db1->port), 'server 0 port closed');
my $st = $db2->wait_slave_state(
    sub { ($_[0]{Slave_IO_Running} // '') ne 'Yes' }, 15);
ok($st, 'server 1 notices its master is gone');
diag("server 1 with its master down: Slave_IO_Running="
     . ($st->{Slave_IO_Running} // '?') . ' Slave_SQL_Running='
     . ($st->{Slave_SQL_Running} // '?') . ' Last_IO_Errno='
     . ($st->{Last_IO_Errno} // '?') . ' Last_IO_Error='
     . ($st->{Last_IO_Error} // ''));
is($st->{Slave_IO_Running}, 'Connecting', 'IO thread Connecting');
is($st->{Slave_SQL_Running}, 'Yes', 'SQL thread still Yes');

# Writes go on at server 1 while server 0 is down...
$db2->sql("INSERT INTO sj.t (origin) VALUES ('two-alone')");

# ...and reach server 0 once it is back; replication resumes both ways.
$db1->start;
ok($db1->wait_slave_running(15), 'server 0 replication resumes by itself');
ok($db2->wait_slave_running(15), 'server 1 reconnects to server 0');
ok($pair->wait_synced(10), 'synced after restart');
is($db1->sql_value("SELECT COUNT(*) FROM sj.t WHERE origin='two-alone'"), 1,
   'row written during the outage reached server 0');
$db1->sql("INSERT INTO sj.t (origin) VALUES ('one-back')");
ok($pair->wait_synced(5), 'synced again');
is($db2->sql_value("SELECT COUNT(*) FROM sj.t WHERE origin='one-back'"), 1,
   'server 0 writes reach server 1 again');

# A crash (SIGKILL) shows the same way to the peer.
$db2->kill;
$st = $db1->wait_slave_state(
    sub { ($_[0]{Slave_IO_Running} // '') eq 'Connecting' }, 15);
ok($st, 'server 0 Connecting after server 1 crashed');
$db2->start;
ok($db1->wait_slave_running(15), 'server 0 reconnects after the crash');
ok($db2->wait_slave_running(15), 'crashed server resumes replication');

# A single server works too.
my $one = SJ::MariaDB->start(dir => $db1->dir . '/..', id => 9);
is($one->sql_value('SELECT @@server_id'), 9, 'single server');
is_deeply($one->slave_status, {}, 'not a replica');
$one->stop;

$pair->stop_all;
ok(!$db1->pid && !$db2->pid, 'all stopped');
done_testing();
