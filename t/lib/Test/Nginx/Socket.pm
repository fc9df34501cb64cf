package Test::Nginx::Socket;

# A small, self-contained stand-in for the subset of openresty's
# Test::Nginx::Socket that this project uses.  Test files keep the usual
# layout (Test::Base blocks, same section names, same meanings), so they read
# like any other nginx module's tests, but only Test::Base and core Perl
# modules are needed.  See t/000-harness.t for a tour of the features.
#
# Plan counting (for "plan tests => ..."): per request, 1 for the status code
# (always checked, default 200), 1 for response_body or response_body_like,
# 1 per response_headers / response_headers_like line; per block, 1 per
# error_log and per no_error_log pattern.  Harness-level problems (nginx did
# not start, died code, unexpected [alert], SIGKILL needed) add a failing
# test only when they happen.  "check" code adds whatever it runs.

use strict;
use warnings;

# Compile perl code from "init"/"check" sections into a sub taking ($block,
# $responses).  Defined before any file-scoped lexical so that code cannot
# see (or clobber) the harness's private variables.
sub _compile_in_main {
    my $code = shift;
    ## no critic (ProhibitStringyEval)
    return eval "package main; sub { my (\$block, \$responses) = \@_;\n$code\n}";
}

use Test::Base ();    # no import here: the .t file's "use" imports via us
use Test::More ();
use IO::Socket::INET;
use IO::Select;
use POSIX qw(WNOHANG);
use File::Temp qw(tempdir);
use File::Path qw(make_path);
use File::Basename qw(dirname);
use Time::HiRes qw(time sleep);

# Inheriting Test::Base makes "use Test::Nginx::Socket" behave like
# "use Test::Base" (blocks, plan, is, like, ... get exported) and makes this
# class the default object that parses the __DATA__ section.
our @ISA = ('Test::Base');

our @EXPORT = qw(
    run_tests repeat_each workers master_on master_off no_shuffle log_level
    no_long_string add_block_preprocessor server_port servroot html_dir
    env_to_nginx done_testing note
    redis_cli http_get http_parallel start_extra_nginx stop_extra_nginx
    error_log_text worker_pid fd_count
);

# ---------------------------------------------------------------- settings

our $NginxBinary = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
our $LoadModule  = $ENV{TEST_NGINX_LOAD_MODULE};
our $Verbose     = $ENV{TEST_NGINX_VERBOSE};

my %UsedPorts;    # ports handed out by this process, so extras never collide

# Ask the kernel for a free loopback port (bind to port 0, read it back).
sub _free_port {
    for (1 .. 20) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                      Proto => 'tcp', Listen => 1, ReuseAddr => 1)
            or die "cannot bind a loopback port: $!\n";
        my $port = $s->sockport;
        close $s;
        return $port unless $UsedPorts{$port}++;
    }
    die "no free loopback port found\n";
}

# Keep the always-defined variables in %ENV: this single source serves both
# the $TEST_NGINX_FOO expansion in sections and perl code reading %ENV.
$ENV{TEST_NGINX_REDIS_HOST}  ||= '127.0.0.1';
$ENV{TEST_NGINX_REDIS_PORT}  ||= 6379;
$ENV{TEST_NGINX_SERVER_PORT} ||= _free_port();
# a second port, for a stand-in upstream server block
$ENV{TEST_NGINX_UPSTREAM_PORT} ||= _free_port();
$UsedPorts{ $ENV{TEST_NGINX_SERVER_PORT} } = 1;
$ENV{TEST_NGINX_SERVROOT}    ||= tempdir('test-nginx-XXXXXX', TMPDIR => 1,
                                         CLEANUP => !$ENV{TEST_NGINX_KEEP_SERVROOT});

my $RepeatEach = 1;
my $Workers    = 1;
my $MasterOn   = 0;    # like the real harness: single process unless asked
my $LogLevel   = 'info';
my (@Preprocessors, @EnvToNginx, @Extras);
my $CurrentPid;        # nginx of the block being run, for END cleanup
my $TestsDone  = 0;

