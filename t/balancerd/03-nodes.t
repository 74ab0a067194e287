#!/usr/bin/perl
# balancerd over real Apache + mod_php nodes: distribution by weight,
# maxconn never exceeded (counted by the node), the queue and its timeout,
# a killed node costing no failed request, sticky sessions, drain, slow
# start, and the control commands that drive them.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Net qw(http_get http_send http_read);
use SJ::Apache;
use SJ::Balancerd qw(ctl_rows);

if (my $why = SJ::Apache::skip_reason()) {
    plan skip_all => $why;
}

my $t = SJ::Test->new;
my $port = $t->port('http');
my @php = map { SJ::Apache->start(name => "php$_", dir => $t->dir,
                                  maxclients => 12) } 1 .. 2;

sub conf {
    my (%o) = @_;
    my $pool = $o{pool} // '';
    my $w1 = $o{w1} // 30;
    my $w2 = $o{w2} // 10;
    $t->write_conf(
        pools => qq{php: { $pool
            nodes = ( { name = "php1"; address = "${\ $php[0]->address}"; weight = $w1; },
                      { name = "php2"; address = "${\ $php[1]->address}"; weight = $w2; } ); };},
        balancerd => qq{listen = ( "127.0.0.1:$port" ); pool = "php";
            workers = ${\ ($o{workers} // 1)}; passive_fall = 1; passive_hold = 1.0;
            connect_timeout = 1.0; access_log = "${\ $t->dir}/access.log";},
    );
}

sub get {
    my ($path, %h) = @_;
    return http_get(host => '127.0.0.1', port => $port, path => $path,
                    headers => \%h, timeout => 10);
}

sub tally {
    my ($n, $path) = @_;
    my %c;
    for (1 .. $n) {
        my $r = get($path // '/index.php');
        $c{ $r->{status} == 200 ? ($r->{headers}{'x-sj-node'} // '?')
                                : "status$r->{status}" }++;
    }
    return \%c;
}

# Concurrent requests; returns the responses.
sub parallel {
    my ($n, $path) = @_;
    my @socks = map { http_send(host => '127.0.0.1', port => $port,
                                path => $path) } 1 .. $n;
    return map { $_ ? http_read($_, timeout => 15) : { status => 0 } } @socks;
}

conf();
my $d = $t->start('balancerd');

# Round robin by weight: exact over whole cycles with one worker.
my $c = tally(40);
is_deeply($c, { php1 => 30, php2 => 10 }, 'roundrobin 30:10 gives 30/10 of 40');

# Control: show nodes / pools.
my ($st, $body) = $d->ctl('show nodes');
is($st, 200, 'show nodes');
my @rows = ctl_rows($body);
is(scalar @rows, 2, 'two nodes listed');
is($rows[0]{NODE}, 'php/php1', 'named pool/node');
is($rows[0]{HEALTH}, 'up', 'health up');
is($rows[0]{REQUESTS}, 30, 'request count in show nodes');
($st, $body) = $d->ctl('show pools');
like($body, qr/^POOL\s+BALANCE.*\nphp\s+roundrobin\s+2\s+2\s/s, 'show pools');
($st, $body) = $d->ctl('show stats');
like($body, qr{^php/php1\s+30\s+0\s+0\s+0\s+0\s+0\s+30\s}m, 'show stats counts 2xx');

# Slow start: a node that comes back ramps up.
conf(pool => 'slowstart = 6.0;', w1 => 10, w2 => 10);
($st, $body) = $d->ctl('reload');
is($st, 200, 'reload for slow start') or diag $body;
sleep 0.5;
$d->ctl('node disable php/php2');
$d->ctl('node enable php/php2');
$c = tally(20);
ok(($c->{php2} // 0) <= 5, "just enabled: php2 gets few (" . ($c->{php2} // 0) . " of 20)");
sleep 6;
$c = tally(40);
is($c->{php2}, 20, 'after slowstart: its full share');

conf();
$d->ctl('reload');
sleep 0.5;

# Runtime weight: 0 takes a node out of rotation.
($st) = $d->ctl('node weight php/php2 0');
is($st, 200, 'node weight');
$c = tally(10);
is_deeply($c, { php1 => 10 }, 'weight 0: no new requests');
$d->ctl('node weight php/php2 10');
($st) = $d->ctl('node weight php/php9 10');
is($st, 404, 'unknown node: 404');
($st) = $d->ctl('node weight php/php2 x');
is($st, 400, 'bad weight: 400');

# heartbeatd's word: down until it says up.
$d->ctl('node health php/php1 down check failed');
$c = tally(8);
is_deeply($c, { php2 => 8 }, 'health down: node skipped');
@rows = ctl_rows(($d->ctl('show nodes'))[1]);
is($rows[0]{HEALTH} . ' ' . $rows[0]{SOURCE}, 'down heartbeat', 'down by heartbeat');
like($rows[0]{REASON}, qr/check failed/, 'reason shown');
$d->ctl('node health php/php1 up');

# Drain: in-flight requests finish, new ones go elsewhere.
my $slow = http_send(host => '127.0.0.1', port => $port,
                     path => '/slow.php?t=1', headers => {});
sleep 0.2;
@rows = ctl_rows(($d->ctl('show nodes'))[1]);
my ($busy) = map { $_->{NODE} } grep { $_->{ACTIVE} == 1 } @rows;
ok($busy, "a node is busy ($busy)");
$d->ctl("node drain $busy");
$c = tally(6);
my ($other) = grep { "php/$_" ne $busy } qw(php1 php2);
is_deeply($c, { $other => 6 }, 'drained node gets no new requests');
my $r = http_read($slow, timeout => 5);
is($r->{status}, 200, 'in-flight request on the drained node finished');
$d->ctl("node enable $busy");

# maxconn and the queue: at most 2 requests at a node at once.
conf(pool => 'maxconn = 2; queue_timeout = 10.0; balance = "leastconn";',
     w1 => 10, w2 => 10, workers => 2);
($st) = $d->ctl('reload');
is($st, 200, 'reload');
sleep 0.5;
$_->concurrency_reset for @php;
my @resp = parallel(10, '/concurrency.php?t=0.4');
is(scalar(grep { $_->{status} == 200 } @resp), 10, 'ten queued requests all served');
ok($php[0]->concurrency_max <= 2 && $php[1]->concurrency_max <= 2,
   'maxconn 2 never exceeded at either node (' . $php[0]->concurrency_max
   . ', ' . $php[1]->concurrency_max . ')');
ok($php[0]->concurrency_max == 2 && $php[1]->concurrency_max == 2,
   'and both nodes were used up to it');

# Queue timeout: 503 with Retry-After.
conf(pool => 'maxconn = 1; queue_timeout = 0.3;', w1 => 10, w2 => 10);
$d->ctl('reload');
sleep 0.5;
@resp = parallel(4, '/slow.php?t=1');
my @s503 = grep { $_->{status} == 503 } @resp;
is(scalar @s503, 2, 'two of four get 503 after the queue timeout');
is(scalar(grep { $_->{status} == 200 } @resp), 2, 'two served');
ok((grep { defined $_->{headers}{'retry-after'} } @s503) == 2, '503 carries Retry-After');
like($s503[0]{body}, qr/queue timeout/, 'and says why');
ok($d->wait_log(qr/503 Service Unavailable: queue timeout/), 'queue timeout logged');

# Full queue: 503 at once.
conf(pool => 'maxconn = 1; maxqueue = 1; queue_timeout = 5.0;', w1 => 10, w2 => 10);
$d->ctl('reload');
sleep 0.5;
my $t0 = time;
@resp = parallel(5, '/slow.php?t=0.5');
my @full = grep { $_->{status} == 503 } @resp;
is(scalar @full, 2, 'maxqueue 1: two of five refused');
like($full[0]{body}, qr/queue full/, 'as queue full');

# Sticky sessions by cookie insertion.
conf(pool => 'sticky_cookie = "SJNODE";', w1 => 10, w2 => 10);
$d->ctl('reload');
sleep 0.5;
$r = get('/session.php');
my ($node1) = $r->{body} =~ /node=(\w+)/;
my ($sid) = ($r->{headers}{'set-cookie'} // '') =~ /PHPSESSID=(\w+)/;
like($r->{headers}{'set-cookie'}, qr/SJNODE=$node1; Path=\//, 'sticky cookie names the node');
my $cookie = "SJNODE=$node1; PHPSESSID=$sid";
my @counts;
for (1 .. 5) {
    $r = get('/session.php', Cookie => $cookie);
    push @counts, $r->{body} =~ /count=(\d+)/ ? $1 : 0;
    like($r->{body}, qr/node=$node1/, "sticky request $_ stays on $node1") if $_ == 5;
}
is("@counts", '2 3 4 5 6', 'the PHP session carries on on one node');

# A request waiting in the queue for its sticky node does not hold up the
# requests behind it: maxconn 1, php1 busy for 3 s and php2 for 1 s; a
# request stuck to php1 queues, then one without the cookie queues behind
# it. When php2 frees, the second takes it at once instead of waiting for
# php1 with the first.
conf(pool => 'sticky_cookie = "SJNODE"; maxconn = 1; queue_timeout = 10.0;',
     w1 => 10, w2 => 10);
$d->ctl('reload');
sleep 0.5;
{
    my $send = sub {
        my ($path, $node) = @_;
        return http_send(host => '127.0.0.1', port => $port, path => $path,
                         headers => $node ? { Cookie => "SJNODE=$node" } : {});
    };
    my $t0 = time;
    my $busy1 = $send->('/slow.php?t=3', 'php1');
    my $busy2 = $send->('/slow.php?t=1', 'php2');
    sleep 0.3;
    my $stuck = $send->('/index.php', 'php1');
    sleep 0.3;
    my $free = $send->('/index.php');
    my $r_free = http_read($free, timeout => 10);
    my $t_free = time - $t0;
    is($r_free->{status}, 200, 'the request behind a sticky waiter is served');
    is($r_free->{headers}{'x-sj-node'}, 'php2', 'by the node that freed first');
    cmp_ok($t_free, '<', 2.5, sprintf('after %.1f s: php2 freed at 1 s, php1 '
                                      . 'only at 3 s', $t_free));
    my $r_stuck = http_read($stuck, timeout => 10);
    is($r_stuck->{headers}{'x-sj-node'}, 'php1',
       'the sticky one waited for its node');
    cmp_ok(time - $t0, '>=', 2.9, 'until it freed');
    http_read($_, timeout => 10) for $busy1, $busy2;
}

# Its node dies: the session moves, the request succeeds.
my ($dead) = grep { $_->name eq $node1 } @php;
$dead->kill;
$r = get('/session.php', Cookie => $cookie);
is($r->{status}, 200, 'sticky client whose node died is served');
unlike($r->{body}, qr/node=$node1/, 'by the other node');
like($r->{headers}{'set-cookie'} // '', qr/SJNODE=(?!$node1)/, 'and re-stuck to it');

# A killed node costs no failed request (connect refused -> retry).
$c = tally(20);
ok(!grep(/status/, keys %$c), 'no failed request with a node dead: '
   . join(',', map { "$_=$c->{$_}" } sort keys %$c));
$dead->start;
sleep 1.2;
tally(4);    # the hold is over: traffic probes the node and brings it back
@rows = ctl_rows(($d->ctl('show nodes'))[1]);
is(join(' ', map { $_->{HEALTH} } @rows), 'up up', 'restarted node back up by traffic');
ok($d->wait_log(qr/\Q$node1\E: marked down for 1s after 1 consecutive failures/),
   'passive down logged');

is($d->stop, 0, 'clean stop');
$_->stop for @php;
done_testing;
