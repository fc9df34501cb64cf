#!/usr/bin/perl
# The tables of scripts/bench.sh, from its raw results.
#
#   report.pl CONFIGS.tsv RESULTS.tsv
#
# CONFIGS.tsv, in display order: id kind alg target_note description
#   kind: baseline | limit_req | peer | pass | distinct | attack | down
# RESULTS.tsv, one line per wrk run:
#   round id requests duration_us non2xx sockerr p50_us p99_us cmds evals errlog
#   nginx_cpu_ms redis_cpu_ms wrk_cpu_ms other_cpu_ms
#
# Every figure is also given as a ratio to the baseline's figure of the same
# round; the last table holds the median over rounds of each figure and of
# each ratio.  Targets are judged on the median ratios and never fail the run.
use strict;
use warnings;

my ($configs_file, $results_file) = @ARGV;
die "usage: report.pl CONFIGS.tsv RESULTS.tsv\n" unless $results_file;

my (@ids, %cfg);
open my $cf, '<', $configs_file or die "$configs_file: $!\n";
while (<$cf>) {
    chomp;
    next if /^\s*$/;
    my ($id, $kind, $alg, $note, $desc) = split /\t/, $_, 5;
    push @ids, $id;
    $cfg{$id} = { kind => $kind, alg => $alg, note => $note, desc => $desc };
}
close $cf;