# ------------------------------------------------------ exported settings

sub repeat_each { $RepeatEach = shift if @_; return $RepeatEach }
sub workers     { $Workers = shift if @_; return $Workers }
sub master_on   { $MasterOn = 1 }
sub master_off  { $MasterOn = 0 }
sub log_level   { $LogLevel = shift if @_; return $LogLevel }
sub no_shuffle     { }    # blocks always run in file order
sub no_long_string { }    # diagnostics are already plain strings
sub env_to_nginx   { push @EnvToNginx, @_ }
sub add_block_preprocessor { push @Preprocessors, @_ }
sub server_port { $ENV{TEST_NGINX_SERVER_PORT} }
sub servroot    { $ENV{TEST_NGINX_SERVROOT} }
sub html_dir    { servroot() . '/html' }
sub done_testing { goto &Test::More::done_testing }
sub note         { goto &Test::More::note }
sub error_log_text { _slurp(servroot() . '/logs/error.log') }

# the single worker of the test nginx: the child of the master in nginx.pid
sub worker_pid {
    my ($master) = _slurp(servroot() . '/logs/nginx.pid') =~ /(\d+)/
        or die "no pid in nginx.pid\n";
    my @kids = _children($master);
    die "expected one worker of $master, found @kids\n" unless @kids == 1;
    return $kids[0];
}

# the descriptors a process has open
sub fd_count {
    my $pid = shift;
    opendir my $d, "/proc/$pid/fd" or die "/proc/$pid/fd: $!\n";
    return scalar grep { !/^\./ } readdir $d;
}

# Test::Base runs an implicit run_compare() at END when no plan() was seen,
# which is the case for tests ending with done_testing().  Reporting "no
# spec" once our blocks have run turns that into a no-op.
sub spec {
    my $self = shift;
    return undef if $TestsDone && !@_;
    return $self->SUPER::spec(@_);
}

# --------------------------------------------------------------- helpers

sub _slurp {
    my $file = shift;
    open my $fh, '<', $file or return '';
    local $/;
    my $data = <$fh>;
    return defined $data ? $data : '';
}

sub _spew {
    my ($file, $data) = @_;
    make_path(dirname($file));
    open my $fh, '>', $file or die "cannot write $file: $!\n";
    print {$fh} $data;
    close $fh;
}

# Replace $TEST_NGINX_FOO by $ENV{TEST_NGINX_FOO}; recurses into arrays so
# eval'd sections get the same treatment.  Regexps are left alone.
sub _expand_env {
    my $v = shift;
    return [ map { _expand_env($_) } @$v ] if ref $v eq 'ARRAY';
    return $v if !defined $v || ref $v;
    $v =~ s{\$(TEST_NGINX_[A-Za-z0-9_]+)}{
        defined $ENV{$1} ? $ENV{$1} : die "environment variable $1 is not set\n"
    }ge;
    return $v;
}

# Workers drop to "nobody" when we run as root: everything they read must
# be world-readable and every directory traversable.  The umask covers files
# we (and nginx) create later; tempdir() makes 0700 dirs, hence the chmod.
umask 022;
sub _prepare_servroot {
    my $sr = shift;
    make_path("$sr/$_") for qw(conf logs html);
    chmod 0755, $sr, map { "$sr/$_" } qw(conf logs html);
}

sub _build_conf {
    my %a = @_;
    my $master = ($a{master} || $a{workers} > 1) ? 'on' : 'off';
    my $sr = $a{servroot};
    my $conf = '';
    $conf .= "load_module $LoadModule;\n" if $LoadModule;
    $conf .= "env $_;\n" for @EnvToNginx;
    my $temps = join '', map { "    ${_}_temp_path $sr/${_}_temp;\n" }
        qw(client_body proxy fastcgi uwsgi scgi);
    for (qw(main_config http_config config)) { $a{$_} = '' unless defined $a{$_} }
    $conf .= <<"EOC";
worker_processes $a{workers};
daemon on;
master_process $master;
error_log logs/error.log $a{log_level};
pid logs/nginx.pid;

$a{main_config}

events {
    worker_connections 1024;
}

http {
    access_log logs/access.log;
    default_type text/plain;
$temps
$a{http_config}

    server {
        listen 127.0.0.1:$a{port};
        server_name localhost;
        client_max_body_size 30m;

$a{config}
    }
}
EOC
    return $conf;
}

