#!/usr/bin/perl
# mysql checks against a real MariaDB master-master pair: both up with
# replication running; STOP SLAVE SQL_THREAD makes a replica lagging; a
# killed server goes down and its peer's IO thread, stuck in Connecting
# with a NULL lag, is not taken for healthy; all comes back.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::MariaDB;

my $why = SJ::MariaDB->skip_reason;
plan skip_all => $why if $why;

my $t = SJ::Test->new;
my $pair = SJ::MariaDB->start_pair;
my ($db1, $db2) = $pair->servers;
for my $s ($db1, $db2) {
    # Not binlogged: the peer gets its own.
    $s->sql("SET sql_log_bin = 0; CREATE USER 'sjcheck'\@'127.0.0.1' "
            . "IDENTIFIED BY 'pw'; GRANT REPLICATION CLIENT, SLAVE MONITOR ON *.* "
            . "TO 'sjcheck'\@'127.0.0.1'");
}
$t->write_conf(
    pools => qq{
        mysql: { mode = "master-master";
                 check = { type = "mysql"; user = "sjcheck"; password = "pw";
                           max_lag = 5; interval = 0.2; timeout = 1.0;
                           rise = 2; fall = 2; };
                 nodes = ( { name = "db1"; address = "${\ $db1->address}"; },
                           { name = "db2"; address = "${\ $db2->address}"; } ); };
    },
);
my $hb = $t->start('heartbeatd');

sub state_of {
    my ($node) = @_;
    my ($st, $body) = $hb->ctl('show nodes');
    return $body =~ m{^\Q$node\E \S+ (\S+) (.*)$}m ? ($1, $2) : ('', '');
}
sub wait_state {
    my ($node, $state, $timeout) = @_;
    my $end = time + ($timeout // 5);
    while (time < $end) {
        return 1 if (state_of($node))[0] eq $state;
        sleep 0.05;
    }
    diag("$node: " . join ' ', state_of($node));
    return 0;
}

ok(wait_state('mysql/db1', 'up'), 'db1 up');
ok(wait_state('mysql/db2', 'up'), 'db2 up');
like((state_of('mysql/db1'))[1], qr/server_id 1, read_only 0, lag 0 s/,
     'reason: server_id, read_only and lag');

# ---- the SQL thread stops: reachable but not in sync
$db2->sql('STOP SLAVE SQL_THREAD');
ok(wait_state('mysql/db2', 'lagging'), 'SQL thread stopped: db2 lagging');
like((state_of('mysql/db2'))[1], qr/SQL thread No, lag NULL/, 'why');
is((state_of('mysql/db1'))[0], 'up', 'db1 stays up');
$db2->sql('START SLAVE SQL_THREAD');
ok(wait_state('mysql/db2', 'up'), 'SQL thread started: up again');

# ---- db1 killed: down; db2's IO thread is Connecting with a NULL lag
my $t0 = time;
$db1->kill;
ok(wait_state('mysql/db1', 'down', 5), 'killed db1: down');
diag(sprintf 'db1 down %.2f s after the kill', time - $t0);
like((state_of('mysql/db1'))[1], qr/connect: 2002 /, 'reason: connect error');
my $st = $db2->wait_slave_state(sub { ($_[0]{Slave_IO_Running} // '') eq 'Connecting' }, 15);
ok($st, 'db2 IO thread Connecting');
ok(wait_state('mysql/db2', 'lagging', 5),
   'an IO thread in Connecting with NULL lag is not healthy');
like((state_of('mysql/db2'))[1], qr/IO thread Connecting, SQL thread Yes, lag NULL/,
     'why');

$db1->start;
ok(wait_state('mysql/db1', 'up', 10), 'db1 back up');
ok(wait_state('mysql/db2', 'up', 20), 'db2 replicating again: up');

# ---- bad credentials: down with the server's error
$t->write_conf(
    pools => qq{
        mysql: { check = { type = "mysql"; user = "sjcheck"; password = "nope";
                           interval = 0.2; fall = 1; };
                 nodes = ( { name = "db1"; address = "${\ $db1->address}"; } ); };
    },
);
my ($rc, $body) = $hb->ctl('reload');
is($rc, 200, 'reloaded');
ok(wait_state('mysql/db1', 'down', 5), 'wrong password: down');
like((state_of('mysql/db1'))[1], qr/1045 Access denied/, 'reason');

is($hb->stop, 0, 'clean stop');
$pair->stop_all;
done_testing;
