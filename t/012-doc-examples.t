# The nginx configurations in the documentation pass "nginx -t" with the
# module loaded, so the examples cannot rot.
#
# The convention, for README.md and docs/*.md:
#
#   ```nginx   a configuration, whole or partial, that must pass "nginx -t".
#              Anything else (```text, ```sh, or no tag) is not checked: use
#              it for what is not valid nginx on purpose (syntax summaries,
#              refused examples, log lines).
#
# A block is checked as it is written, placed in a configuration according
# to what it holds at its top level (outside any { }):
#
#   - an "http" block: a whole nginx.conf; "load_module" for this module and
#     "events {}" are added at the top if it has none of its own;
#   - only main-level directives (load_module, worker_processes, user, env,
#     pid, events, ...): the main level, followed by "http {}";
#   - "server", "upstream", "map" or an http-only directive (log_format,
#     rate_limit_redis, rate_limit_key_prefix, limit_req_zone, ...): inside
#     "http { }";
#   - "location", "listen" or "server_name": inside "http { server { } }";
#   - anything else: inside "http { server { location /doc-example/ { } } }".
#
# Partial blocks (not whole configurations) get what they leave out: the
# "load_module" line, "events {}", "rate_limit_redis 127.0.0.1:6379;" when
# they do not have one, and an "upstream NAME { server 127.0.0.1:8069; }"
# for each "proxy_pass http://NAME" whose upstream they do not define.
#
# In every block, absolute "access_log" and "error_log" paths are replaced
# by files in a scratch directory, and an "ssl_certificate" or
# "ssl_certificate_key" that does not exist by the throwaway self-signed
# pair in t/cert/, so nothing on the machine is touched or needed.
# "load_module modules/X.so" finds this module (TEST_NGINX_LOAD_MODULE,
# else build/) and the packaged modules of /usr/lib/nginx/modules. Redis
# need not run: "nginx -t" does not connect to it. A host name in
# rate_limit_redis must resolve, so the examples use addresses.
#
# A failing block is reported with its file and line, nginx's message
# mapped back to the line in the document, and the configuration tested.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use File::Basename qw(basename);
use Cwd qw(abs_path);

my $nginx  = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $module = $ENV{TEST_NGINX_LOAD_MODULE} || 'build/ngx_http_rate_limit_module.so';

plan skip_all => "no module at $module (make build)" unless -f $module;
plan skip_all => "no $nginx" unless -x $nginx;
$module = abs_path($module);

my @docs = grep { -f } ('README.md', sort glob('docs/*.md'));

# main-level directives, and directives allowed only at the http level
my %main_only = map { $_ => 1 } qw(
    load_module worker_processes worker_rlimit_nofile worker_cpu_affinity
    worker_priority worker_shutdown_timeout user pid env events daemon
    master_process pcre_jit thread_pool lock_file ssl_engine timer_resolution
    working_directory google_perftools_profiles stream mail
);
my %http_level = map { $_ => 1 } qw(
    server upstream map geo split_clients log_format limit_req_zone
    limit_conn_zone proxy_cache_path fastcgi_cache_path variables_hash_max_size
    variables_hash_bucket_size server_names_hash_max_size
    server_names_hash_bucket_size map_hash_max_size map_hash_bucket_size
    rate_limit_redis rate_limit_key_prefix rate_limit_local_cache
);
my %server_level = map { $_ => 1 } qw(location listen server_name);

# ------------------------------------------------------------------ parsing

# The fenced ```nginx blocks of a markdown file: [file, line, text], line
# being the first line of the block's content.
sub nginx_blocks {
    my $file = shift;
    open my $fh, '<', $file or die "$file: $!\n";
    my @lines = <$fh>;
    close $fh;

    my (@blocks, $in, $indent, $start, @body);
    for my $i (0 .. $#lines) {
        my $l = $lines[$i];
        if (!$in) {
            next unless $l =~ /^(\s*)```nginx\s*$/;
            ($in, $indent, $start, @body) = (1, length $1, $i + 2);
        } elsif ($l =~ /^\s*```\s*$/) {
            push @blocks, [$file, $start, join '', @body];
            $in = 0;
        } else {
            $l =~ s/^ {0,$indent}//;
            push @body, $l;
        }
    }
    die "$file:$start: unterminated ```nginx block\n" if $in;
    return @blocks;
}

# The names of the top-level directives of a configuration text.
sub top_level {
    my $text = shift;
    my @names;
    my ($depth, $want, $quote) = (0, 1, '');
    my $word = '';
    for my $line (split /\n/, $text) {
        my @c = split //, $line;
        for (my $i = 0; $i < @c; $i++) {
            my $ch = $c[$i];
            if ($quote) {
                $i++ if $ch eq '\\';
                $quote = '' if $ch eq $quote;
                next;
            }
            last if $ch eq '#';
            if ($ch eq '"' || $ch eq "'") { $quote = $ch; $want = 0; next }
            if ($ch eq '{') { push @names, $word if $word ne '' && !$depth; $word = ''; $depth++; $want = 1; next }
            if ($ch eq '}') { $depth--; $want = 1; $word = ''; next }
            if ($ch eq ';') { push @names, $word if $word ne '' && !$depth; $word = ''; $want = 1; next }
            if ($ch =~ /\s/) {
                if ($word ne '' && $want) {
                    push @names, $word if !$depth;
                    $want = 0;
                }
                $word = '' unless $want;
                next;
            }
            $word .= $ch if $want;
        }
        if ($word ne '' && $want) { push @names, $word if !$depth; $want = 0 }
        $word = '';
    }
    my %seen;
    return grep { !$seen{$_}++ } @names;
}

