package SJ::Apache;

# A real Apache httpd with mod_php (prefork MPM), started from Debian's
# apache2 package on a loopback port inside a test's temporary directory, to
# play one PHP node behind balancerd and cached.
#
#   my $php1 = SJ::Apache->start(name => 'php1', docroot => "$src/t/php");
#   my $r = http_get($php1->url('/index.php'));
#   $php1->requests_count;   # lines in its access log
#   $php1->kill;             # crash
#   $php1->start;            # again, same port
#   $php1->stop;
#
# The configuration is self-contained (apache2 -f, no /etc/apache2, none of
# the APACHE_* variables Debian's apache2ctl sets), and the server stays in
# the foreground as our child, leading its own process group, so a SIGKILL
# reaches its workers too and nothing outlives the test.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);

use SJ::Net;

my $kModuleDir = '/usr/lib/apache2/modules';

# apache_binary()
# The path of the apache2/httpd binary, or undef when none is installed.
sub apache_binary {
    for my $b ($ENV{SJ_APACHE} // (), '/usr/sbin/apache2', '/usr/sbin/httpd') {
        return $b if -x $b;
    }
    return undef;
}

# skip_reason()
# Why Apache with mod_php cannot run here (for plan skip_all), or undef.
sub skip_reason {
    my $bin = apache_binary()
        or return 'apache2 not installed (apt-get install apache2)';
    -e "$kModuleDir/mod_mpm_prefork.so"
        or return "no $kModuleDir/mod_mpm_prefork.so";
    _php_module()
        or return 'mod_php not installed (apt-get install libapache2-mod-php)';
    return undef;
}

sub _php_module {
    my @m = sort glob("$kModuleDir/libphp*.so");
    return $m[-1];
}

# The modules compiled into the binary (apache2 -l) must not be loaded again.
my %builtin;
sub _builtin_modules {
    my ($bin) = @_;
    return \%builtin if %builtin;
    my (undef, $out) = run_capture($bin, '-l');
    $builtin{$1} = 1 while $out =~ /^\s*(\S+)\.c$/mg;
    $builtin{none} = 1;
    return \%builtin;
}

sub _default_docroot {
    return abs_path(dirname(__FILE__) . '/../../php');
}

# SJ::Apache->new(%opt)
# Prepares a node without starting it. Options:
#   name       => 'php1'   node name, visible to PHP as SJ_NODE
#   port       => N        default: a free loopback port
#   dir        => DIR      where its files go (default: a new temporary
#                          directory removed at exit); the node works in
#                          DIR/apache-NAME
#   docroot    => DIR      the PHP app to serve (default: t/php); it is copied
#                          into the node's directory, so an unprivileged
#                          Apache child can read it wherever the tree lives
#   maxclients => 10       MaxRequestWorkers (prefork processes)
#   keepalive  => 1        KeepAlive On/Off
#   extra_conf => STRING   appended to the generated httpd.conf
sub new {
    my ($class, %o) = @_;
    my $self = bless {
        name       => $o{name} // 'php1',
        port       => $o{port} // free_port(),
        maxclients => $o{maxclients} // 10,
        keepalive  => $o{keepalive} // 1,
        extra_conf => $o{extra_conf} // '',
        src_docroot => $o{docroot} // _default_docroot(),
        pid        => undef,
    }, $class;
    my $base = $o{dir} // tempdir('sj-apache-XXXXXX', TMPDIR => 1,
                                  CLEANUP => 1);
    $self->{dir} = "$base/apache-$self->{name}";
    $self->_prepare($base);
    return $self;
}

# SJ::Apache->start(%opt) or $apache->start
# As a class method: new(%opt) and then start. As an instance method: starts
# a stopped (or killed) node again on the same port, with the same files.
# Waits until the port answers; dies with the tail of the error log when
# Apache does not come up within 15 seconds.
sub start {
    my ($self, %o) = @_;
    $self = $self->new(%o) unless ref $self;
    die "apache $self->{name}: already running (pid $self->{pid})\n"
        if $self->{pid} && process_alive($self->{pid});
    my $bin = apache_binary() or die "apache2 not installed\n";
    unlink "$self->{dir}/run/httpd.pid";
    $self->{pid} = spawn(
        cmd    => [$bin, '-d', $self->{dir}, '-f', $self->{conf},
                   '-DFOREGROUND'],
        stdout => "$self->{dir}/logs/stdout.log",
        stderr => "$self->{dir}/logs/stderr.log",
        name   => "apache $self->{name}",
    );
    my $deadline = time + 15;
    while (1) {
        unless (process_alive($self->{pid})) {
            my $pid = $self->{pid};
            $self->{pid} = undef;
            die "apache $self->{name}: exited at start (pid $pid)\n"
                . $self->_log_tail;
        }
        # Apache accepts connections in the parent before its children are
        # ready; a successful request proves PHP is up too.
        if (wait_for_port('127.0.0.1', $self->{port}, 0.2)) {
            my $r = http_get($self->url('/health.php'), timeout => 5,
                             headers => { 'X-SJ-Probe' => 1 });
            last if $r->{status};
        }
        if (time >= $deadline) {
            my $pid = $self->{pid};
            kill_process($pid);
            $self->{pid} = undef;
            die "apache $self->{name}: no answer on port $self->{port}\n"
                . $self->_log_tail;
        }
        sleep 0.05;
    }
    return $self;
}