# Run the nginx binary against a servroot; returns (exit code, output).
# With "daemon on" the foreground process exits once the master is forked.
sub _run_nginx {
    my ($sr, @args) = @_;
    my $out = "$sr/nginx.out";
    my $pid = fork;
    die "fork failed: $!\n" unless defined $pid;
    if (!$pid) {
        # Never let the daemon inherit our TAP stdout: prove would hang.
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec $NginxBinary, '-p', "$sr/", '-c', 'conf/nginx.conf', @args; }
        print STDERR "cannot exec $NginxBinary: $!\n";
        POSIX::_exit(127);
    }
    my $deadline = time + 15;
    while (waitpid($pid, WNOHANG) == 0) {
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            return (-1, _slurp($out) . "\n(nginx did not return within 15s)");
        }
        sleep 0.01;
    }
    return ($? >> 8 || ($? & 127 ? 128 + ($? & 127) : 0), _slurp($out));
}

# Some machines run an init that never reaps orphans, so every daemonized
# nginx master would linger as a zombie (and eat the pid space).  As a child
# subreaper (prctl PR_SET_CHILD_SUBREAPER = 36) we inherit the daemons and
# reap them ourselves in _alive().  Best effort: unknown arch means no-op.
{
    my %prctl = (x86_64 => 157, aarch64 => 167, riscv64 => 167, i686 => 172);
    my $nr = $^O eq 'linux' ? $prctl{ (POSIX::uname())[4] } : undef;
    syscall($nr, 36, 1, 0, 0, 0) if $nr;
}

# A process counts as gone once it has exited, even if nobody reaped it yet.
sub _alive {
    my $pid = shift;
    return 0 unless $pid;
    return 0 if waitpid($pid, WNOHANG) == $pid;    # our (adopted) child exited
    return 0 unless kill 0, $pid;
    my $stat = _slurp("/proc/$pid/stat");
    return !($stat =~ /\)\s+Z\s/);
}

sub _children {
    my $ppid = shift;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my ($pid, $parent) = _slurp($stat) =~ /^(\d+) .*\) \S+ (\d+) /s or next;
        push @kids, $pid if $parent == $ppid;
    }
    return @kids;
}

sub _wait_gone {
    my ($pid, $secs) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        return 1 unless _alive($pid);
        sleep 0.02;
    }
    return !_alive($pid);
}

# The foreground nginx may return before the daemon wrote its pid file.
sub _wait_pid {
    my $sr = shift;
    my $deadline = time + 5;
    while (time < $deadline) {
        my ($pid) = _slurp("$sr/logs/nginx.pid") =~ /(\d+)/;
        return $pid if $pid && _alive($pid);
        sleep 0.02;
    }
    return undef;
}

# Graceful stop (SIGQUIT), then SIGTERM, then SIGKILL for the master and
# its workers.  Returns false only if SIGKILL was needed.
sub _stop_nginx {
    my $pid = shift;
    return 1 unless _alive($pid);
    kill 'QUIT', $pid;
    return 1 if _wait_gone($pid, 5);
    kill 'TERM', $pid;
    return 1 if _wait_gone($pid, 2);
    my @kids = _children($pid);
    kill 'KILL', $pid, @kids;
    _wait_gone($_, 2) for $pid, @kids;
    return 0;
}

