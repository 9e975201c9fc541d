<?php
// Real-client driver (tests/clients/steps.txt) for php-memcache, PHP's older
// memcache extension (its own protocol code, not libmemcached's):
//
//   php driver_memcache.php HOST:PORT
//
// Prints "client<TAB><name and version>", then "<step><TAB><result>" per step.
// The extension answers false and raises a notice with the server's words;
// the driver shows those words (without the address) next to the false.
// Compression is off (threshold 0), so the size steps send the sizes asked.
// The extension has no touch call: those steps print n/a.

require __DIR__ . '/common.php';

[$host, $port] = explode(':', $argv[1]);
$c = new Memcache();
// The extension takes some of memcached's answers (NOT_FOUND to a cas, see the
// cas missing step) for a failed server and marks it down for retry_interval
// seconds, through a direct memcached as through luagent: 0 retries at once,
// so that one answer does not fail the steps after it.
$c->addServer($host, (int)$port, false, 1, 5, 0);
$c->setCompressThreshold(0);
printf("client\tphp-memcache %s\n", phpversion('memcache'));

// The last notice the extension raised, for the step that is running.
$notice = null;
set_error_handler(function ($no, $text) use (&$notice) {
    $text = preg_replace('/^[A-Za-z:]+\(\): /', '', $text);
    $notice = preg_replace('/Server \S+ \(tcp \d+, udp \d+\)/', 'server', $text);
    return true;
});

function res($v) {
    global $notice;
    $why = $notice;
    $notice = null;
    if ($v === false && $why !== null)
        return "false ($why)";
    return show($v);
}

function value($v, $expected) {
    global $notice;
    if ($v === false)
        return $notice === null ? 'miss' : res($v);
    return shown_value($v, $expected);
}

function set_get($c, $k, $v) {
    return res($c->set($k, $v)) . ' / ' . value($c->get($k), $v);
}

$token = null;

$steps = [
    'set' => fn() => res($c->set('k:set', 'hello')),
    'get' => fn() => value($c->get('k:set'), 'hello'),
    'get missing' => fn() => value($c->get('k:none'), ''),
    'add new' => fn() => res($c->add('k:add', 'a1')),
    'add existing' => fn() => res($c->add('k:add', 'a2')),
    'get after add' => fn() => value($c->get('k:add'), 'a1'),
    'replace' => fn() => res($c->replace('k:add', 'r1')),
    'replace missing' => fn() => res($c->replace('k:none', 'x')),
    'append' => fn() => res($c->append('k:set', ' world')),
    'prepend' => fn() => res($c->prepend('k:set', '>> ')),
    'get after append' => fn() => value($c->get('k:set'), '>> hello world'),
    'append missing' => fn() => res($c->append('k:none', 'x')),
    'gets' => function () use ($c, &$token) {
        $flags = null;
        $v = $c->get('k:set', $flags, $token);
        return value($v, '>> hello world') . ', ' . ($token ? 'token' : 'no token');
    },
    'cas' => function () use ($c, &$token) { return res($c->cas('k:set', 'swapped', 0, 0, $token)); },
    'cas stale' => function () use ($c, &$token) { return res($c->cas('k:set', 'late', 0, 0, $token)); },
    'cas missing' => function () use ($c, &$token) { return res($c->cas('k:none', 'x', 0, 0, $token)); },
    'get after cas' => fn() => value($c->get('k:set'), 'swapped'),
    'delete' => fn() => res($c->delete('k:set')),
    'delete missing' => fn() => res($c->delete('k:set')),
    'incr' => function () use ($c) { $c->set('k:n', '10'); return res($c->increment('k:n', 5)); },
    'decr below zero' => fn() => res($c->decrement('k:n', 100)),
    'incr missing' => fn() => res($c->increment('k:none', 1)),
    'incr non-numeric' => fn() => res($c->increment('k:add', 1)),
    'touch' => fn() => 'n/a',
    'touch missing' => fn() => 'n/a',
    'multi-get 50 keys' => function () use ($c, $multi) {
        foreach ($multi as $k => $v)
            if (!$c->set($k, $v)) return res(false);
        $got = $c->get(multi_asked($multi));
        return $got === false ? res(false) : multi_result($got, $multi);
    },
    'value 0 B' => fn() => set_get($c, 'k:empty', ''),
    'binary value' => fn() => set_get($c, 'k:binary', $binary),
    'value 500 KB' => fn() => set_get($c, 'k:big', blob(512000)),
    'value 1,000,000 B' => fn() => set_get($c, 'k:big', blob(1000000)),
    'value 1 MiB + 1' => fn() => res($c->set('k:big', blob(1048577))),
    'get after too big' => fn() => value($c->get('k:big'), blob(1000000)),
    'key 250 bytes' => fn() => set_get($c, $key250, 'long key'),
    'expiry' => function () use ($c) {
        $stored = res($c->set('k:ttl', 'brief', 0, 3));
        $first = value($c->get('k:ttl'), 'brief');
        $deadline = microtime(true) + 8;
        while (microtime(true) < $deadline) {
            if ($c->get('k:ttl') === false)
                return "$stored / $first, then miss";
            usleep(100000);
        }
        return "$stored / $first, still there after 8 s";
    },
    'flush_all' => fn() => res($c->flush()),
    'get after flush' => fn() => value($c->get('k:add'), ''),
    'version' => fn() => res($c->getVersion()),
];

foreach ($steps as $name => $fn)
    echo $name, "\t", $fn(), "\n";