# Alias for symmetry with the other helpers.
sub restart {
    my ($self) = @_;
    $self->stop if $self->{pid};
    return $self->start;
}

# $apache->stop($timeout = 10)
# SIGTERM (Apache's immediate stop: workers are killed, requests in flight
# are cut), wait, SIGKILL after the timeout. Returns the wait status, undef
# when it had to be killed. The port is closed when it returns.
sub stop {
    my ($self, $timeout) = @_;
    my $pid = delete $self->{pid} or return 0;
    return stop_process($pid, $timeout // 10);
}

# $apache->graceful_stop($timeout = 30)
# SIGWINCH: stop accepting, let requests in flight finish, then exit.
sub graceful_stop {
    my ($self, $timeout) = @_;
    my $pid = $self->{pid} or return 0;
    CORE::kill('WINCH', $pid);
    my $deadline = time + ($timeout // 30);
    sleep 0.05 while process_alive($pid) && time < $deadline;
    delete $self->{pid};
    return stop_process($pid, 1);
}

# $apache->kill
# SIGKILL to Apache and all its workers: a crashed node.
sub kill {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill_process($pid);
}

sub pid     { $_[0]{pid} }
sub port    { $_[0]{port} }
sub name    { $_[0]{name} }
sub dir     { $_[0]{dir} }
sub docroot { "$_[0]{dir}/htdocs" }
sub address { "127.0.0.1:$_[0]{port}" }
sub is_running { process_alive($_[0]{pid}) }
sub error_log  { "$_[0]{dir}/logs/error.log" }
sub access_log { "$_[0]{dir}/logs/access.log" }
sub state_dir  { "$_[0]{dir}/state" }

# $apache->url($path = '/')
sub url {
    my ($self, $path) = @_;
    $path //= '/';
    $path = "/$path" unless $path =~ m{^/};
    return "http://127.0.0.1:$self->{port}$path";
}

# $apache->access_log_lines
# The access log lines so far, one request each:
#   127.0.0.1 "GET /index.php HTTP/1.1" 200 42 1234us pid=567
sub access_log_lines {
    my ($self) = @_;
    open my $fh, '<', $self->access_log or return ();
    my @lines = <$fh>;
    chomp @lines;
    return @lines;
}

# $apache->requests_count($path_regex = undef)
# How many requests reached this node (optionally only those whose request
# line matches the regex). Apache writes the log line after the response, so
# a test that counts right after reading a response may have to wait a tick:
# wait_requests_count does.
sub requests_count {
    my ($self, $re) = @_;
    my @l = $self->access_log_lines;
    @l = grep { /"[A-Z]+ \S*$re/ } @l if defined $re;
    return scalar @l;
}

# $apache->wait_requests_count($n, $timeout = 5, $path_regex = undef)
# Waits until at least $n requests are logged; returns the count.
sub wait_requests_count {
    my ($self, $n, $timeout, $re) = @_;
    my $deadline = time + ($timeout // 5);
    while (1) {
        my $c = $self->requests_count($re);
        return $c if $c >= $n || time >= $deadline;
        sleep 0.02;
    }
}

# $apache->concurrency_max / ->concurrency_reset
# The highest number of concurrency.php requests in flight at once on this
# node, read from the counter file without a request (a request would need a
# free worker).
sub concurrency_max {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/state/concurrency" or return 0;
    my $line = <$fh> // '';
    return $line =~ /^\d+ (\d+)/ ? $1 : 0;
}

sub concurrency_reset {
    my ($self) = @_;
    my $f = "$self->{dir}/state/concurrency";
    open my $fh, '>', $f or die "$f: $!\n";
    print $fh "0 0\n";
    close $fh;
}

sub _log_tail {
    my ($self) = @_;
    my $out = '';
    for my $f ($self->error_log, "$self->{dir}/logs/stderr.log") {
        open my $fh, '<', $f or next;
        my @l = <$fh>;
        splice @l, 0, -20 if @l > 20;
        $out .= "--- $f\n" . join('', @l);
    }
    return $out;
}

sub _copy_tree {
    my ($from, $to) = @_;
    mkdir $to;
    opendir my $dh, $from or die "$from: $!\n";
    for my $e (readdir $dh) {
        next if $e eq '.' || $e eq '..';
        if (-d "$from/$e") {
            _copy_tree("$from/$e", "$to/$e");
        } else {
            copy("$from/$e", "$to/$e") or die "copy $from/$e: $!\n";
            chmod 0644, "$to/$e";
        }
    }
    chmod 0755, $to;
}

sub _prepare {
    my ($self, $base) = @_;
    my $d = $self->{dir};
    my $root = $> == 0;
    -d $base or die "apache: no directory $base\n";
    # The workers run as nobody when we are root: they must traverse to the
    # document root and write sessions and counters.
    chmod 0755, $base if $root;
    for my $sub ('', qw(/logs /run /htdocs /state /sessions /tmp)) {
        mkdir "$d$sub" unless -d "$d$sub";
    }
    chmod 0755, $d;
    chmod 01777, "$d/$_" for qw(state sessions tmp);
    _copy_tree($self->{src_docroot}, "$d/htdocs");

    # The node name for PHP setups without SetEnv (index.php falls back to it).
    open my $nf, '>', "$d/state/node" or die "$d/state/node: $!\n";
    print $nf "$self->{name}\n";
    close $nf;
    chmod 0644, "$d/state/node";
    open my $cf, '>', "$d/state/concurrency" or die;
    print $cf "0 0\n";
    close $cf;
    chmod 0666, "$d/state/concurrency";

    my $bin = apache_binary() or die "apache2 not installed\n";
    my $builtin = _builtin_modules($bin);
    my @load;
    for my $m (qw(mpm_prefork unixd authz_core mime dir log_config env
                  setenvif headers)) {
        next if $builtin->{"mod_$m"};
        push @load, "LoadModule ${m}_module $kModuleDir/mod_$m.so";
    }
    my $php = _php_module() or die "mod_php not installed\n";
    my $phpmod = $php =~ /libphp7/ ? 'php7_module' : 'php_module';
    push @load, "LoadModule $phpmod $php";

    my $user = '';
    if ($root) {
        my $group = getgrnam('nogroup') ? 'nogroup' : 'nobody';
        $user = "User nobody\nGroup $group\n";
    }
    my $max = $self->{maxclients};
    my $start = $max < 3 ? $max : 3;
    my $ka = $self->{keepalive} ? 'On' : 'Off';
    my $types = -r '/etc/mime.types' ? '/etc/mime.types' : '/dev/null';
    my $load = join("\n", @load);

    my $conf = <<"EOF";
# Generated by t/lib/SJ/Apache.pm for node $self->{name}.
ServerRoot "$d"
$load
$user
ServerName $self->{name}.test
Listen 127.0.0.1:$self->{port}
PidFile "$d/run/httpd.pid"
DefaultRuntimeDir "$d/run"
Mutex file:$d/run default
ErrorLog "$d/logs/error.log"
LogLevel warn
LogFormat "%a \\"%r\\" %>s %B %Dus pid=%P" sj
# The helper's own start-up probe is not a request a test should count.
SetEnvIf X-SJ-Probe "^1\$" sj_probe
CustomLog "$d/logs/access.log" sj env=!sj_probe
TypesConfig $types

# prefork: one process per request in flight, the classic mod_php setup
StartServers $start
MinSpareServers 1
MaxSpareServers $max
ServerLimit $max
MaxRequestWorkers $max
MaxConnectionsPerChild 0
Timeout 30
KeepAlive $ka
KeepAliveTimeout 5
MaxKeepAliveRequests 100

DocumentRoot "$d/htdocs"
DirectoryIndex index.php
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "$d/htdocs">
    Require all granted
</Directory>
<FilesMatch "\\.inc\$">
    Require all denied
</FilesMatch>
<FilesMatch "\\.php\$">
    SetHandler application/x-httpd-php
</FilesMatch>
SetEnv SJ_NODE $self->{name}
SetEnv SJ_STATE_DIR $d/state
php_admin_value session.save_path "$d/sessions"
php_admin_value upload_tmp_dir "$d/tmp"
php_admin_value sys_temp_dir "$d/tmp"
php_admin_value error_log "$d/logs/php.log"
php_admin_flag log_errors on
php_admin_flag display_errors off
php_admin_value max_execution_time 0
$self->{extra_conf}
EOF
    $self->{conf} = "$d/httpd.conf";
    open my $fh, '>', $self->{conf} or die "$self->{conf}: $!\n";
    print $fh $conf;
    close $fh;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    $self->stop(5) if $self->{pid};
}

1;
