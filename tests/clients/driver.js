// Real-client driver (tests/clients/steps.txt) for the npm `memcached` package:
//
//   node driver.js HOST:PORT
//
// Prints "client<TAB><name and version>", then "<step><TAB><result>" per step.
// The package comes from build/clients/node_modules (scripts/deps.sh puts it
// there), or from NODE_PATH.
'use strict';
const path = require('path');
const crypto = require('crypto');

const local = path.join(__dirname, '..', '..', 'build', 'clients', 'node_modules');
module.paths.unshift(local);
const Memcached = require('memcached');
const version = require('memcached/package.json').version;

const addr = process.argv[2];
const c = new Memcached(addr);     // the package's defaults

// n bytes of md5 hex digits of 0, 1, 2, ... (as the other drivers).
function blob(n) {
    const parts = [];
    let len = 0;
    for (let i = 0; len < n; i++) {
        const h = crypto.createHash('md5').update(String(i)).digest('hex');
        parts.push(h);
        len += h.length;
    }
    return parts.join('').slice(0, n);
}

const binary = Buffer.concat([Buffer.from([...Array(256).keys()]), Buffer.from('\r\n\r\nEND\r\n'),
                              Buffer.from([...Array(256).keys()].reverse())]);
const key250 = 'k'.repeat(246) + ':250';
const multi = {};
for (let i = 0; i < 50; i++) multi['mk:' + i] = ('value ' + i).repeat(i + 1);

// The client's callback as a promise of { err, v }.
function call(method, ...args) {
    return new Promise((resolve) => {
        c[method](...args, (err, v) => resolve({ err, v }));
    });
}

function errorText(err) {
    const text = String(err.message || err).replace(/\S*127\.0\.0\.1:\d+\S*/g, '<server>');
    return 'error: ' + text.split(/\s+/).join(' ').slice(0, 90);
}

function show(v) {
    if (v === undefined || v === null) return 'null';
    if (v === true || v === false || typeof v === 'number') return String(v);
    if (Array.isArray(v)) return '[' + v.map(show).join(', ') + ']';
    return '"' + v + '"';
}

function res(r) {
    return r.err ? errorText(r.err) + (r.v === false ? ' (false)' : '') : show(r.v);
}

function value(r, expected) {
    if (r.err) return errorText(r.err);
    let v = r.v;
    if (v === undefined || v === false) return 'miss';
    const same = Buffer.isBuffer(expected) ? Buffer.isBuffer(v) && v.equals(expected) : v === expected;
    if (same && typeof v === 'string' && v.length <= 24 && /^[ -~]*$/.test(v)) return '"' + v + '"';
    const len = Buffer.isBuffer(v) ? v.length : Buffer.byteLength(String(v));
    return '<' + len + ' bytes, ' + (same ? 'intact' : 'differs') + '>';
}

async function setGet(k, v) {
    return res(await call('set', k, v, 0)) + ' / ' + value(await call('get', k), v);
}

let token;
const steps = [
    ['set', async () => res(await call('set', 'k:set', 'hello', 0))],
    ['get', async () => value(await call('get', 'k:set'), 'hello')],
    ['get missing', async () => value(await call('get', 'k:none'), '')],
    ['add new', async () => res(await call('add', 'k:add', 'a1', 0))],
    ['add existing', async () => res(await call('add', 'k:add', 'a2', 0))],
    ['get after add', async () => value(await call('get', 'k:add'), 'a1')],
    ['replace', async () => res(await call('replace', 'k:add', 'r1', 0))],
    ['replace missing', async () => res(await call('replace', 'k:none', 'x', 0))],
    ['append', async () => res(await call('append', 'k:set', ' world'))],
    ['prepend', async () => res(await call('prepend', 'k:set', '>> '))],
    ['get after append', async () => value(await call('get', 'k:set'), '>> hello world')],
    ['append missing', async () => res(await call('append', 'k:none', 'x'))],
    ['gets', async () => {
        const r = await call('gets', 'k:set');
        if (r.err || !r.v) return value(r, '>> hello world');
        token = r.v.cas;
        return value({ v: r.v['k:set'] }, '>> hello world') + ', ' + (token ? 'token' : 'no token');
    }],
    ['cas', async () => res(await call('cas', 'k:set', 'swapped', token, 0))],
    ['cas stale', async () => res(await call('cas', 'k:set', 'late', token, 0))],
    ['cas missing', async () => res(await call('cas', 'k:none', 'x', token, 0))],
    ['get after cas', async () => value(await call('get', 'k:set'), 'swapped')],
    ['delete', async () => res(await call('del', 'k:set'))],
    ['delete missing', async () => res(await call('del', 'k:set'))],
    ['incr', async () => {
        await call('set', 'k:n', '10', 0);
        return res(await call('incr', 'k:n', 5));
    }],
    ['decr below zero', async () => res(await call('decr', 'k:n', 100))],
    ['incr missing', async () => res(await call('incr', 'k:none', 1))],
    ['incr non-numeric', async () => res(await call('incr', 'k:add', 1))],
    ['touch', async () => res(await call('touch', 'k:add', 100))],
    ['touch missing', async () => res(await call('touch', 'k:none', 100))],
    ['multi-get 50 keys', async () => {
        for (const k of Object.keys(multi)) {
            const r = await call('set', k, multi[k], 0);
            if (r.err) return errorText(r.err);
        }
        const asked = Object.keys(multi).concat([0, 1, 2, 3, 4].map((i) => 'mk:none:' + i));
        const r = await call('getMulti', asked);
        if (r.err) return errorText(r.err);
        const got = r.v || {};
        const right = Object.keys(got).filter((k) => multi[k] === got[k]).length;
        return Object.keys(got).length + ' hits, ' + right + ' right';
    }],
    ['value 0 B', () => setGet('k:empty', '')],
    ['binary value', () => setGet('k:binary', binary)],
    ['value 500 KB', () => setGet('k:big', blob(512000))],
    ['value 1,000,000 B', () => setGet('k:big', blob(1000000))],
    ['value 1 MiB + 1', async () => res(await call('set', 'k:big', blob(1048577), 0))],
    ['get after too big', async () => value(await call('get', 'k:big'), blob(1000000))],
    ['key 250 bytes', () => setGet(key250, 'long key')],
    ['expiry', async () => {
        const stored = res(await call('set', 'k:ttl', 'brief', 3));
        const first = value(await call('get', 'k:ttl'), 'brief');
        const deadline = Date.now() + 8000;
        while (Date.now() < deadline) {
            const r = await call('get', 'k:ttl');
            if (!r.err && r.v === undefined) return stored + ' / ' + first + ', then miss';
            await new Promise((ok) => setTimeout(ok, 100));
        }
        return stored + ' / ' + first + ', still there after 8 s';
    }],
    ['flush_all', async () => res(await call('flush'))],
    ['get after flush', async () => value(await call('get', 'k:add'), '')],
    ['version', async () => {
        const r = await call('version');
        return r.err ? errorText(r.err) : show(r.v.map((s) => s.version).join(','));
    }],
];

async function main() {
    process.stdout.write('client\tnpm memcached ' + version + '\n');
    for (const [name, fn] of steps) {
        let out;
        try {
            out = await fn();
        } catch (e) {
            out = 'exception: ' + errorText(e);
        }
        process.stdout.write(name + '\t' + out + '\n');
    }
    c.end();
}

main();