# Start an nginx on $sr with the given conf; returns (pid) or (undef, why).
sub _start_nginx {
    my ($sr, $conf) = @_;
    _prepare_servroot($sr);
    _spew("$sr/conf/nginx.conf", $conf);
    unlink "$sr/logs/error.log", "$sr/logs/nginx.pid";
    my ($rc, $out) = _run_nginx($sr);
    return (undef, "nginx exited with $rc:\n$out") if $rc;
    my $pid = _wait_pid($sr);
    return (undef, "nginx started but no live master found:\n$out"
                   . _slurp("$sr/logs/error.log")) unless $pid;
    return ($pid);
}

# ------------------------------------------------------------ HTTP client

# Build request bytes from "METHOD /uri [HTTP/x.y]" (further lines: body).
sub _build_request {
    my ($req, $more_headers, $body, $conn) = @_;
    $req =~ s/\A\s+//;
    my ($line, $rest) = split /\r?\n/, $req, 2;
    my ($method, $uri, $proto) = split ' ', $line;
    $uri   = '/' unless defined $uri;
    $proto = 'HTTP/1.1' unless defined $proto;
    if (!defined $body && defined $rest && length $rest) {
        ($body = $rest) =~ s/\n\z//;    # drop the newline Test::Base keeps
    }
    utf8::encode($body) if defined $body && utf8::is_utf8($body);    # bytes
    my @hdrs = grep { /\S/ } split /\r?\n/, defined $more_headers ? $more_headers : '';
    s/^\s+|\s+$//g for @hdrs;
    my %has = map { /^([^:]+):/ ? (lc $1 => 1) : () } @hdrs;
    unshift @hdrs, 'Host: localhost' unless $has{host};
    push @hdrs, 'Connection: ' . ($conn || 'close') unless $has{connection};
    push @hdrs, 'Content-Length: ' . length($body)
        if defined $body && !$has{'content-length'} && !$has{'transfer-encoding'};
    return join("\r\n", "$method $uri $proto", @hdrs) . "\r\n\r\n"
           . (defined $body ? $body : '');
}

# Parse one response at the start of $$buf; removes it and returns a hash,
# or returns undef when more bytes are needed.
sub _parse_response {
    my ($buf, $is_head, $eof) = @_;
    my $hend = index $$buf, "\r\n\r\n";
    return undef if $hend < 0;
    my ($status_line, @lines) = split /\r\n/, substr($$buf, 0, $hend);
    my ($status) = $status_line =~ m{^HTTP/\d\.\d\s+(\d{3})};
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        $h{lc $k} = exists $h{lc $k} ? "$h{lc $k}, $v" : $v;
    }
    my $pos = $hend + 4;
    my $body = '';
    if ($is_head || !defined $status || $status =~ /^(1..|204|304)$/) {
        # no body
    } elsif (lc($h{'transfer-encoding'} || '') eq 'chunked') {
        while (1) {
            my $eol = index $$buf, "\r\n", $pos;
            return undef if $eol < 0;
            my $size = hex substr($$buf, $pos, $eol - $pos);
            $pos = $eol + 2;
            if ($size == 0) {    # skip optional trailers up to the empty line
                my $end = substr($$buf, $pos, 2) eq "\r\n" ? $pos
                        : index($$buf, "\r\n\r\n", $pos) + 2;
                return undef if $end < $pos || length($$buf) < $end + 2;
                $pos = $end + 2;
                last;
            }
            return undef if length($$buf) < $pos + $size + 2;
            $body .= substr $$buf, $pos, $size;
            $pos += $size + 2;
        }
    } elsif (defined $h{'content-length'}) {
        return undef if length($$buf) < $pos + $h{'content-length'};
        $body = substr $$buf, $pos, $h{'content-length'};
        $pos += $h{'content-length'};
    } else {
        return undef unless $eof;    # body delimited by connection close
        $body = substr $$buf, $pos;
        $pos = length $$buf;
    }
    my $raw = substr $$buf, 0, $pos, '';
    return { status => $status, headers => \%h, body => $body, raw => $raw };
}

