package SJ::Lifecycle;
# The lifecycle every daemon shares (issue: foundation), checked the same way
# for each: start/stop, -n, reload by SIGHUP and by the control socket with
# good and broken configurations, a second instance refused, a killed child
# respawned, pid file and socket removed, mutating commands refused to other
# users, daemon mode with a log file reopened on SIGUSR1.
#
# run_lifecycle(name => 'cached', sections => sub { my ($t, %v) = @_; ... },
#               children => N)
# `sections` returns the write_conf() arguments for the daemon; %v may hold
# `workers` to vary on reload.
use strict;
use warnings;
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep time);
use SJ::Test;
use Exporter 'import';
our @EXPORT = qw(run_lifecycle);

sub pid_alive { my ($pid) = @_; return kill(0, $pid) ? 1 : 0 }

sub run_lifecycle {
    my (%a) = @_;
    my $name = $a{name};
    my $t = SJ::Test->new;
    my $conf = $t->write_conf($a{sections}->($t, workers => 2));

    # ---- -n
    my ($rc, $out) = $t->check_conf($name);
    is($rc, 0, "$name -n accepts a good configuration");
    like($out, qr/configuration file \Q$conf\E is valid/, "$name -n says so");

    my $bad = $t->write_file('bad.conf',
        "global: {\n  run_dir = \"/tmp\";\n  nosuch = 1;\n};\n");
    ($rc, $out) = $t->check_conf($name, $bad);
    is($rc, 1, "$name -n rejects an unknown setting");
    like($out, qr/^\Q$bad\E:3: .*nosuch/m, 'error names file:line and setting');

    my $syntax = $t->write_file('syntax.conf',
        "global: {\n  log_level = \"info\"\n  user = ;\n};\n");
    ($rc, $out) = $t->check_conf($name, $syntax);
    is($rc, 1, "$name -n rejects a syntax error");
    like($out, qr/^\Q$syntax\E:\d+: /m, 'syntax error given as file:line');

    ($rc, $out) = $t->run($t->binary($name), '-V');
    like($out, qr/^\Q$name\E \(sunjammer\) \d+\.\d+/, "$name -V");

    # ---- start
    my $d = $t->start($name);
    my ($st, $body) = $d->ctl('ping');
    is("$st $body", "200 pong\n", 'ping answers pong');
    ($st, $body) = $d->ctl('status');
    my $kv = SJ::Daemon::kv($body);
    is($kv->{pid}, $d->pid, 'status: pid');
    is($kv->{daemon}, $name, 'status: daemon');
    is($kv->{generation}, 1, 'status: generation 1');
    is($kv->{config}, $conf, 'status: config file');
    my @kids = $d->wait_children($a{children});
    is(scalar @kids, $a{children}, "$a{children} children running");
    ok(-S $d->ctl_path, 'control socket exists');
    is((stat $d->ctl_path)[2] & 07777, 0660, 'control socket mode 0660');
    open my $pf, '<', $d->pid_file;
    is(scalar(<$pf>) + 0, $d->pid, 'pid file holds the pid');
    ($st, $body) = $d->ctl('show config');
    is($st, 200, 'show config');
    like($body, qr/\Q$name\E\s*[:=]/, 'show config shows the section');
    ($st, $body) = $d->ctl('nosuch command');
    is($st, 404, 'unknown command: 404');

    # ---- second instance refused
    my $d2 = $t->start($name, wait => 0);
    is($d2->wait_exit(10), 1, 'a second instance exits 1');
    like($d2->log, qr/already running \(pid ${\ $d->pid}/,
         'and says who is running');
    is(SJ::Daemon::kv(($d->ctl('status'))[1])->{pid}, $d->pid,
       'the first instance is unharmed');

    # ---- a killed child is respawned
    kill 'KILL', $kids[0];
    ok($d->wait_log(qr/\(pid $kids[0]\) killed by signal 9/),
       'child death logged with its signal');
    my @now = $d->wait_children($a{children});
    ok(@now == $a{children} && !grep({ $_ == $kids[0] } @now),
       'killed child replaced by a new one');

    # ---- SIGHUP with a good configuration
    $t->write_conf($a{sections}->($t, workers => 3));
    $d->signal('HUP');
    ok($d->wait_log(qr/reloaded .*generation 2/), 'SIGHUP reloads');
    is(SJ::Daemon::kv(($d->ctl('status'))[1])->{generation}, 2,
       'generation 2');
    my $want = $a{fixed_children} // 3;
    my @gen2 = $d->wait_children($want);
    is(scalar @gen2, $want, "children follow the new configuration");

    # ---- control reload, good
    ($st, $body) = $d->ctl('reload');
    is("$st $body", "200 reloaded: generation 3\n", 'control reload');

    # ---- broken configuration: keep running the old one
    my $good_text = do { local (@ARGV, $/) = ($conf); <> };
    $t->write_file('sunjammer.conf', $good_text . "bogus = 1;\n");
    my $bogus_line = () = ($good_text . "bogus = 1;\n") =~ /\n/g;
    $d->signal('HUP');
    ok($d->wait_log(qr/reload failed, keeping generation 3: \Q$conf\E:$bogus_line: .*bogus/),
       'SIGHUP with a broken file: logged with file:line, old kept');
    ($st, $body) = $d->ctl('reload');
    is($st, 500, 'control reload of a broken file: 500');
    like($body, qr/^\Q$conf\E:$bogus_line: /, 'with file:line');
    ($st, $body) = $d->ctl('status');
    is(SJ::Daemon::kv($body)->{generation}, 3, 'still generation 3');
    ($st, $body) = $d->ctl('ping');
    is($st, 200, 'still answering');
    $t->write_file('sunjammer.conf', $good_text);

    # ---- mutating commands from another user
    SKIP: {
        skip 'needs root to act as another user', 4 unless $> == 0;
        # uid 1 (daemon) in group nogroup: may open the socket (group
        # nogroup, mode 0660) but is neither root, the daemon's user nor
        # in an admin group.
        my $gid = getgrnam('nogroup');
        my $res = as_user(1, $gid, sub {
            my @r;
            for my $cmd (qw(ping reload stop)) {
                my ($st, $body) = eval { $d->ctl($cmd) };
                push @r, ($st // 'error') . ' ' . ($body // $@);
            }
            return join "\n", map { s/\n+\z//r } @r;
        });
        my @r = split /\n/, $res;
        is($r[0], "200 pong", "other user: read-only command allowed");
        like($r[1], qr/^403 /, 'other user: reload refused with 403');
        like($r[2], qr/^403 /, 'other user: stop refused with 403');
        is(SJ::Daemon::kv(($d->ctl('status'))[1])->{state}, 'running',
           'daemon still running after the refused stop');
    }

    # ---- SIGTERM
    my $ctl = $d->ctl_path;
    my $pidf = $d->pid_file;
    is($d->stop, 0, 'SIGTERM: exit status 0');
    ok(!-e $pidf, 'pid file removed');
    ok(!-e $ctl, 'control socket removed');
    ok(!grep(pid_alive($_), @gen2), 'children gone');
    if ($a{unix_listener}) {
        my $path = $t->dir . "/$a{unix_listener}";
        ok(!-e $path, 'unix listening socket removed');
    }
    like($d->log, qr/stopped/, 'stop logged');

    # ---- daemon mode, log file, SIGUSR1, control stop
    my $logf = $t->dir . "/$name-daemon.log";
    $t->write_conf($a{sections}->($t, workers => 2),
                   global => { log_file => "\"$logf\"" });
    ($rc, $out) = $t->run($t->binary($name), '-f', $conf);
    is($rc, 0, 'daemon mode: the starting process exits 0');
    my $pid = wait_file_pid($pidf);
    ok($pid && $pid != $d->pid && pid_alive($pid), 'daemon running detached');
    ok(wait_for(sub { -s $logf && slurp($logf) =~ /started/ }),
       'logging to global.log_file');
    rename $logf, "$logf.1";
    kill 'USR1', $pid;
    ok(wait_for(sub { -e $logf && slurp($logf) =~ /reopened/ }),
       'SIGUSR1 reopens the log file');
    ($st, $body) = SJ::Daemon::ctl_call($ctl, 'stop');
    is("$st $body", "200 stopping\n", 'control stop');
    ok(wait_for(sub { !pid_alive($pid) }, 15), 'daemon exits after stop');
    ok(!-e $pidf && !-e $ctl, 'pid file and socket removed');
    return $t;
}

sub slurp { local (@ARGV, $/) = ($_[0]); <> // '' }

sub wait_for {
    my ($cond, $timeout) = @_;
    my $end = time + ($timeout // 5);
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return 0;
}

sub wait_file_pid {
    my ($f) = @_;
    my $pid;
    wait_for(sub {
        return 0 unless -s $f;
        $pid = slurp($f) + 0;
        return $pid > 0;
    });
    return $pid;
}

# Runs $code in a child process as uid/gid; returns what it returned.
sub as_user {
    my ($uid, $gid, $code) = @_;
    pipe my $r, my $w or die;
    my $pid = fork // die;
    if ($pid == 0) {
        close $r;
        $) = "$gid $gid";
        $( = $gid;
        $< = $> = $uid;
        print $w $code->();
        close $w;
        POSIX::_exit(0);
    }
    close $w;
    local $/;
    my $res = <$r>;
    waitpid $pid, 0;
    return $res;
}

1;
