#!/usr/bin/perl
# Real-client driver (tests/clients/steps.txt) for the Perl clients:
#
#   driver.pl Cache::Memcached::Fast HOST:PORT
#   driver.pl Cache::Memcached HOST:PORT
#
# Prints "client<TAB><name and version>", then "<step><TAB><result>" per step.
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);
use Time::HiRes qw(sleep time);

my ($kind, $addr) = @ARGV;
my $fast = $kind eq 'Cache::Memcached::Fast';
my $c;
if ($fast) {
    require Cache::Memcached::Fast;
    $c = Cache::Memcached::Fast->new({ servers => [$addr], io_timeout => 5,
                                       connect_timeout => 5 });
} else {
    require Cache::Memcached;
    $c = Cache::Memcached->new({ servers => [$addr], connect_timeout => 5,
                                 select_timeout => 5 });
}
{
    no strict 'refs';
    print "client\t$kind ${\"${kind}::VERSION\"}\n";
}
$| = 1;

# n bytes of md5 hex digits of 0, 1, 2, ... (as the other drivers).
sub blob {
    my ($n) = @_;
    my $out = '';
    my $i = 0;
    $out .= md5_hex($i++) while length($out) < $n;
    return substr($out, 0, $n);
}

my $binary = join('', map { chr } 0 .. 255) . "\r\n" . "\r\nEND\r\n" . join('', map { chr } reverse 0 .. 255);
my $key250 = ('k' x 246) . ':250';
my %multi = map { ("mk:$_" => ("value $_" x ($_ + 1))) } 0 .. 49;

sub show {
    my ($v) = @_;
    return 'null' unless defined $v;
    return $v if $v =~ /^\d+$/;
    return 'false' if $v eq '';
    return "\"$v\"";
}

sub value {
    my ($v, $expected) = @_;
    return 'miss' unless defined $v;
    if ($v eq $expected && length($v) <= 24 && $v =~ /^[ -~]*$/) {
        return "\"$v\"";
    }
    return sprintf('<%d bytes, %s>', length($v), $v eq $expected ? 'intact' : 'differs');
}

# Runs a call; a die (or a warning the client prints) becomes the result.
sub attempt {
    my ($fn) = @_;
    my $r = eval { $fn->() };
    if ($@) {
        (my $e = $@) =~ s/ at \S+ line \d+.*//s;
        $e =~ s/\S*127\.0\.0\.1:\d+\S*/<server>/g;
        return { error => substr($e, 0, 90) };
    }
    return { value => $r };
}

sub res {
    my ($r) = @_;
    return "error: $r->{error}" if exists $r->{error};
    return show($r->{value});
}

sub val {
    my ($r, $expected) = @_;
    return "error: $r->{error}" if exists $r->{error};
    return value($r->{value}, $expected);
}

sub set_get {
    my ($k, $v) = @_;
    return res(attempt(sub { $c->set($k, $v) })) . ' / ' . val(attempt(sub { $c->get($k) }), $v);
}