# Core client: opens one connection per exchange ({data, count, heads}),
# connects all, then writes all, then reads all until each got its "count"
# responses, hit EOF, or the timeout expired.  Returns one arrayref of
# responses per exchange (failed ones have an "error" and no status).
sub _exchange {
    my ($port, $timeout, @ex) = @_;
    local $SIG{PIPE} = 'IGNORE';    # nginx may close before we finish writing
    my @conns = map {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      Proto => 'tcp', Timeout => $timeout);
        +{ ex => $_, sock => $s, buf => '', resps => [],
          error => $s ? undef : "cannot connect to 127.0.0.1:$port: $!" }
    } @ex;
    for my $c (grep { $_->{sock} } @conns) {
        my $data = $c->{ex}{data};
        utf8::encode($data) if utf8::is_utf8($data);    # sockets carry bytes
        my $off = 0;
        while ($off < length $data) {
            my $n = syswrite $c->{sock}, $data, length($data) - $off, $off;
            if (!$n) { $c->{error} = "write failed: $!"; last }
            $off += $n;
        }
    }
    my %by_fd;
    my $sel = IO::Select->new;
    for my $c (grep { $_->{sock} && !$_->{error} } @conns) {
        $by_fd{ fileno $c->{sock} } = $c;
        $sel->add($c->{sock});
    }
    my $deadline = time + $timeout;
    while ($sel->count) {
        my $left = $deadline - time;
        last if $left <= 0;
        for my $s ($sel->can_read($left)) {
            my $c = $by_fd{ fileno $s };
            my $n = sysread $s, my $chunk, 65536;
            $c->{buf} .= $chunk if $n;
            my $eof = !$n;
            while (@{ $c->{resps} } < $c->{ex}{count}) {
                my $head = $c->{ex}{heads}[ scalar @{ $c->{resps} } ];
                my $r = _parse_response(\$c->{buf}, $head, $eof) or last;
                next if ($r->{status} || '') =~ /^1(?!01)\d\d$/;    # interim 1xx
                push @{ $c->{resps} }, $r;
            }
            if ($eof || @{ $c->{resps} } >= $c->{ex}{count}) {
                $c->{error} ||= 'connection closed early' if $eof;
                $sel->remove($s);
            }
        }
    }
    my @all;
    for my $c (@conns) {
        close $c->{sock} if $c->{sock};
        my $why = $c->{error} || "timeout after ${timeout}s";
        push @{ $c->{resps} }, { status => undef, headers => {}, body => '',
                                 error => $why, raw => $c->{buf} }
            while @{ $c->{resps} } < $c->{ex}{count};
        push @all, $c->{resps};
    }
    return @all;
}

sub _is_head { return ($_[0] =~ /\A\s*HEAD\b/) ? 1 : 0 }

# ---------------------------------------------------- exported extensions

sub http_get {
    my ($path, %o) = @_;
    my $hdrs = $o{headers};
    $hdrs = join "\n", map { "$_: $hdrs->{$_}" } sort keys %$hdrs if ref $hdrs eq 'HASH';
    $hdrs = join "\n", @$hdrs if ref $hdrs eq 'ARRAY';
    my $method = $o{method} || 'GET';
    my $data = _build_request("$method $path", $hdrs, $o{body});
    my ($r) = _exchange($o{port} || server_port(), $o{timeout} || 10,
                        { data => $data, count => 1, heads => [ $method eq 'HEAD' ] });
    return $r->[0];
}

# $raw is sent verbatim; a single line such as "GET /x" is expanded into a
# full request like the "request" section does.
sub http_parallel {
    my ($n, $raw, %o) = @_;
    my $data = $raw =~ /\n/ ? $raw : _build_request($raw);
    my @r = _exchange($o{port} || server_port(), $o{timeout} || 10,
                      map { +{ data => $data, count => 1, heads => [ _is_head($data) ] } } 1 .. $n);
    return [ map { $_->[0] } @r ];
}