sub context_of {
    my $text  = shift;
    my @names = top_level($text);
    return 'whole'    if grep { $_ eq 'http' } @names;
    return 'main'     if @names && !grep { !$main_only{$_} } @names;
    return 'http'     if grep { $http_level{$_} } @names;
    return 'server'   if grep { $server_level{$_} } @names;
    return 'location';
}

# ------------------------------------------------------------- the checks

my $tmp = tempdir('rl-doc-examples-XXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$tmp/$_" for qw(logs conf modules);

# modules/: this module, and the packaged ones
symlink $module, "$tmp/modules/ngx_http_rate_limit_module.so" or die "$!\n";
for my $so (glob '/usr/lib/nginx/modules/*.so') {
    my $name = basename($so);
    next if $name eq 'ngx_http_rate_limit_module.so';
    symlink $so, "$tmp/modules/$name";
}

# a throwaway self-signed pair, for the examples' ssl_certificate lines
my $cert = abs_path('t/cert') . '/doc-example';

sub substitute {
    my $text = shift;
    my $n = 0;
    $text =~ s{\b(access_log|error_log)(\s+)(/[^\s;]+)}
              {$1 . $2 . "$tmp/logs/doc-" . ++$n . '.log'}ge;
    $text =~ s{\b(ssl_certificate(?:_key)?)(\s+)([^\s;]+)}{
        my ($d, $sp, $path) = ($1, $2, $3);
        if ($path =~ /\$/ || -e $path) {
            "$d$sp$path";
        } else {
            $d . $sp . $cert . ($d eq 'ssl_certificate' ? '.crt' : '.key');
        }
    }ge;
    return $text;
}

sub indent {
    my ($text, $by) = @_;
    $text =~ s/^(?=.)/' ' x $by/gme;
    return $text;
}

# the configuration for a block, and the line in it where the block starts
sub assemble {
    my ($text, $context) = @_;
    my $load = "load_module modules/ngx_http_rate_limit_module.so;\n";
    my @names = top_level($text);

    if ($context eq 'whole') {
        my $head = '';
        $head .= $load unless $text =~ /^\s*load_module\s+\S*ngx_http_rate_limit_module\.so\s*;/m;
        $head .= "events {}\n" unless grep { $_ eq 'events' } @names;
        return ($head . $text, 1 + ($head =~ tr/\n//));
    }

    if ($context eq 'main') {
        my $head = $text =~ /ngx_http_rate_limit_module\.so/ ? '' : $load;
        my $tail = (grep { $_ eq 'events' } @names) ? '' : "events {}\n";
        return ($head . $text . $tail . "http {}\n", 1 + ($head =~ tr/\n//));
    }

    my $pre = '';
    $pre .= "    rate_limit_redis 127.0.0.1:6379;\n"
        unless $text =~ /^\s*rate_limit_redis\s/m;
    my %up;
    $up{$1} = 1 while $text =~ m{\bproxy_pass\s+https?://([A-Za-z_][\w-]*)\s*[;/]}g;
    for my $name (sort keys %up) {
        next if $text =~ /\bupstream\s+\Q$name\E\s*\{/;
        $pre .= "    upstream $name { server 127.0.0.1:8069; }\n";
    }

    my ($open, $close, $by);
    if ($context eq 'http') {
        ($open, $close, $by) = ('', '', 4);
    } elsif ($context eq 'server') {
        ($open, $close, $by) = ("    server {\n", "    }\n", 8);
    } else {
        ($open, $close, $by) = ("    server {\n        location /doc-example/ {\n",
                                "        }\n    }\n", 12);
    }
    my $head = $load . "events {}\nhttp {\n" . $pre . $open;
    return ($head . indent($text, $by) . $close . "}\n",
            1 + ($head =~ tr/\n//));
}

my @blocks = map { nginx_blocks($_) } @docs;
ok(@blocks >= 10, scalar(@blocks) . " ```nginx blocks in " . join(', ', @docs));

my $n = 0;
for my $b (@blocks) {
    my ($file, $line, $text) = @$b;
    my $context = context_of($text);
    my ($conf, $first) = eval { assemble(substitute($text), $context) };
    if (!defined $conf) {
        fail("$file:$line: ```nginx block ($context): $@");
        next;
    }
    my $path = "$tmp/conf/block-" . ++$n . '.conf';
    open my $fh, '>', $path or die "$path: $!\n";
    print $fh $conf;
    close $fh;

    my $out = `$nginx -t -q -p $tmp/ -c $path 2>&1`;
    my $rc = $? >> 8;

    if (ok($rc == 0, "$file:$line: ```nginx block ($context) passes nginx -t")) {
        next;
    }
    # nginx's line numbers, mapped back into the document
    $out =~ s{ in \Q$path\E:(\d+)}{
        my $l = $1;
        $l >= $first && $l < $first + ($text =~ tr/\n//)
            ? " in $file:" . ($line + $l - $first)
            : " in the wrapper, line $l";
    }ge;
    my $i = 0;
    (my $shown = $conf) =~ s/^/sprintf("%4d  ", ++$i)/gme;
    diag("$file:$line: nginx -t failed:\n$out\nthe configuration tested:\n$shown");
}

done_testing();
