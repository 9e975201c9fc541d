<?php
// Real-client driver (tests/clients/steps.txt) for php-memcached:
//
//   php driver.php HOST:PORT
//
// Prints "client<TAB><name and version>", then "<step><TAB><result>" per step.
// The text protocol is asked for explicitly (some builds default to binary),
// and compression is off, so that the size steps put the sizes asked on the
// wire rather than what the compressor makes of them.

require __DIR__ . '/common.php';

[$host, $port] = explode(':', $argv[1]);
$c = new Memcached();
$c->setOption(Memcached::OPT_BINARY_PROTOCOL, false);
$c->setOption(Memcached::OPT_COMPRESSION, false);
$c->setOption(Memcached::OPT_CONNECT_TIMEOUT, 5000);
$c->setOption(Memcached::OPT_RECV_TIMEOUT, 5000000);
$c->setOption(Memcached::OPT_SEND_TIMEOUT, 5000000);
$c->addServer($host, (int)$port);
$lib = Memcached::LIBMEMCACHED_VERSION_HEX;
printf("client\tphp-memcached %s (libmemcached %x.%x.%x)\n", phpversion('memcached'),
       $lib >> 24, ($lib >> 16) & 0xff, $lib & 0xffff);

// A false answer carries the client's reason (NOT STORED, NOT FOUND, ...).
function res($c, $v) {
    if ($v === false && $c->getResultCode() != Memcached::RES_NOTFOUND &&
        $c->getResultCode() != Memcached::RES_SUCCESS)
        return 'false (' . $c->getResultMessage() . ')';
    if ($v === false && $c->getResultCode() == Memcached::RES_NOTFOUND)
        return 'false (NOT FOUND)';
    return show($v);
}

function value($c, $v, $expected) {
    if ($v === false && $c->getResultCode() == Memcached::RES_NOTFOUND) return 'miss';
    if ($v === false) return 'false (' . $c->getResultMessage() . ')';
    return shown_value($v, $expected);
}

function set_get($c, $k, $v) {
    return res($c, $c->set($k, $v)) . ' / ' . value($c, $c->get($k), $v);
}

$token = null;

$steps = [
    'set' => fn() => res($c, $c->set('k:set', 'hello')),
    'get' => fn() => value($c, $c->get('k:set'), 'hello'),
    'get missing' => fn() => value($c, $c->get('k:none'), ''),
    'add new' => fn() => res($c, $c->add('k:add', 'a1')),
    'add existing' => fn() => res($c, $c->add('k:add', 'a2')),
    'get after add' => fn() => value($c, $c->get('k:add'), 'a1'),
    'replace' => fn() => res($c, $c->replace('k:add', 'r1')),
    'replace missing' => fn() => res($c, $c->replace('k:none', 'x')),
    'append' => fn() => res($c, $c->append('k:set', ' world')),
    'prepend' => fn() => res($c, $c->prepend('k:set', '>> ')),
    'get after append' => fn() => value($c, $c->get('k:set'), '>> hello world'),
    'append missing' => fn() => res($c, $c->append('k:none', 'x')),
    'gets' => function () use ($c, &$token) {
        $r = $c->get('k:set', null, Memcached::GET_EXTENDED);
        if ($r === false) return res($c, $r);
        $token = $r['cas'];
        return value($c, $r['value'], '>> hello world') . ', ' . ($token ? 'token' : 'no token');
    },
    'cas' => function () use ($c, &$token) { return res($c, $c->cas($token, 'k:set', 'swapped')); },
    'cas stale' => function () use ($c, &$token) { return res($c, $c->cas($token, 'k:set', 'late')); },
    'cas missing' => function () use ($c, &$token) { return res($c, $c->cas($token, 'k:none', 'x')); },
    'get after cas' => fn() => value($c, $c->get('k:set'), 'swapped'),
    'delete' => fn() => res($c, $c->delete('k:set')),
    'delete missing' => fn() => res($c, $c->delete('k:set')),
    'incr' => function () use ($c) { $c->set('k:n', '10'); return res($c, $c->increment('k:n', 5)); },
    'decr below zero' => fn() => res($c, $c->decrement('k:n', 100)),
    'incr missing' => fn() => res($c, $c->increment('k:none', 1)),
    'incr non-numeric' => fn() => res($c, $c->increment('k:add', 1)),
    'touch' => fn() => res($c, $c->touch('k:add', 100)),
    'touch missing' => fn() => res($c, $c->touch('k:none', 100)),
    'multi-get 50 keys' => function () use ($c, $multi) {
        if (!$c->setMulti($multi)) return res($c, false);
        $got = $c->getMulti(multi_asked($multi));
        return $got === false ? res($c, false) : multi_result($got, $multi);
    },
    'value 0 B' => fn() => set_get($c, 'k:empty', ''),
    'binary value' => fn() => set_get($c, 'k:binary', $binary),
    'value 500 KB' => fn() => set_get($c, 'k:big', blob(512000)),
    'value 1,000,000 B' => fn() => set_get($c, 'k:big', blob(1000000)),
    'value 1 MiB + 1' => fn() => res($c, $c->set('k:big', blob(1048577))),
    'get after too big' => fn() => value($c, $c->get('k:big'), blob(1000000)),
    'key 250 bytes' => fn() => set_get($c, $key250, 'long key'),
    'expiry' => function () use ($c) {
        $stored = res($c, $c->set('k:ttl', 'brief', 3));
        $first = value($c, $c->get('k:ttl'), 'brief');
        $deadline = microtime(true) + 8;
        while (microtime(true) < $deadline) {
            if ($c->get('k:ttl') === false && $c->getResultCode() == Memcached::RES_NOTFOUND)
                return "$stored / $first, then miss";
            usleep(100000);
        }
        return "$stored / $first, still there after 8 s";
    },
    'flush_all' => fn() => res($c, $c->flush()),
    'get after flush' => fn() => value($c, $c->get('k:add'), ''),
    'version' => function () use ($c, $argv) {
        $v = $c->getVersion();
        return $v === false ? res($c, $v) : show($v[$argv[1]] ?? null);
    },
];

foreach ($steps as $name => $fn)
    echo $name, "\t", $fn(), "\n";
