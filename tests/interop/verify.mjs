#!/usr/bin/env node
// SPDX-License-Identifier: MIT
// Verify keyd's tokens with an independent JOSE implementation (panva/jose): the keys come from keyd's public JWKS
// through createRemoteJWKSet, and jwtVerify checks the signature, the algorithm against the JWK, exp/nbf, and the
// issuer and audience when they are given.
//
//   node verify.mjs --jwks URL [--issuer ISS] [--audience AUD] [--alg ALG]... (--tokens FILE | TOKEN...)
//
// FILE holds a JSON array whose items are tokens (strings) or objects {token, jwks, issuer, audience, algorithms}
// whose fields override the options for that token. One JSON line per token on stdout, in order:
//   {"ok": true|false, "kid": ..., "alg": ..., "error": null | "<jose error code>: <message>"}
// kid and alg come from the verified protected header, or, when verification fails, from the header as decoded.
// The exit status is 0 whatever the tokens' fate, 2 for a usage error (the caller asserts per token).
import { readFileSync } from 'node:fs';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

const USAGE =
  'usage: verify.mjs --jwks URL [--issuer ISS] [--audience AUD] [--alg ALG]... (--tokens FILE | TOKEN...)\n';

function usage(message) {
  process.stderr.write(`verify.mjs: ${message}\n${USAGE}`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { jwks: null, issuer: null, audience: null, algorithms: [], tokensFile: null, tokens: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--jwks': opts.jwks = value(); break;
      case '--issuer': opts.issuer = value(); break;
      case '--audience': opts.audience = value(); break;
      case '--alg': opts.algorithms.push(value()); break;
      case '--tokens': opts.tokensFile = value(); break;
      case '-h':
      case '--help':
        process.stdout.write(USAGE);
        return process.exit(0);
      default:
        if (a.startsWith('-')) usage(`unknown option ${a}`);
        opts.tokens.push(a);
    }
  }
  return opts;
}

function loadItems(opts) {
  const items = opts.tokens.map((token) => ({ token }));
  if (opts.tokensFile !== null) {
    let doc;
    try {
      doc = JSON.parse(readFileSync(opts.tokensFile, 'utf8'));
    } catch (e) {
      usage(`${opts.tokensFile}: ${e.message}`);
    }
    if (!Array.isArray(doc)) usage(`${opts.tokensFile}: not a JSON array`);
    for (const [i, it] of doc.entries()) {
      if (typeof it === 'string') items.push({ token: it });
      else if (it && typeof it === 'object' && typeof it.token === 'string') items.push(it);
      else usage(`${opts.tokensFile}: item ${i} is neither a token nor an object with a token`);
    }
  }
  if (items.length === 0) usage('no token given');
  for (const [i, it] of items.entries()) {
    const jwks = it.jwks ?? opts.jwks;
    if (!jwks) usage(`token ${i}: no JWKS URL (--jwks)`);
    try {
      new URL(jwks);
    } catch {
      usage(`token ${i}: bad JWKS URL ${jwks}`);
    }
  }
  return items;
}

// One remote key set per URL, as a relying party would keep it.
const sets = new Map();
function keySet(url) {
  let s = sets.get(url);
  if (!s) {
    s = createRemoteJWKSet(new URL(url), { timeoutDuration: 10000 });
    sets.set(url, s);
  }
  return s;
}

function headerOf(token) {
  try {
    return decodeProtectedHeader(token);
  } catch {
    return {};
  }
}

async function verifyOne(it, opts) {
  const options = {};
  const issuer = it.issuer ?? opts.issuer;
  const audience = it.audience ?? opts.audience;
  const algorithms = it.algorithms ?? (opts.algorithms.length ? opts.algorithms : null);
  if (issuer !== null && issuer !== undefined) options.issuer = issuer;
  if (audience !== null && audience !== undefined) options.audience = audience;
  if (algorithms) options.algorithms = algorithms;
  try {
    const { protectedHeader } = await jwtVerify(it.token, keySet(it.jwks ?? opts.jwks), options);
    return { ok: true, kid: protectedHeader.kid ?? null, alg: protectedHeader.alg ?? null, error: null };
  } catch (e) {
    const h = headerOf(it.token);
    const code = e && e.code ? e.code : e && e.name ? e.name : 'ERROR';
    return { ok: false, kid: h.kid ?? null, alg: h.alg ?? null, error: `${code}: ${e && e.message}` };
  }
}

const opts = parseArgs(process.argv.slice(2));
const items = loadItems(opts);
for (const it of items) {
  process.stdout.write(JSON.stringify(await verifyOne(it, opts)) + '\n');
}