sub redis_cli {
    my @cmd = ('redis-cli', '-h', $ENV{TEST_NGINX_REDIS_HOST},
               '-p', $ENV{TEST_NGINX_REDIS_PORT}, '--raw', @_);
    open my $fh, '-|', @cmd or die "cannot run redis-cli: $!\n";
    local $/;
    my $out = <$fh>;
    close $fh;
    die "redis-cli @_ failed (exit status $?)\n" if $?;
    return defined $out ? $out : '';
}

# A second nginx (own servroot and port), e.g. two hosts sharing one Redis.
# Takes the "config" text (server{} body) or a hashref with main_config /
# http_config / config (nginx's $server_port tells the instances apart).
sub start_extra_nginx {
    my $arg = shift;
    my %sec = ref $arg eq 'HASH' ? %$arg : (config => $arg);
    my $port = _free_port();
    my $sr = tempdir('test-nginx-extra-XXXXXX', TMPDIR => 1,
                     CLEANUP => !$ENV{TEST_NGINX_KEEP_SERVROOT});
    $sec{$_} = _expand_env($sec{$_}) for keys %sec;
    my $conf = _build_conf(%sec, port => $port, servroot => $sr, workers => $Workers,
                           master => $MasterOn, log_level => $LogLevel);
    my ($pid, $why) = _start_nginx($sr, $conf);
    die "extra nginx failed to start: $why\n" unless $pid;
    my $h = { port => $port, servroot => $sr, pid => $pid };
    push @Extras, $h;
    return $h;
}

sub stop_extra_nginx {
    my $h = shift;
    @Extras = grep { $_ != $h } @Extras;
    return _stop_nginx($h->{pid});
}

# ----------------------------------------------------------- block runner

sub _val {    # section value: undef when absent
    my ($block, $name) = @_;
    return exists $block->{$name} ? scalar($block->$name) : undef;
}

sub _is_eval { (($_[0]{_section_map}[0]{ $_[1] } || {})->{filters} || '') =~ /\beval\b/ }

# Value for request $i: arrays are matched element-wise, scalars apply to all.
sub _nth {
    my ($v, $i) = @_;
    return ref $v eq 'ARRAY' ? $v->[$i] : $v;
}