my $token;
my @steps = (
    ['set', sub { res(attempt(sub { $c->set('k:set', 'hello') })) }],
    ['get', sub { val(attempt(sub { $c->get('k:set') }), 'hello') }],
    ['get missing', sub { val(attempt(sub { $c->get('k:none') }), '') }],
    ['add new', sub { res(attempt(sub { $c->add('k:add', 'a1') })) }],
    ['add existing', sub { res(attempt(sub { $c->add('k:add', 'a2') })) }],
    ['get after add', sub { val(attempt(sub { $c->get('k:add') }), 'a1') }],
    ['replace', sub { res(attempt(sub { $c->replace('k:add', 'r1') })) }],
    ['replace missing', sub { res(attempt(sub { $c->replace('k:none', 'x') })) }],
    ['append', sub { res(attempt(sub { $c->append('k:set', ' world') })) }],
    ['prepend', sub { res(attempt(sub { $c->prepend('k:set', '>> ') })) }],
    ['get after append', sub { val(attempt(sub { $c->get('k:set') }), '>> hello world') }],
    ['append missing', sub { res(attempt(sub { $c->append('k:none', 'x') })) }],
    ['gets', sub {
        return 'n/a' unless $fast;
        my $r = attempt(sub { $c->gets('k:set') });
        return "error: $r->{error}" if exists $r->{error};
        return 'miss' unless defined $r->{value};
        $token = $r->{value}[0];
        return value($r->{value}[1], '>> hello world') . ', ' . ($token ? 'token' : 'no token');
    }],
    ['cas', sub { $fast ? res(attempt(sub { $c->cas('k:set', $token, 'swapped') })) : 'n/a' }],
    ['cas stale', sub { $fast ? res(attempt(sub { $c->cas('k:set', $token, 'late') })) : 'n/a' }],
    ['cas missing', sub { $fast ? res(attempt(sub { $c->cas('k:none', $token, 'x') })) : 'n/a' }],
    ['get after cas', sub {
        val(attempt(sub { $c->get('k:set') }), $fast ? 'swapped' : '>> hello world')
    }],
    ['delete', sub { res(attempt(sub { $c->delete('k:set') })) }],
    ['delete missing', sub { res(attempt(sub { $c->delete('k:set') })) }],
    ['incr', sub { $c->set('k:n', '10'); res(attempt(sub { $c->incr('k:n', 5) })) }],
    ['decr below zero', sub { res(attempt(sub { $c->decr('k:n', 100) })) }],
    ['incr missing', sub { res(attempt(sub { $c->incr('k:none', 1) })) }],
    ['incr non-numeric', sub { res(attempt(sub { $c->incr('k:add', 1) })) }],
    ['touch', sub { $fast ? res(attempt(sub { $c->touch('k:add', 100) })) : 'n/a' }],
    ['touch missing', sub { $fast ? res(attempt(sub { $c->touch('k:none', 100) })) : 'n/a' }],
    ['multi-get 50 keys', sub {
        for my $k (sort keys %multi) {
            my $r = attempt(sub { $c->set($k, $multi{$k}) });
            return "error: $r->{error}" if exists $r->{error};
        }
        my @asked = ((sort keys %multi), map { "mk:none:$_" } 0 .. 4);
        my $r = attempt(sub { $c->get_multi(@asked) });
        return "error: $r->{error}" if exists $r->{error};
        my $got = $r->{value};
        my $right = grep { defined $multi{$_} && $got->{$_} eq $multi{$_} } keys %$got;
        return sprintf('%d hits, %d right', scalar(keys %$got), $right);
    }],
    ['value 0 B', sub { set_get('k:empty', '') }],
    ['binary value', sub { set_get('k:binary', $binary) }],
    ['value 500 KB', sub { set_get('k:big', blob(512000)) }],
    ['value 1,000,000 B', sub { set_get('k:big', blob(1000000)) }],
    ['value 1 MiB + 1', sub { res(attempt(sub { $c->set('k:big', blob(1048577)) })) }],
    ['get after too big', sub { val(attempt(sub { $c->get('k:big') }), blob(1000000)) }],
    ['key 250 bytes', sub { set_get($key250, 'long key') }],
    ['expiry', sub {
        my $stored = res(attempt(sub { $c->set('k:ttl', 'brief', 3) }));
        my $first = val(attempt(sub { $c->get('k:ttl') }), 'brief');
        my $deadline = time + 8;
        while (time < $deadline) {
            return "$stored / $first, then miss" unless defined $c->get('k:ttl');
            sleep 0.1;
        }
        return "$stored / $first, still there after 8 s";
    }],
    ['flush_all', sub {
        my $r = attempt(sub { $c->flush_all });
        # Cache::Memcached::Fast answers per server.
        $r->{value} = $r->{value}{$addr} if ref $r->{value} eq 'HASH';
        return res($r);
    }],
    ['get after flush', sub { val(attempt(sub { $c->get('k:add') }), '') }],
    ['version', sub {
        if ($fast) {
            my $r = attempt(sub { $c->server_versions });
            return "error: $r->{error}" if exists $r->{error};
            return show($r->{value}{$addr});
        }
        # Cache::Memcached has no version call: its users read stats.
        my $r = attempt(sub { $c->stats(['misc']) });
        return "error: $r->{error}" if exists $r->{error};
        return show($r->{value}{hosts}{$addr}{misc}{version});
    }],
);

for my $s (@steps) {
    my ($name, $fn) = @$s;
    print "$name\t", $fn->(), "\n";
}
