#!/usr/bin/perl
# balancerd TCP mode. A `route = "writer"` listener in front of two real
# MariaDB servers: no writer, no connection; after `node role POOL/NODE
# writer` MySQL clients land on that node; when the writer changes, the
# connections to the old one are closed (one log line for the batch) and
# new ones go to the new writer. A balanced listener in front of a dead
# node and a scripted echo server: every connection gets through (the dead
# node's refusal is retried) and its bytes come back exactly.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::MariaDB;
use SJ::Net;

my $why = SJ::MariaDB->skip_reason;
plan skip_all => $why if $why;
eval { require DBI; require DBD::MariaDB; 1 }
    or plan skip_all =>
    'DBD::MariaDB not installed (apt-get install libdbd-mariadb-perl)';

my $t = SJ::Test->new;

# Two independent servers are enough to see where a client lands; the
# master-master replication between them is not what this test is about.
my @db = map { SJ::MariaDB::Server->new(dir => $t->dir, id => $_) } 1, 2;
$db[0]->init;
$db[1]->init_from($db[0]);
$_->start for @db;
for my $s (@db) {
    $s->sql("CREATE USER 'sj'\@'127.0.0.1' IDENTIFIED BY 'sj'; "
            . "GRANT ALL ON *.* TO 'sj'\@'127.0.0.1'");
}

# A scripted echo server (exact bytes): a forked child, one connection at a
# time, stopped by its pid at the end.
my $echo = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                 Listen => 16, ReuseAddr => 1)
    or die "echo listen: $!";
my $echo_port = $echo->sockport;
my $echo_pid = fork // die "fork: $!";
if ($echo_pid == 0) {
    # _exit, never exit: the harness's END blocks would stop the daemons
    # and servers from this child.
    $SIG{TERM} = 'DEFAULT';
    $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm 60;
    while (my $c = $echo->accept) {
        while (1) {
            my $n = sysread $c, my $buf, 65536;
            last unless $n;
            my $off = 0;
            while ($off < $n) {
                my $w = syswrite $c, $buf, $n - $off, $off;
                last unless $w;
                $off += $w;
            }
        }
        close $c;
    }
    POSIX::_exit(0);
}
close $echo;

my $wport = $t->port('writer');
my $bport = $t->port('balanced');
my $dead = $t->port('dead');    # nothing listens there
my $sock = $t->run_dir . '/balancerd.sock';
my ($p1, $p2) = map { $_->port } @db;
$t->write_conf(
    pools => qq{
  php: { nodes = ( { name = "php1"; address = "127.0.0.1:@{[ $t->port('php1') ]}"; } ); };
  mysql: { mode = "master-master";
           nodes = ( { name = "db1"; address = "127.0.0.1:$p1"; },
                     { name = "db2"; address = "127.0.0.1:$p2"; } ); };
  echo: { nodes = ( { name = "dead"; address = "127.0.0.1:$dead"; },
                    { name = "e1"; address = "127.0.0.1:$echo_port"; } ); };},
    balancerd => qq{listen = ( "unix:$sock" ); pool = "php";
  tcp = ( { listen = "127.0.0.1:$wport"; pool = "mysql"; route = "writer"; },
          { listen = "127.0.0.1:$bport"; pool = "echo"; } );},
);
my $d = $t->start('balancerd');
ok(wait_for_port('127.0.0.1', $wport, 5), 'writer listener open');

sub db_connect {
    return DBI->connect(
        "DBI:MariaDB:host=127.0.0.1;port=$wport;"
            . 'mariadb_connect_timeout=5;mariadb_read_timeout=5',
        'sj', 'sj', { PrintError => 0, RaiseError => 0 });
}
sub server_id {
    my ($dbh) = @_;
    my ($id) = $dbh ? $dbh->selectrow_array('SELECT @@server_id') : ();
    return $id // 'none';
}

# No writer marked yet: the client is closed, and the log says why.
ok(!db_connect(), 'no writer: the MySQL client cannot connect');
ok($d->wait_log(qr/tcp 127\.0\.0\.1:$wport: no node for pool mysql/),
   'no writer: logged');

my ($st) = $d->ctl('node role mysql/db1 writer');
is($st, 200, 'node role mysql/db1 writer');
my @h = map { db_connect() } 1 .. 3;
is(join(',', map { server_id($_) } @h), '1,1,1',
   'three clients land on db1, the writer');

my $t0 = time;
($st) = $d->ctl('node role mysql/db2 writer');
is($st, 200, 'node role mysql/db2 writer');
my $closed = 0;
for my $dbh (@h) {
    # Each read fails once balancerd has closed the connection.
    my $end = time + 3;
    while (time < $end) {
        last unless defined $dbh->selectrow_array('SELECT 1');
        sleep 0.05;
    }
    ++$closed unless defined $dbh->selectrow_array('SELECT 1');
}
my $took = time - $t0;
is($closed, 3, 'writer change: the connections to db1 are closed');
cmp_ok($took, '<', 2, "writer change: promptly ($took s)");
ok($d->wait_log(qr/tcp 127\.0\.0\.1:$wport: writer of mysql changed to db2; (?#
    )closing 3 connections to db1/),
   'writer change: one log line for the batch');
$_->disconnect for @h;
my $new = db_connect();
is(server_id($new), 2, 'writer change: a new client lands on db2');
$new->disconnect if $new;

# The balanced listener: a dead node first in the pool, exact bytes back.
my $okcount = 0;
for my $i (1 .. 4) {
    my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$bport",
                                  Timeout => 5) or next;
    my $data = join '', map { chr(($_ * 7 + $i) % 256) } 1 .. 300_000;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        syswrite $c, $data;
        shutdown $c, 1;
        POSIX::_exit(0);
    }
    my $got = '';
    $c->timeout(5);
    while (1) {
        my $n = sysread $c, my $buf, 65536;
        last unless $n;
        $got .= $buf;
    }
    waitpid $pid, 0;
    ++$okcount if $got eq $data;
}
is($okcount, 4, 'balanced: four connections relayed byte for byte');
ok($d->wait_log(qr/echo\/dead: connect failed: Connection refused/),
   'balanced: the dead node was tried and its refusal retried');

is($d->stop, 0, 'balancerd stops cleanly');
unlike($d->log, qr/\b(?:CHECK|abort|Segmentation)/, 'no crash in the log');
kill 'TERM', $echo_pid;
waitpid $echo_pid, 0;
$_->stop for @db;
done_testing;
