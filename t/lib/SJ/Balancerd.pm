package SJ::Balancerd;
# Helpers for balancerd's integration tests: scripted HTTP backends that
# record every request they receive (so a test can count what reached a
# node, byte for byte) and answer through a handler, a raw-socket client,
# and the control output parsed into rows.
#
#   my $b = SJ::Balancerd::Backend->start(t => $t, name => 'b1');
#   ... requests ...
#   my @reqs = $b->requests;          # [ { head => ..., body => ... }, ... ]
#   $b->stop;
use strict;
use warnings;
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use Exporter 'import';
use SJ::Net;
our @EXPORT_OK = qw(raw_exchange ctl_rows start_one_node);

# raw_exchange(port => N | unix => PATH, data => BYTES, timeout => 5,
#              until => qr//)
# Sends bytes, reads until the peer closes, `until` matches, or timeout.
sub raw_exchange {
    my (%a) = @_;
    my $s = $a{unix}
        ? IO::Socket::UNIX->new(Peer => $a{unix})
        : IO::Socket::INET->new(PeerAddr => "127.0.0.1:$a{port}",
                                Timeout => 5);
    return '' unless $s;
    syswrite $s, $a{data} if defined $a{data};
    my $buf = '';
    my $end = time + ($a{timeout} // 5);
    while (time < $end) {
        last if $a{until} && $buf =~ $a{until};
        my $rin = '';
        vec($rin, fileno $s, 1) = 1;
        select(my $r = $rin, undef, undef, 0.1) or next;
        my $n = sysread $s, $buf, 65536, length $buf;
        last unless $n;
    }
    close $s;
    return $buf;
}

# ctl_rows($body): the aligned-column output of `show nodes` etc. as a
# list of hashes keyed by the header words.
sub ctl_rows {
    my ($body) = @_;
    my @lines = split /\n/, $body;
    my @h = split ' ', shift @lines;
    my @rows;
    for my $l (@lines) {
        # The last column (REASON) may contain blanks.
        my @f = split ' ', $l, scalar @h;
        my %r;
        @r{@h} = @f;
        push @rows, \%r;
    }
    return @rows;
}

# start_one_node($t, EXTRA): balancerd with one worker on a fresh port, over
# one scripted node answering "ok\n" to everything; EXTRA is added to the
# balancerd section. Returns ($daemon, $port, $node).
sub start_one_node {
    my ($t, $extra) = @_;
    my $port = $t->port('http');
    my $node = SJ::Balancerd::Backend->start(t => $t, name => 'b1',
        handler => sub { "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n" });
    $t->write_conf(
        pools => qq{php: { nodes = ( { name = "b1"; address = "${\ $node->address}"; } ); };},
        balancerd => qq{listen = ( "127.0.0.1:$port" ); pool = "php";
            workers = 1; ${\ ($extra // '')}},
    );
    my $d = $t->start('balancerd');
    wait_for_port('127.0.0.1', $port, 10);
    return ($d, $port, $node);
}

package SJ::Balancerd::Backend;
use strict;
use warnings;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use SJ::Net;

# start(t => $test, name => 'b1', port => N, handler => sub {...})
# The handler gets ($req) with {method, target, head, body, trailers (the
# raw trailer lines of a chunked body), headers} and
# returns the raw response bytes, or undef to close without answering, or
# a code ref called with the socket for custom behaviour. Default: 200
# with body "node=NAME\n".
sub start {
    my ($class, %a) = @_;
    my $self = bless {%a}, $class;
    $self->{port} //= SJ::Net::free_port();
    $self->{log} = $a{t}->dir . "/backend-$a{name}.log";
    open my $fh, '>', $self->{log} or die;
    close $fh;
    $self->_spawn;
    return $self;
}

sub port { $_[0]{port} }
sub address { "127.0.0.1:$_[0]{port}" }

sub _spawn {
    my ($self) = @_;
    my $ls = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$self->{port}",
        Listen => 128, ReuseAddr => 1) or die "backend listen: $!";
    my $pid = fork // die;
    if ($pid == 0) {
        $SIG{CHLD} = 'IGNORE';
        $SIG{TERM} = sub { POSIX::_exit(0) };
        while (1) {
            my $c = $ls->accept or next;
            my $k = fork;
            if (defined $k && $k == 0) {
                close $ls;
                $self->_serve($c);
                POSIX::_exit(0);
            }
            close $c;
        }
    }
    close $ls;
    $self->{pid} = $pid;
}

sub _read_more {
    my ($c, $buf, $t) = @_;
    my $rin = '';
    vec($rin, fileno $c, 1) = 1;
    select(my $r = $rin, undef, undef, $t // 30) or return 0;
    my $n = sysread $c, $$buf, 65536, length $$buf;
    return $n;
}

sub _serve {
    my ($self, $c) = @_;
    my $buf = '';
    while (1) {
        while ($buf !~ /\r\n\r\n/) {
            return unless _read_more($c, \$buf);
        }
        $buf =~ s/\A(.*?\r\n\r\n)//s;
        my $head = $1;
        my ($method, $target) = $head =~ /\A(\S+) (\S+)/;
        my %h;
        for my $l (split /\r\n/, $head) {
            $h{lc $1} = exists $h{lc $1} ? "$h{lc $1}, $2" : $2
                if $l =~ /^([^:]+):\s*(.*)$/;
        }
        my $body = '';
        my $trailers = '';
        if (defined $h{'content-length'}) {
            while (length $buf < $h{'content-length'}) {
                return unless _read_more($c, \$buf);
            }
            $body = substr $buf, 0, $h{'content-length'}, '';
        } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
            while (1) {
                while ($buf !~ /\r\n/) {
                    return unless _read_more($c, \$buf);
                }
                $buf =~ s/\A([0-9a-fA-F]+)[^\r]*\r\n//
                    or do { $self->_log("BADCHUNK", $buf); return };
                my $n = hex $1;
                if ($n == 0) {
                    while ($buf !~ /\A\r\n/ && $buf !~ /\r\n\r\n/) {
                        return unless _read_more($c, \$buf);
                    }
                    $buf =~ s/\A((?:.*?\r\n)?)\r\n//s;
                    $trailers = $1;
                    last;
                }
                while (length $buf < $n + 2) {
                    return unless _read_more($c, \$buf);
                }
                $body .= substr $buf, 0, $n, '';
                substr $buf, 0, 2, '';
            }
        }
        $self->_log($head, $body);
        my $req = { method => $method, target => $target, head => $head,
                    body => $body, trailers => $trailers, headers => \%h };
        my $resp = $self->{handler} ? $self->{handler}->($req)
            : "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
              . "Content-Length: " . length("node=$self->{name}\n")
              . "\r\n\r\nnode=$self->{name}\n";
        return unless defined $resp;
        if (ref $resp eq 'CODE') {
            return unless $resp->($c);
            next;
        }
        syswrite $c, $resp;
        return if ($h{connection} // '') =~ /close/i;
    }
}

sub _log {
    my ($self, $head, $body) = @_;
    open my $fh, '>>', $self->{log} or return;
    my $rec = "----REQ " . length($head) . " " . length($body) . "\n"
        . $head . $body . "\n";
    # One write per record so concurrent connection handlers do not mix.
    syswrite $fh, $rec;
    close $fh;
}

# The requests received so far: [ { head => ..., body => ... } ].
sub requests {
    my ($self) = @_;
    open my $fh, '<', $self->{log} or return ();
    local $/;
    my $text = <$fh> // '';
    my @r;
    while ($text =~ /----REQ (\d+) (\d+)\n/g) {
        my ($hl, $bl) = ($1, $2);
        my $pos = pos $text;
        push @r, { head => substr($text, $pos, $hl),
                   body => substr($text, $pos + $hl, $bl) };
        pos($text) = $pos + $hl + $bl + 1;
    }
    return @r;
}

sub clear {
    my ($self) = @_;
    open my $fh, '>', $self->{log};
    close $fh;
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    kill 'TERM', $self->{pid};
    waitpid $self->{pid}, 0;
    $self->{pid} = undef;
}

sub DESTROY { $_[0]->stop }

1;