sub _requests {
    my $block = shift;
    my $hdrs = _val($block, 'more_headers');
    my $body = _val($block, 'request_body');
    $body =~ s/\n\z// if defined $body && !_is_eval($block, 'request_body');
    if (defined(my $raw = _val($block, 'raw_request'))) {
        $raw = join '', @$raw if ref $raw;
        return { data => $raw, count => 1, heads => [ _is_head($raw) ] };
    }
    if (defined(my $p = _val($block, 'pipelined_requests'))) {
        my @p = ref $p ? @$p : ($p);
        my $data = join '', map {
            _build_request($p[$_], $hdrs, $body, $_ == $#p ? 'close' : 'keep-alive')
        } 0 .. $#p;
        return { data => $data, count => scalar @p, heads => [ map { _is_head($_) } @p ] };
    }
    my $r = _val($block, 'request');
    return () unless defined $r;
    # more_headers and request_body may be arrays too, one per request
    my @r = ref $r ? @$r : ($r);
    return map { +{ data => _build_request($r[$_], _nth($hdrs, $_), _nth($body, $_)),
                    count => 1, heads => [ _is_head($r[$_]) ] } } 0 .. $#r;
}

sub _check_responses {
    my ($block, $resps) = @_;
    my $name = $block->name;
    for my $i (0 .. $#$resps) {
        my $r = $resps->[$i];
        my $tag = @$resps > 1 ? " (req $i)" : '';
        my $code = _nth(_val($block, 'error_code'), $i);
        $code = 200 unless defined $code;
        $code =~ s/^\s+|\s+$//g;
        Test::More::is($r->{status}, $code, "$name - status code ok$tag")
            or Test::More::diag($r->{error} ? "request failed: $r->{error}" : "response: $r->{raw}");

        for my $sec (qw(response_headers response_headers_like)) {
            my $spec = _nth(_val($block, $sec), $i);
            next unless defined $spec;
            for my $line (grep { /\S/ } split /\n/, $spec) {
                my ($neg, $k, $v) = $line =~ /^\s*(!?)\s*([^:\s]+)\s*(?::\s?(.*?))?\s*$/ or next;
                my $got = $r->{headers}{ lc $k };
                if ($neg) {
                    Test::More::ok(!defined $got, "$name - header $k not present$tag")
                        or Test::More::diag("got $k: $got");
                } elsif ($sec eq 'response_headers') {
                    Test::More::is($got, defined $v ? $v : '', "$name - header $k ok$tag");
                } else {
                    $v = '' unless defined $v;
                    Test::More::like(defined $got ? $got : '', qr/$v/, "$name - header $k like ok$tag");
                }
            }
        }

        my $body = _nth(_val($block, 'response_body'), $i);
        my $like = _nth(_val($block, 'response_body_like'), $i);
        if (defined $body) {
            Test::More::is($r->{body}, $body, "$name - response_body - response is expected$tag");
        } elsif (defined $like) {
            chomp $like unless ref $like;    # trailing newline from Test::Base
            my $re = ref $like ? $like : qr/$like/s;
            (my $sum = substr $r->{body}, 0, 60) =~ s/\s+/ /g;
            $sum =~ s/[^\x20-\x7e]/./g;    # keep TAP output printable
            Test::More::like($r->{body}, $re,
                "$name - response_body_like - response is expected ($sum)$tag");
        }
    }
}

# error_log / no_error_log: lines of text, or (eval) a string, qr// or array.
sub _patterns {
    my ($block, $sec) = @_;
    my $v = _val($block, $sec);
    return () unless defined $v;
    return @$v if ref $v eq 'ARRAY';
    return ($v) if ref $v;
    return grep { length } split /\n/, $v;
}

# Strings are substrings, qr// are regexps; always a plain boolean (a list
# of captures would otherwise leak into ok()'s arguments).
sub _matches { ref $_[1] ? !!($_[0] =~ $_[1]) : index($_[0], $_[1]) >= 0 }

sub _check_log {
    my ($block, $log, $what) = @_;
    my $name = $block->name;
    for my $p (_patterns($block, 'error_log')) {
        Test::More::ok(_matches($log, $p), qq{$name - pattern "$p" should match a line in $what})
            or Test::More::diag("$what had:\n" . substr($log, -3000));
    }
    for my $p (_patterns($block, 'no_error_log')) {
        my @hit = grep { _matches($_, $p) } split /\n/, $log;
        Test::More::ok(!@hit, qq{$name - pattern "$p" should not match any line in $what})
            or Test::More::diag(join "\n", @hit[0 .. ($#hit < 4 ? $#hit : 4)]);
    }
}

# Alerts, crashes and leaked sockets are bugs unless the block expects them.
sub _check_alerts {
    my ($block, $log) = @_;
    my @want = _patterns($block, 'error_log');
    my @bad = grep {
        my $line = $_;
        /\[(?:alert|emerg|crit)\]|open socket #\d+ left in connection/
            && !grep { _matches($line, $_) } @want
    } split /\n/, $log;
    return unless @bad;
    Test::More::fail($block->name . ' - unexpected alert in error.log');
    Test::More::diag(join "\n", @bad);
}

sub _run_code {
    my ($block, $sec, $resps) = @_;
    my $code = _val($block, $sec);
    return unless defined $code;
    my $sub = _compile_in_main($code);
    my $ok = $sub && eval { $sub->($block, $resps); 1 };
    return if $ok;
    Test::More::fail($block->name . " - $sec code died");
    Test::More::diag($@);
}

sub _block_conf {
    my ($block, $sr) = @_;
    my $level = _val($block, 'log_level');
    $level = $LogLevel unless defined $level;
    $level =~ s/\s+//g;
    return _build_conf(
        map({ ($_ => _val($block, $_)) } qw(main_config http_config config)),
        port => server_port(), servroot => $sr, workers => $Workers,
        master => $MasterOn, log_level => $level);
}

sub _write_user_files {
    my ($block, $sr) = @_;
    my $files = _val($block, 'user_files');
    return unless defined $files;
    my @parts = split /^>>> (\S+)\s*\n/m, $files;
    shift @parts;
    while (my ($file, $data) = splice @parts, 0, 2) {
        _spew("$sr/html/$file", defined $data ? $data : '');
    }
}

sub _run_block {
    my $block = shift;
    my $name = $block->name;
    my $sr = servroot();
    _prepare_servroot($sr);
    _write_user_files($block, $sr);
    my $conf = _block_conf($block, $sr);
    _run_code($block, 'init');

    if (defined _val($block, 'must_die')) {
        _spew("$sr/conf/nginx.conf", $conf);
        my ($rc, $out) = _run_nginx($sr, '-t');
        if (!$rc) {    # config is valid: it may still fail when really started
            my ($pid, $why) = _start_nginx($sr, $conf);
            if ($pid) {
                _stop_nginx($pid);
                Test::More::fail("$name - nginx should have failed to start");
            }
            $out = defined $why ? $why : '';
        }
        _check_log($block, $out, 'nginx output');
        return;
    }

    my ($pid, $why) = _start_nginx($sr, $conf);
    if (!$pid) {
        Test::More::fail("$name - nginx started");
        Test::More::diag($why);
        return;
    }
    $CurrentPid = $pid;

    my ($timeout) = (_val($block, 'timeout') // '') =~ /([\d.]+)/;
    my ($wait)    = (_val($block, 'wait') // '') =~ /([\d.]+)/;
    my @resps;
    my $ok = eval {
        # Requests run one after another, each on its own connection.
        push @resps, @$_ for map { _exchange(server_port(), $timeout || 10, $_) } _requests($block);
        _check_responses($block, \@resps);
        sleep $wait if $wait;
        _run_code($block, 'check', \@resps);
        1;
    };
    Test::More::fail("$name - died: $@") unless $ok;

    Test::More::fail("$name - nginx needed SIGKILL to stop") unless _stop_nginx($pid);
    $CurrentPid = undef;
    my $log = error_log_text();
    _check_log($block, $log, 'error.log');
    _check_alerts($block, $log);
}

sub run_tests {
    # Expand $TEST_NGINX_* in the raw text before filters such as "eval"
    # run (so eval'd strings see numbers, not perl variables), and again on
    # filtered values, then let preprocessors adjust the blocks.
    Test::Base::filters_delay(1);
    my @blocks = Test::Base::blocks();
    for my $block (@blocks) {
        my @secs = @{ $block->{_section_order}[0] || [] };
        unless ($block->is_filtered) {
            $block->{$_} = _expand_env($block->{$_}) for @secs;
            $block->run_filters;
        }
        $block->{$_} = _expand_env($block->{$_}) for @secs;
        $_->($block) for @Preprocessors;
    }

    my $tb = Test::More->builder;
    for my $block (@blocks) {
        for (1 .. $RepeatEach) {
            my $before = $tb->current_test;
            _run_block($block);
            next unless $Verbose && grep { !$_ } ($tb->summary)[ $before .. $tb->current_test - 1 ];
            Test::More::diag("conf:\n" . _slurp(servroot() . '/conf/nginx.conf'));
            Test::More::diag("error.log:\n" . error_log_text());
        }
    }
    $TestsDone = 1;
}

# Nothing we started may outlive the test, even when it dies half-way.
END {
    local $?;
    _stop_nginx($CurrentPid) if $CurrentPid;
    _stop_nginx($_->{pid}) for @Extras;
}

# Turn Ctrl-C / kill into a normal exit so END above still cleans up.
$SIG{INT}  ||= sub { exit 130 };
$SIG{TERM} ||= sub { exit 143 };

1;