my (%run, %rounds);
open my $rf, '<', $results_file or die "$results_file: $!\n";
while (<$rf>) {
    chomp;
    next if /^\s*$/;
    my ($round, $id, $req, $dur, $non2xx, $sockerr, $p50, $p99, $cmds,
        $evals, $errlog, $ngx_ms, $redis_ms, $wrk_ms, $other_ms) = split /\t/;
    my $secs = $dur / 1e6;
    my $rps = $dur > 0 ? $req / $secs : 0;
    $run{$round}{$id} = {
        rps => $rps, req => $req, non2xx => $non2xx, sockerr => $sockerr,
        p50 => $p50 / 1000, p99 => $p99 / 1000,
        cmds => $req ? $cmds / $req : 0, evals => $req ? $evals / $req : 0,
        errlog => $errlog,
        # CPU time per request (us) and CPU use (% of one core)
        ngx_us => $req ? 1000 * ($ngx_ms // 0) / $req : undef,
        redis_us => $req ? 1000 * ($redis_ms // 0) / $req : undef,
        ngx_pct => $secs ? ($ngx_ms // 0) / $secs / 10 : undef,
        redis_pct => $secs ? ($redis_ms // 0) / $secs / 10 : undef,
        wrk_pct => $secs ? ($wrk_ms // 0) / $secs / 10 : undef,
        other_pct => $secs ? ($other_ms // 0) / $secs / 10 : undef,
    };
    $rounds{$round} = 1;
}
close $rf;

my @rounds = sort { $a <=> $b } keys %rounds;
my ($baseline) = grep { $cfg{$_}{kind} eq 'baseline' } @ids;
my ($peer) = grep { $cfg{$_}{kind} eq 'peer' } @ids;

sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return undef unless @v;
    return $v[$#v / 2] if @v % 2;
    return ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

sub ratio {
    my ($a, $b) = @_;
    return undef unless defined $a && defined $b && $b > 0;
    return $a / $b;
}

sub fmt {
    my ($fmt, $v) = @_;
    return defined $v ? sprintf($fmt, $v) : '-';
}

my $w = 0;
for (@ids) { $w = length $cfg{$_}{desc} if length $cfg{$_}{desc} > $w }

my $head = sprintf "%-*s %8s %5s %7s %5s %7s %5s %8s %8s %7s %11s %15s",
    $w, 'configuration', 'req/s', 'x', 'p50 ms', 'x', 'p99 ms', 'x',
    'cmds/req', 'eval/req', 'non-2xx', 'us/req n/r', 'CPU% n/r/w/o';

# the derived figures of one run, with its ratios to the round's baseline
sub figures {
    my ($round, $id) = @_;
    my $r = $run{$round}{$id} or return undef;
    my $b = $baseline ? $run{$round}{$baseline} : undef;
    my $p = $peer ? $run{$round}{$peer} : undef;
    return {
        %$r,
        rps_x => $b ? ratio($r->{rps}, $b->{rps}) : undef,
        p50_x => $b ? ratio($r->{p50}, $b->{p50}) : undef,
        p99_x => $b ? ratio($r->{p99}, $b->{p99}) : undef,
        peer_x => $p ? ratio($r->{rps}, $p->{rps}) : undef,
        non2xx_pct => $r->{req} ? 100 * $r->{non2xx} / $r->{req} : 0,
    };
}

sub line {
    my ($id, $f, $extra) = @_;
    return sprintf "%-*s %8s %5s %7s %5s %7s %5s %8s %8s %6s%% %11s %15s%s",
        $w, $cfg{$id}{desc}, fmt('%.0f', $f->{rps}), fmt('%.2f', $f->{rps_x}),
        fmt('%.3f', $f->{p50}), fmt('%.2f', $f->{p50_x}),
        fmt('%.3f', $f->{p99}), fmt('%.2f', $f->{p99_x}),
        fmt('%.3f', $f->{cmds}), fmt('%.3f', $f->{evals}),
        fmt('%.1f', $f->{non2xx_pct}),
        fmt('%.1f', $f->{ngx_us}) . '/' . fmt('%.1f', $f->{redis_us}),
        join('/', map { fmt('%.0f', $f->{$_}) }
             qw(ngx_pct redis_pct wrk_pct other_pct)),
        $extra // '';
}

print <<'TXT';

x: the figure over the baseline's figure of the same round (for latency,
higher is slower); cmds/req: Redis commands run (inside scripts too) per
request, from INFO commandstats; eval/req: EVAL/EVALSHA/FCALL calls per
request (the round trips of a script-based check); us/req n/r: CPU time per
request of the nginx workers / of redis-server, in microseconds; CPU%
n/r/w/o: CPU use of the nginx workers / redis-server / wrk / the rest of the
machine (other processes, and the kernel's loopback work outside any process),
in % of one core (200 = both cores).
TXT

for my $round (@rounds) {
    print "\n== round $round (x: ratio to this round's baseline)\n$head\n";
    for my $id (@ids) {
        my $f = figures($round, $id) or next;
        my $extra = '';
        $extra .= "  socket errors: $f->{sockerr}" if $f->{sockerr};
        $extra .= "  error.log: $f->{errlog} line(s)"
            if $f->{errlog} && $cfg{$id}{kind} ne 'down';
        print line($id, $f, $extra), "\n";
    }
}

# medians over the rounds, of the figures and of the per-round ratios
my %med;
for my $id (@ids) {
    my @f = grep { defined } map { figures($_, $id) } @rounds;
    next unless @f;
    my %m;
    for my $k (qw(rps rps_x p50 p50_x p99 p99_x cmds evals peer_x
                  non2xx_pct ngx_us redis_us ngx_pct redis_pct wrk_pct
                  other_pct)) {
        $m{$k} = median(map { $_->{$k} } @f);
    }
    $med{$id} = \%m;
}

# targets, on the median ratios
sub judge {
    my ($v, $op, $t) = @_;
    return 'n/a' unless defined $v;
    my $ok = $op eq '>=' ? $v >= $t : $v <= $t;
    return $ok ? 'PASS' : 'MISS';
}

my (@targets, %target_col);
for my $id (@ids) {
    my $c = $cfg{$id};
    my $m = $med{$id} or next;
    my $alg = $c->{alg};
    my $note = $c->{note} eq '-' ? '' : " ($c->{note})";

    if ($c->{kind} eq 'pass' || $c->{kind} eq 'distinct') {
        my $t = $alg eq 'sliding_log' ? 0.50 : 0.60;
        my $j = judge($m->{rps_x}, '>=', $t);
        $target_col{$id} = sprintf ">=%.2f %s", $t, $j;
        push @targets, sprintf "%-4s %s: %s of the baseline (target >= %.2f)",
            $j, $c->{desc}, fmt('%.2f', $m->{rps_x}), $t;

        if ($alg eq 'sliding_log' && $c->{kind} eq 'pass') {
            my $pj = judge($m->{peer_x}, '>=', 2.5);
            $target_col{$id} .= sprintf ", %s x peer %s",
                fmt('%.1f', $m->{peer_x}), $pj;
            push @targets, sprintf
                "%-4s %s: %s x the OpenResty peer (target >= 2.5)",
                $pj, $c->{desc}, fmt('%.2f', $m->{peer_x});
        }
    } elsif ($c->{kind} eq 'attack') {
        my $j1 = judge($m->{rps_x}, '>=', 0.90);
        my $j2 = judge($m->{cmds}, '<=', 0.01);
        my $j = ($j1 eq 'PASS' && $j2 eq 'PASS') ? 'PASS' : 'MISS';
        $target_col{$id} = ">=0.90, <=0.01 cmd $j";
        push @targets, sprintf
            "%-4s %s: %s of the baseline (target >= 0.90: %s), %s Redis "
            . "commands per request (target <= 0.01: %s)%s",
            $j, $c->{desc}, fmt('%.2f', $m->{rps_x}), $j1,
            fmt('%.3f', $m->{cmds}), $j2, $note;
    } elsif ($c->{kind} eq 'down') {
        my $j = judge($m->{rps_x}, '>=', 0.90);
        $target_col{$id} = ">=0.90 $j";
        push @targets, sprintf "%-4s %s: %s of the baseline (target >= 0.90)",
            $j, $c->{desc}, fmt('%.2f', $m->{rps_x});
    }
}

printf "\n== median over %d round(s) (x: median of the per-round ratios "
    . "to the baseline)\n%s  target\n", scalar @rounds, $head;
for my $id (@ids) {
    my $m = $med{$id} or next;
    print line($id, $m, '  ' . ($target_col{$id} // '')), "\n";
}

print "\n== targets (never fail the run)\n";
print "$_\n" for @targets;

# sanity: what each configuration claims about rejections
my @warn;
for my $id (@ids) {
    my $m = $med{$id} or next;
    my $k = $cfg{$id}{kind};
    if ($k =~ /^(baseline|limit_req|peer|pass|distinct|down)$/
        && $m->{non2xx_pct} > 0)
    {
        push @warn, "$cfg{$id}{desc}: $m->{non2xx_pct}% of the responses "
            . "were not 2xx, though nothing should be rejected";
    }
    if ($k eq 'attack' && $m->{non2xx_pct} < 99) {
        push @warn, "$cfg{$id}{desc}: only $m->{non2xx_pct}% of the "
            . "responses were rejected";
    }
    # a batch of checks on one key costs Redis a few commands in all, so
    # commands per request say nothing here; a fallback logs, though
    if ($k eq 'pass' || $k eq 'distinct' || $k eq 'peer') {
        my $lines = 0;
        for my $round (@rounds) {
            my $f = figures($round, $id) or next;
            $lines += $f->{errlog} || 0;
        }
        push @warn, "$cfg{$id}{desc}: no script ran in Redis: requests got "
            . "past the check without Redis (fallback?), see its error.log"
            if $m->{evals} <= 0;
        push @warn, "$cfg{$id}{desc}: $lines line(s) at warn or above in "
            . "its error.log (fallback?)"
            if $lines > 0;
    }
}
# other work on the machine competes for the same cores
my ($busy, $all) = (0, 0);
for my $round (@rounds) {
    for my $id (@ids) {
        my $f = figures($round, $id) or next;
        next unless defined $f->{other_pct};
        $all++;
        $busy++ if $f->{other_pct} > 20;
    }
}
if ($busy) {
    push @warn, "the rest of the machine used more than 20% of a core during "
        . "$busy of $all runs (column o): other work competed for the cores, "
        . "so those figures are noisier";
}

if (@warn) {
    print "\n== warnings\n";
    print "$_\n" for @warn;
}
